// SPDX-License-Identifier: Apache-2.0
// A tiny labelled 8x8 image set and a tiny class-conditional DiT for training tests that only need
// a few fast steps (the autocast tests on the CPU and on CUDA).
#pragma once

#include <cstdint>
#include <string>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include <diffuse/training/dataset.h>
#include <diffuse/training/dit.h>

namespace diffuse::test {

/// n single-channel 8x8 images in [-1, 1] whose mean brightness depends on their label (3
/// classes), from a fixed generator: the same set in every call.
inline Dataset tiny_images(int64_t n, const std::string& name) {
  at::Generator g = at::detail::createCPUGenerator(5);
  Dataset d;
  d.name = name;
  d.labels = at::randint(0, 3, {n}, g, at::kLong);
  d.data =
      (d.labels.to(at::kFloat).reshape({n, 1, 1, 1}) * 0.5 - 0.5 + 0.2 * at::randn({n, 1, 8, 8}, g))
          .clamp(-1, 1);
  d.num_classes = 3;
  return d;
}

/// A 2-block DiT of width 32 on 8x8x1 inputs, patch 2, 3 classes, initialised from seed 21.
inline DiT tiny_dit() {
  torch::manual_seed(21);
  DiTOptions o(8, 1);
  o.patch_size(2).hidden_size(32).depth(2).num_heads(2).num_classes(3);
  return DiT(o);
}

}  // namespace diffuse::test
