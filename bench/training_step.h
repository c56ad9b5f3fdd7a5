// SPDX-License-Identifier: Apache-2.0
// The masked vs unmasked DiT training step measured by bench/training.cpp and `diffuse bench
// --suite training`: exact tensor-memory accounting through the allocators' reports, the two
// model configurations, and one timed training step (forward, MSE loss, backward, AdamW).
#pragma once

#include <diffuse/training/dit.h>

#include "timing.h"

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/cuda.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace diffuse::bench {

/// The type of the allocators' running totals in reportMemoryUsage: int64_t in LibTorch 1.13,
/// size_t in 2.x. Read off the base class so that the override matches either.
template <class F>
struct ThirdArgument;
template <class C, class R, class A1, class A2, class A3, class A4, class A5>
struct ThirdArgument<R (C::*)(A1, A2, A3, A4, A5)> {
  using type = A3;
};
using AllocatorTotal =
    ThirdArgument<decltype(&c10::MemoryReportingInfoBase::reportMemoryUsage)>::type;

/// Live and peak bytes of tensor memory on one device type, from the allocators' reports. Active
/// while pushed as the thread's PROFILER_STATE debug info (c10::DebugInfoGuard); allocations made
/// inside intra-op worker threads are not reported (use one thread for a complete count).
class PeakMemory final : public c10::MemoryReportingInfoBase {
 public:
  explicit PeakMemory(c10::DeviceType type) : type_(type) {}
  void reportMemoryUsage(void* ptr, int64_t alloc_size, AllocatorTotal, AllocatorTotal,
                         c10::Device device) override {
    if (device.type() != type_ || alloc_size == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (alloc_size > 0) {
      sizes_[ptr] = alloc_size;
      live_ += alloc_size;
      peak_ = std::max(peak_, live_);
    } else {
      auto it = sizes_.find(ptr);  // frees of blocks allocated before the hook are ignored
      if (it != sizes_.end()) {
        live_ -= it->second;
        sizes_.erase(it);
      }
    }
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t live() {
    std::lock_guard<std::mutex> lock(mu_);
    return live_;
  }
  int64_t peak() {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = live_;
  }

 private:
  c10::DeviceType type_;
  std::mutex mu_;
  std::unordered_map<void*, int64_t> sizes_;
  int64_t live_ = 0, peak_ = 0;
};

/// A benchmarked model: a DiT encoder with a MaskDiT decoder, and its default batch.
struct TrainingConfig {
  std::string name;
  std::string description;
  DiTOptions options;
  int64_t batch;
};

/// fmnist = 28x28x1, patch 2 -> 196 tokens, encoder 128 x 6 (4 heads), decoder 64 x 2, batch 64;
/// latent32 = 32x32x4 (a 256^2 SD latent), DiT-S/2 encoder, decoder 256 x 2 (8 heads), batch 8.
inline std::vector<TrainingConfig> training_configs() {
  return {
      {"fmnist",
       "Fashion-MNIST 28x28x1, patch 2 (196 tokens), encoder 128x6, decoder 64x2, batch 64",
       DiTOptions(28, 1)
           .hidden_size(128)
           .depth(6)
           .num_heads(4)
           .num_classes(10)
           .decoder_depth(2)
           .decoder_hidden_size(64)
           .decoder_num_heads(4),
       64},
      {"latent32",
       "SD latent 32x32x4, patch 2 (256 tokens), DiT-S/2 encoder, decoder 256x2, batch 8",
       dit_preset("S/2", 32, 4)
           .num_classes(1000)
           .decoder_depth(2)
           .decoder_hidden_size(256)
           .decoder_num_heads(8),
       8},
  };
}

/// MaskDiT's mask: per row a random permutation, the first floor(N (1 - ratio)) tokens kept.
inline Tensor random_mask(int64_t b, int64_t n, double ratio, const at::TensorOptions& opts) {
  const int64_t keep = static_cast<int64_t>(static_cast<double>(n) * (1.0 - ratio));
  Tensor order = at::argsort(at::rand({b, n}, opts.dtype(at::kFloat)), /*dim=*/int64_t{1});
  return at::ones({b, n}, opts.dtype(at::kBool)).scatter(1, order.narrow(1, 0, keep), false);
}

inline double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

/// One model + AdamW optimiser; step() runs and measures one training step.
class TrainingBench {
 public:
  /// What one step measured.
  struct Step {
    double seconds = 0;
    double cpu_seconds = 0;  ///< CPU seconds of the process during the step (timing.h)
    int64_t step_peak = 0;   ///< highest live tensor bytes during the step minus those at its start
    int64_t total_peak = 0;  ///< highest live tensor bytes during the step
  };

  /// batch 0 = the config's. `mem` must be the PROFILER_STATE debug info of this thread.
  TrainingBench(const TrainingConfig& cfg, int64_t batch, std::shared_ptr<PeakMemory> mem,
                const at::Device& device)
      : cfg_(cfg),
        batch_(batch > 0 ? batch : cfg.batch),
        mem_(std::move(mem)),
        device_(device),
        model_(make_model(cfg, device)),
        opt_(model_->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(0.0)) {}

  Step step(bool masked) {
    const auto& o = cfg_.options;
    const auto opts = at::TensorOptions().device(device_);
    Tensor x0 = at::randn({batch_, o.in_channels(), o.input_size(), o.input_size()}, opts);
    Tensor eps = at::randn_like(x0);
    Tensor t = at::randint(0, 1000, {batch_}, opts.dtype(at::kFloat));
    Tensor y = at::randint(0, o.num_classes() + 1, {batch_}, opts.dtype(at::kLong));
    Tensor mask = masked ? random_mask(batch_, model_->num_tokens(), 0.5, opts) : Tensor();
    Tensor xt = x0 * 0.8 + eps * 0.6;
    if (device_.is_cuda()) torch::cuda::synchronize();
    const int64_t base = mem_->live();
    mem_->reset_peak();
    const double cpu0 = cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    opt_.zero_grad();
    Tensor loss = (model_->forward(xt, t, y, mask) - eps).pow(2).mean();
    loss.backward();
    opt_.step();
    if (device_.is_cuda()) torch::cuda::synchronize();
    Step s;
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    s.cpu_seconds = cpu_seconds() - cpu0;
    s.step_peak = mem_->peak() - base;
    s.total_peak = mem_->peak();
    return s;
  }

  int64_t batch() const { return batch_; }
  int64_t parameters() const {
    int64_t n = 0;
    for (const auto& p : model_->parameters()) n += p.numel();
    return n;
  }
  DiT& model() { return model_; }

 private:
  static DiT make_model(const TrainingConfig& cfg, const at::Device& device) {
    torch::manual_seed(0);
    DiT model(cfg.options);
    model->to(device);
    return model;
  }

  TrainingConfig cfg_;
  int64_t batch_;
  std::shared_ptr<PeakMemory> mem_;
  at::Device device_;
  DiT model_;
  torch::optim::AdamW opt_;
};

}  // namespace diffuse::bench
