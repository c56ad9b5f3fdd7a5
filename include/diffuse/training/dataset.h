// SPDX-License-Identifier: Apache-2.0
// An in-memory labelled dataset: what the loaders in training/data.h return and the trainer reads.
#pragma once

#include <cstdint>
#include <string>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here
#include <diffuse/tensor.h>

namespace diffuse {

struct Dataset {
  /// Float images [N, C, H, W] scaled to [-1, 1], or points [N, D] for the 2-D toy sets.
  Tensor data;
  /// int64 [N] class ids in [0, num_classes), or undefined for unlabelled data.
  Tensor labels;
  /// 0 for unlabelled data.
  int64_t num_classes = 0;
  /// Where it came from, for logs ("fashion_mnist/train", "moons", a folder path, ...).
  std::string name;

  int64_t size() const { return data.defined() ? data.size(0) : 0; }

  /// Checks the invariants above; errors name the offending value.
  void validate() const;
};

}  // namespace diffuse
