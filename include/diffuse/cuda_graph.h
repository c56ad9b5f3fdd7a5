// SPDX-License-Identifier: Apache-2.0
// A sampling loop captured once into a CUDA graph and replayed: every kernel of the whole run
// (initial scaling, every network call, guidance, every sampler update) is launched with one
// cudaGraphLaunch, which removes the per-operator CPU dispatch cost that dominates small networks
// and small batches. Fixed shapes: the batch, the sample shape, the dtype, the grid, the
// conditioning shapes and the guidance are those of the capture.
//
//   CudaGraphSampler g(*sampler, denoiser, *schedule, noise, options);   // warm-up + capture
//   Tensor x = g.run(noise, /*seed=*/0);    // == diffuse::sample(...) with options.seed = 0
//
// Stochastic samplers (DDPM, Euler ancestral, DPM-Solver++ SDE, ...) are supported with
// pre-drawn noise: the capture records the shape of every draw the sampler makes and reads each
// from a static device buffer; run() refills those buffers, in the same order, from the seed's
// per-sample generators (or a NoiseSource you pass), so the result equals the eager run with
// the same noise.
//
// Only built when LibTorch has CUDA: CMake defines DIFFUSE_WITH_CUDA (option DIFFUSE_CUDA,
// detected from the torch_cuda target) and compiles src/cuda_graph.cpp. Without it only
// detail::StaticNoise (device-agnostic, tested on the CPU; src/static_noise.cpp) is defined.
// See docs/gpu.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <diffuse/noise.h>
#include <diffuse/sample.h>
#include <diffuse/tensor.h>

#if defined(DIFFUSE_WITH_CUDA)
namespace at::cuda {
struct CUDAGraph;
}  // namespace at::cuda
#endif

namespace diffuse {
namespace detail {

/// A NoiseSource with two modes. Recording: each draw is taken from `source` (if any; else
/// zeros) and its shape and options are remembered. Replaying: the i-th draw returns the i-th
/// static buffer (allocated by allocate(), same shape and options as the recorded draw), so a
/// captured graph reads whatever refill() last wrote there. Draw counts and shapes must match
/// between the recording and each replay (checked).
class StaticNoise final : public NoiseSource {
 public:
  /// Starts (or restarts) recording; `source` may be null.
  void record(NoiseSource* source);
  /// Allocates one buffer per recorded draw and switches to replaying.
  void allocate();
  /// The next replayed draw is buffer 0 again.
  void rewind() { next_ = 0; }
  /// Writes draws from `source` into the buffers, in recording order.
  void refill(NoiseSource& source);
  size_t draws() const { return shapes_.size(); }
  /// Buffers handed out since the last rewind().
  size_t consumed() const { return next_; }
  const std::vector<Tensor>& buffers() const { return buffers_; }

  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override;

 private:
  bool recording_ = true;
  NoiseSource* source_ = nullptr;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<c10::TensorOptions> options_;
  std::vector<Tensor> buffers_;
  size_t next_ = 0;
};

}  // namespace detail

#if defined(DIFFUSE_WITH_CUDA)

/// Captures diffuse::sample(sampler, denoiser, schedule, noise, options) for one CUDA device and
/// fixed shapes into a CUDA graph (at::cuda::CUDAGraph) and replays it.
///
/// Construction runs `warmup` eager runs on a side stream (cuBLAS/cuDNN initialisation, lazy
/// allocations; >= 1, default 2), then captures one run. Requirements (each violation is a
/// diffuse::Error naming it):
///   - `noise` is a floating tensor on a CUDA device; it fixes shape, dtype and device;
///   - options.corrections is empty and options.on_step is unset (corrections and callbacks run
///     host code that a replay would skip); options.noise is unset (pass a NoiseSource to run()
///     instead);
///   - the network and sampler launch only CUDA work for a given grid (no host synchronisation,
///     no data-dependent control flow), which holds for the built-in samplers and the DiT.
/// options.check_finite is honoured once per run() on the output (the per-call checks would need a
/// host synchronisation inside the graph). Conditioning tensors are copied to the device;
/// cond() / uncond() expose those copies: copy_ new values of the same shape into them to change
/// labels between runs.
///
/// The network's parameters are read at replay time, at the addresses they had during capture:
/// keep the model alive and do not reallocate its parameters (in-place updates, e.g. an EMA, are
/// picked up). The sampler, denoiser and schedule are only used during construction.
/// Not copyable; one run() at a time.
class CudaGraphSampler {
 public:
  CudaGraphSampler(const Sampler& sampler, const Denoiser& denoiser, const NoiseSchedule& schedule,
                   const Tensor& noise, SampleOptions options = {}, int warmup = 2);

  ~CudaGraphSampler();
  CudaGraphSampler(const CudaGraphSampler&) = delete;
  CudaGraphSampler& operator=(const CudaGraphSampler&) = delete;

  /// Copies `noise` (same shape and dtype as at construction; any device) into the static input,
  /// refills the pre-drawn noise from per-sample generators seeded `seed` (as SampleOptions::seed),
  /// replays the graph and returns a copy of the output.
  Tensor run(const Tensor& noise, uint64_t seed = 0);
  /// As run(noise, seed), with the stochastic samplers' draws taken from `source`, in the order
  /// the eager loop would make them.
  Tensor run(const Tensor& noise, NoiseSource& source);
  /// Replays without copying the result: output() holds it until the next replay.
  void replay(const Tensor& noise, NoiseSource& source);

  /// The static output of the last replay (overwritten by the next one).
  const Tensor& output() const { return output_; }
  /// The conditioning tensors the graph reads (device copies of SampleOptions::cond / uncond).
  Conditioning& cond() { return options_.cond; }
  Conditioning& uncond() { return options_.uncond; }
  /// Noise tensors drawn per run (0 for deterministic samplers).
  size_t noise_draws() const { return noise_->draws(); }
  const at::Device& device() const { return device_; }

 private:
  void to_device(Conditioning& c) const;

  // Declaration order matters: tensors from the graph's private memory pool are destroyed before
  // the graph.
  std::unique_ptr<at::cuda::CUDAGraph> graph_;
  std::shared_ptr<detail::StaticNoise> noise_ = std::make_shared<detail::StaticNoise>();
  SampleOptions options_;
  at::Device device_ = at::kCUDA;
  bool check_output_ = true;
  Tensor input_, output_;
};

#endif  // DIFFUSE_WITH_CUDA

}  // namespace diffuse
