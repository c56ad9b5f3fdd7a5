// SPDX-License-Identifier: Apache-2.0
// Where samplers get their Gaussian noise. Every random draw in a sampling run goes through one
// NoiseSource, so a seed reproduces a run bit for bit and a user can replay recorded noise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <c10/core/TensorOptions.h>
#include <c10/util/ArrayRef.h>

#include <diffuse/detail/philox.h>
#include <diffuse/tensor.h>

namespace diffuse {

class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  /// A tensor of N(0, 1) draws with this shape, dtype and device.
  virtual Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) = 0;
  Tensor randn_like(const Tensor& x) { return randn(x.sizes(), x.options()); }
  /// x += z c for the next draw z = randn_like(x), with the bits of add_scaled_(x, z, c). A source
  /// may do it without materialising z (make_philox_noise does, for float32 CPU tensors).
  virtual void add_randn_(Tensor& x, double c);
};

/// One LibTorch CPU generator for the whole batch: draws are torch.randn(shape, generator=g)
/// with g = torch.Generator().manual_seed(seed), bit for bit (diffusers' single-generator
/// convention). Sample i's noise depends on the batch size.
std::unique_ptr<NoiseSource> make_torch_noise(uint64_t seed);

/// One generator per batch element, seeded seed + i (diffusers' list-of-generators idiom:
/// [torch.Generator().manual_seed(seed + i) for i in range(B)]). Sample i's noise does not depend
/// on the batch size. This is diffuse's default (SampleOptions::noise).
std::unique_ptr<NoiseSource> make_per_sample_noise(uint64_t seed);

/// Replays a recorded list of tensors in order (shape-checked); throws when it runs out.
std::unique_ptr<NoiseSource> make_replay_noise(std::vector<Tensor> draws);

/// Counter-based noise: element j of batch element i in the k-th draw of the run is a fixed
/// function of (seed, i, k, j), Philox4x32-10 (Salmon et al. 2011, "Parallel Random Numbers: As
/// Easy as 1, 2, 3"; the generator of PyTorch's CUDA backend and of JAX) with the key = seed and
/// the counter = (j / 4, k, i), turned into normals by the Box-Muller transform in float32 with
/// diffuse's own log and sin/cos and the correctly rounded sqrt (no libm calls, no FMA
/// contraction, so the loop vectorises and the numbers are the same on every x86-64 and ARM
/// machine and build; within 1e-6 of the exact transform of the same words). Like per-sample
/// noise, sample i's noise does not depend on the batch size; unlike it, nothing depends on the
/// order of the draws within a sample either. Not the stream of any PyTorch generator.
/// Batch element i draws as sample first_sample + i (a batch that holds samples 8..15 of a larger
/// set passes 8 and gets their numbers).
std::unique_ptr<NoiseSource> make_philox_noise(uint64_t seed, uint64_t first_sample = 0);

/// A source by name, for command lines and config files: "per_sample" (make_per_sample_noise,
/// seeded seed + first_sample), "torch" (make_torch_noise, seeded seed + first_sample: one stream
/// for the batch) or "philox" (make_philox_noise(seed, first_sample)). With per_sample and philox
/// batch element i gets the noise of sample first_sample + i of `seed` whatever the batching.
/// An unknown name is an Error naming it and the choices.
std::unique_ptr<NoiseSource> make_noise(const std::string& name, uint64_t seed,
                                        uint64_t first_sample = 0);
/// The names make_noise takes.
const std::vector<std::string>& noise_names();

namespace detail {
/// A LibTorch CPU generator seeded `seed` (torch.Generator().manual_seed(seed)).
at::Generator cpu_generator(uint64_t seed);
/// The source of a run without SampleOptions::noise: make_per_sample_noise(seed) continued past
/// one draw of `initial_shape`, the draw randn(initial_shape, seed) makes, so a run started from
/// randn(shape, seed) never draws its starting noise again (diffusers' pipelines continue their
/// generators from the latents into the steps the same way). The skipped draw is made at the
/// first draw, so a run that draws nothing costs nothing.
std::unique_ptr<NoiseSource> default_run_noise(uint64_t seed, c10::IntArrayRef initial_shape);
}  // namespace detail

}  // namespace diffuse
