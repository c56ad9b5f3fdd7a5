// SPDX-License-Identifier: Apache-2.0
// CudaGraphSampler of <diffuse/cuda_graph.h>. Compiled only when DIFFUSE_CUDA is ON (a CUDA build
// of LibTorch; CMakeLists.txt leaves this file out otherwise); scripts/cuda-syntax-check.sh
// syntax-checks it against the CUDA headers on machines without one.
#include <diffuse/cuda_graph.h>

#include <cmath>
#include <exception>
#include <string>
#include <utility>

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>

namespace diffuse {

CudaGraphSampler::CudaGraphSampler(const Sampler& sampler, const Denoiser& denoiser,
                                   const NoiseSchedule& schedule, const Tensor& noise,
                                   SampleOptions options, int warmup)
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
      auto source = detail::default_run_noise(options_.seed, input_.sizes());
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

Tensor CudaGraphSampler::run(const Tensor& noise, uint64_t seed) {
  auto source = detail::default_run_noise(seed, noise.sizes());
  return run(noise, *source);
}

Tensor CudaGraphSampler::run(const Tensor& noise, NoiseSource& source) {
  replay(noise, source);
  return output_.clone();
}

void CudaGraphSampler::replay(const Tensor& noise, NoiseSource& source) {
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
    check_numerics(std::isfinite(total) || at::isfinite(output_).all().item<bool>(),
                   "CudaGraphSampler: the sampled output contains NaN/Inf");
  }
}

void CudaGraphSampler::to_device(Conditioning& c) const {
  if (c.value.defined()) c.value = c.value.to(device_).clone();
  for (auto& kv : c.extra)
    if (kv.second.defined()) kv.second = kv.second.to(device_).clone();
}

CudaGraphSampler::~CudaGraphSampler() = default;

}  // namespace diffuse
