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
// detected from the torch_cuda target). Without it only detail::StaticNoise (device-agnostic,
// tested on the CPU) is defined. See docs/gpu.md.
#pragma once

#include <cmath>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/noise.h>
#include <diffuse/sample.h>

#if defined(DIFFUSE_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
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
  void record(NoiseSource* source) {
    recording_ = true;
    source_ = source;
    shapes_.clear();
    options_.clear();
    buffers_.clear();
    next_ = 0;
  }
  /// Allocates one buffer per recorded draw and switches to replaying.
  void allocate() {
    buffers_.clear();
    for (size_t i = 0; i < shapes_.size(); ++i)
      buffers_.push_back(at::zeros(shapes_[i], options_[i]));
    recording_ = false;
    next_ = 0;
  }
  /// The next replayed draw is buffer 0 again.
  void rewind() { next_ = 0; }
  /// Writes draws from `source` into the buffers, in recording order.
  void refill(NoiseSource& source) {
    for (size_t i = 0; i < buffers_.size(); ++i)
      buffers_[i].copy_(source.randn(shapes_[i], options_[i]));
  }
  size_t draws() const { return shapes_.size(); }
  /// Buffers handed out since the last rewind().
  size_t consumed() const { return next_; }
  const std::vector<Tensor>& buffers() const { return buffers_; }

  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    if (recording_) {
      shapes_.emplace_back(shape.begin(), shape.end());
      options_.push_back(options);
      return source_ != nullptr ? source_->randn(shape, options) : at::zeros(shape, options);
    }
    check(next_ < buffers_.size(), "CudaGraphSampler: the sampler drew more noise (", next_ + 1,
          " draws) than during warm-up (", buffers_.size(),
          "); its draws must not depend on the data");
    const Tensor& b = buffers_[next_];
    check(b.sizes() == shape, "CudaGraphSampler: noise draw ", next_, " has shape ", shape,
          ", during warm-up it had ", b.sizes());
    ++next_;
    return b;
  }

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
                   const Tensor& noise, SampleOptions options = {}, int warmup = 2)
      : options_(std::move(options)) {
    check(noise.defined() && noise.is_cuda(),
          "CudaGraphSampler: the noise must be a CUDA tensor, got ",
          noise.defined() ? detail::cat(noise.device()) : std::string("an undefined tensor"));
    check(at::isFloatingType(noise.scalar_type()),
          "CudaGraphSampler: the noise must be floating point, got ", noise.scalar_type());
    check(noise.dim() >= 1 && noise.size(0) > 0,
          "CudaGraphSampler: the noise needs a batch dimension, got shape ", noise.sizes());
    check(warmup >= 1, "CudaGraphSampler: warmup must be >= 1, got ", warmup);
    check(options_.corrections.empty(), "CudaGraphSampler: corrections are not supported (",
          options_.corrections.size(), " given): they run host code at every step");
    check(!options_.on_step,
          "CudaGraphSampler: SampleOptions.on_step is not supported (it would run only during "
          "capture)");
    check(!options_.noise,
          "CudaGraphSampler: SampleOptions.noise is not supported; pass a NoiseSource to run()");
    device_ = noise.device();
    c10::cuda::CUDAGuard device_guard(device_);
    check_output_ = options_.check_finite;
    options_.check_finite = false;
    to_device(options_.cond);
    to_device(options_.uncond);
    options_.noise = noise_;
    input_ = noise.detach().clone();

    // Warm-up and capture on a side stream (CUDA graphs cannot capture the legacy default stream).
    c10::cuda::getCurrentCUDAStream(device_.index()).synchronize();
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device_.index());
    {
      c10::cuda::CUDAStreamGuard stream_guard(side);
      for (int i = 0; i < warmup; ++i) {
        auto source = make_per_sample_noise(options_.seed);
        noise_->record(source.get());
        (void)diffuse::sample(sampler, denoiser, schedule, input_, options_);
      }
      noise_->allocate();
      side.synchronize();
      graph_ = std::make_unique<at::cuda::CUDAGraph>();
      noise_->rewind();
      graph_->capture_begin();
      try {
        output_ = diffuse::sample(sampler, denoiser, schedule, input_, options_);
      } catch (const std::exception& e) {
        try {
          graph_->capture_end();
        } catch (...) {
        }
        std::string what = e.what();
        what = what.substr(0, what.find('\n'));
        throw Error(detail::cat(
            "CudaGraphSampler: capturing the sampling loop failed (the network, sampler or "
            "denoiser options need host work, e.g. a synchronisation): ",
            what));
      }
      graph_->capture_end();
      side.synchronize();
    }
    check(noise_->consumed() == noise_->draws(), "CudaGraphSampler: the captured run drew ",
          noise_->consumed(), " noise tensors, the warm-up ", noise_->draws());
  }

  CudaGraphSampler(const CudaGraphSampler&) = delete;
  CudaGraphSampler& operator=(const CudaGraphSampler&) = delete;

  /// Copies `noise` (same shape and dtype as at construction; any device) into the static input,
  /// refills the pre-drawn noise from per-sample generators seeded `seed` (as SampleOptions::seed),
  /// replays the graph and returns a copy of the output.
  Tensor run(const Tensor& noise, uint64_t seed = 0) {
    auto source = make_per_sample_noise(seed);
    return run(noise, *source);
  }
  /// As run(noise, seed), with the stochastic samplers' draws taken from `source`, in the order
  /// the eager loop would make them.
  Tensor run(const Tensor& noise, NoiseSource& source) {
    replay(noise, source);
    return output_.clone();
  }
  /// Replays without copying the result: output() holds it until the next replay.
  void replay(const Tensor& noise, NoiseSource& source) {
    check(noise.defined() && noise.sizes() == input_.sizes() &&
              noise.scalar_type() == input_.scalar_type(),
          "CudaGraphSampler::run: the noise must have the captured shape ", input_.sizes(),
          " and dtype ", input_.scalar_type(), ", got ",
          noise.defined() ? detail::cat(noise.sizes(), " ", noise.scalar_type())
                          : std::string("an undefined tensor"));
    c10::cuda::CUDAGuard device_guard(device_);
    input_.copy_(noise);
    noise_->refill(source);
    graph_->replay();
    if (check_output_) {
      const double total = output_.sum(at::kDouble).item<double>();
      check(std::isfinite(total) || at::isfinite(output_).all().item<bool>(),
            "CudaGraphSampler: the sampled output contains NaN/Inf");
    }
  }

  /// The static output of the last replay (overwritten by the next one).
  const Tensor& output() const { return output_; }
  /// The conditioning tensors the graph reads (device copies of SampleOptions::cond / uncond).
  Conditioning& cond() { return options_.cond; }
  Conditioning& uncond() { return options_.uncond; }
  /// Noise tensors drawn per run (0 for deterministic samplers).
  size_t noise_draws() const { return noise_->draws(); }
  const at::Device& device() const { return device_; }

 private:
  void to_device(Conditioning& c) const {
    if (c.value.defined()) c.value = c.value.to(device_).clone();
    for (auto& kv : c.extra)
      if (kv.second.defined()) kv.second = kv.second.to(device_).clone();
  }

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
