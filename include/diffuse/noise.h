// SPDX-License-Identifier: Apache-2.0
// Where samplers get their Gaussian noise. Every random draw in a sampling run goes through one
// NoiseSource, so a seed reproduces a run bit for bit and a user can replay recorded noise.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <ATen/core/Generator.h>
#include <c10/core/TensorOptions.h>
#include <c10/util/ArrayRef.h>

#include <diffuse/tensor.h>

namespace diffuse {

class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  /// A tensor of N(0, 1) draws with this shape, dtype and device.
  virtual Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) = 0;
  Tensor randn_like(const Tensor& x) { return randn(x.sizes(), x.options()); }
};

/// One LibTorch CPU generator for the whole batch: draws are torch.randn(shape, generator=g)
/// with g = torch.Generator().manual_seed(seed), bit for bit (diffusers' single-generator
/// convention). Sample i's noise depends on the batch size.
std::unique_ptr<NoiseSource> make_torch_noise(uint64_t seed);

/// One generator per batch element, seeded seed + i (diffusers' list-of-generators idiom:
/// [torch.Generator().manual_seed(seed + i) for i in range(B)]). Sample i's noise does not depend
/// on the batch size. This is diffuse's default.
std::unique_ptr<NoiseSource> make_per_sample_noise(uint64_t seed);

/// Replays a recorded list of tensors in order (shape-checked); throws when it runs out.
std::unique_ptr<NoiseSource> make_replay_noise(std::vector<Tensor> draws);

namespace detail {
/// A LibTorch CPU generator seeded `seed` (torch.Generator().manual_seed(seed)).
at::Generator cpu_generator(uint64_t seed);
}  // namespace detail

}  // namespace diffuse
