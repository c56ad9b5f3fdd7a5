// SPDX-License-Identifier: Apache-2.0
// What masking buys a DiT training step: MaskDiT (Zheng et al., TMLR 2024) drops 50 % of the patch
// tokens before the encoder, which should make a step close to 2x cheaper in time and activation
// memory.
//
// One model (a DiT encoder + MaskDiT decoder), one AdamW optimiser, and alternating training steps
// (forward, MSE loss against a noise target, backward, AdamW step) with mask ratio 0.5 (a fresh
// random mask each step, the same count dropped per row) and with no mask at all (full sequence
// through encoder and decoder). Steps alternate so that load from other processes hits both modes
// alike; the median step time gives images/s.
//
// Memory is measured exactly, not sampled: a c10::MemoryReportingInfoBase is pushed as the
// thread's PROFILER_STATE debug info, and LibTorch's allocators then report every allocation and
// free made on this thread (and the autograd engine, which inherits the thread-local state) with
// its size: the CPU allocator on CPU and the CUDA caching allocator (block sizes) on GPU. "step
// peak" is the highest live total during a step minus the live total at its start (activations,
// gradients' temporaries, optimiser temporaries); "total peak" adds the resident parameters,
// gradients and AdamW state. Kernels' private scratch (oneDNN, cuBLAS workspaces) is not tensor
// memory and is not counted. Allocations made inside intra-op worker threads are not reported; run
// with --threads 1 for a complete count (the default).
//
//   diffuse_bench_training [--config fmnist|latent32|all] [--steps N] [--batch B] [--threads N]
//                          [--device cpu|cuda]
//
// Configs: fmnist = 28x28x1 (Fashion-MNIST), patch 2 -> 196 tokens, encoder d 128 x 6 blocks (4
// heads), decoder 64 x 2 (4 heads), 10 classes, batch 64; latent32 = 32x32x4 (a 256^2 SD latent),
// DiT-S/2 encoder (d 384 x 12, 6 heads), decoder 256 x 2 (8 heads), 1000 classes, batch 8.
#include <diffuse/training/dit.h>

#include <ATen/Parallel.h>
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/cuda.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using diffuse::Tensor;
using Clock = std::chrono::steady_clock;

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

/// Live and peak bytes of tensor memory on one device type, from the allocators' reports.
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

struct BenchConfig {
  std::string name;
  diffuse::DiTOptions options;
  int64_t batch;
};

std::vector<BenchConfig> configs() {
  using diffuse::DiTOptions;
  return {
      {"fmnist",
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
       diffuse::dit_preset("S/2", 32, 4)
           .num_classes(1000)
           .decoder_depth(2)
           .decoder_hidden_size(256)
           .decoder_num_heads(8),
       8},
  };
}

struct Args {
  std::string config = "all", device = "cpu";
  int64_t steps = 5, batch = 0;
  int threads = 1;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(
      stderr,
      "%s\nusage: diffuse_bench_training [--config fmnist|latent32|all] [--steps N] [--batch B] "
      "[--threads N] [--device cpu|cuda]\n",
      why.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage("missing value after " + k);
    const std::string v = argv[++i];
    if (k == "--config")
      a.config = v;
    else if (k == "--device")
      a.device = v;
    else if (k == "--steps")
      a.steps = std::stoll(v);
    else if (k == "--batch")
      a.batch = std::stoll(v);
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else
      usage("unknown option " + k);
  }
  if (a.steps < 1) usage("--steps must be >= 1");
  if (a.device != "cpu" && a.device != "cuda")
    usage("--device must be cpu or cuda, got " + a.device);
  return a;
}

/// MaskDiT's mask: per row a random permutation, the first floor(N (1 - ratio)) tokens kept.
Tensor random_mask(int64_t b, int64_t n, double ratio, const at::TensorOptions& opts) {
  const int64_t keep = static_cast<int64_t>(static_cast<double>(n) * (1.0 - ratio));
  Tensor order = at::argsort(at::rand({b, n}, opts.dtype(at::kFloat)), /*dim=*/int64_t{1});
  return at::ones({b, n}, opts.dtype(at::kBool)).scatter(1, order.narrow(1, 0, keep), false);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

void run(const BenchConfig& cfg, const Args& args, const std::shared_ptr<PeakMemory>& mem,
         const at::Device& device) {
  const int64_t batch = args.batch > 0 ? args.batch : cfg.batch;
  torch::manual_seed(0);
  diffuse::DiT model(cfg.options);
  model->to(device);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-4).weight_decay(0.0));
  const auto& o = cfg.options;
  const auto opts = at::TensorOptions().device(device);

  auto step = [&](bool masked, double* seconds, int64_t* step_peak, int64_t* total_peak) {
    Tensor x0 = at::randn({batch, o.in_channels(), o.input_size(), o.input_size()}, opts);
    Tensor eps = at::randn_like(x0);
    Tensor t = at::randint(0, 1000, {batch}, opts.dtype(at::kFloat));
    Tensor y = at::randint(0, o.num_classes() + 1, {batch}, opts.dtype(at::kLong));
    Tensor mask = masked ? random_mask(batch, model->num_tokens(), 0.5, opts) : Tensor();
    Tensor xt = x0 * 0.8 + eps * 0.6;
    if (device.is_cuda()) torch::cuda::synchronize();
    const int64_t base = mem->live();
    mem->reset_peak();
    const auto start = Clock::now();
    opt.zero_grad();
    Tensor loss = (model->forward(xt, t, y, mask) - eps).pow(2).mean();
    loss.backward();
    opt.step();
    if (device.is_cuda()) torch::cuda::synchronize();
    *seconds = std::chrono::duration<double>(Clock::now() - start).count();
    *step_peak = mem->peak() - base;
    *total_peak = mem->peak();
  };

  double sec;
  int64_t sp, tp;
  step(false, &sec, &sp, &tp);  // warm-up: allocates gradients and the AdamW state
  step(true, &sec, &sp, &tp);
  std::vector<double> times[2];
  int64_t step_peak[2] = {0, 0}, total_peak[2] = {0, 0};
  for (int64_t s = 0; s < args.steps; ++s)
    for (int m : {0, 1}) {
      step(m == 1, &sec, &sp, &tp);
      times[m].push_back(sec);
      step_peak[m] = std::max(step_peak[m], sp);
      total_peak[m] = std::max(total_peak[m], tp);
    }
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  std::printf(
      "\n%s: %lld x %lld x %lld, patch %lld -> %lld tokens, encoder d %lld x %lld, decoder d %lld "
      "x %lld, "
      "%.2fM parameters, batch %lld, %lld steps per mode, %s, %d thread(s)\n",
      cfg.name.c_str(), static_cast<long long>(o.in_channels()),
      static_cast<long long>(o.input_size()), static_cast<long long>(o.input_size()),
      static_cast<long long>(o.patch_size()), static_cast<long long>(model->num_tokens()),
      static_cast<long long>(o.hidden_size()), static_cast<long long>(o.depth()),
      static_cast<long long>(o.decoder_hidden_size()), static_cast<long long>(o.decoder_depth()),
      static_cast<double>(params) / 1e6, static_cast<long long>(batch),
      static_cast<long long>(args.steps), device.str().c_str(), args.threads);
  std::printf("  %-18s %12s %12s %16s %16s\n", "mode", "step (ms)", "images/s", "step peak (MiB)",
              "total peak (MiB)");
  const char* names[2] = {"no mask", "mask ratio 0.5"};
  double ips[2];
  for (int m : {0, 1}) {
    const double med = median(times[m]);
    ips[m] = static_cast<double>(batch) / med;
    std::printf("  %-18s %12.1f %12.1f %16.2f %16.2f\n", names[m], med * 1e3, ips[m],
                mib(step_peak[m]), mib(total_peak[m]));
  }
  std::printf("  masked / unmasked: speed x%.2f, step peak memory x%.3f, total peak memory x%.3f\n",
              ips[1] / ips[0],
              static_cast<double>(step_peak[1]) / static_cast<double>(step_peak[0]),
              static_cast<double>(total_peak[1]) / static_cast<double>(total_peak[0]));
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  at::set_num_threads(args.threads);
  if (args.device == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr,
                 "--device cuda: CUDA is not available in this LibTorch build or machine\n");
    return 1;
  }
  const at::Device device(args.device == "cuda" ? at::kCUDA : at::kCPU);
  auto mem = std::make_shared<PeakMemory>(device.type());
  c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, mem);

  // Self-check that the hook sees allocations on this LibTorch: a 4 MiB tensor must show up
  // exactly.
  {
    const int64_t before = mem->live();
    Tensor probe = at::empty({1 << 20}, at::TensorOptions().dtype(at::kFloat).device(device));
    const int64_t seen = mem->live() - before;
    if (seen < (int64_t{4} << 20)) {
      std::fprintf(stderr,
                   "memory hook saw %lld bytes for a 4 MiB tensor; cannot measure memory here\n",
                   static_cast<long long>(seen));
      return 1;
    }
    std::printf("memory hook check: a 4 MiB tensor reported as %lld bytes\n",
                static_cast<long long>(seen));
  }

  bool any = false;
  for (const auto& cfg : configs()) {
    if (args.config != "all" && args.config != cfg.name) continue;
    any = true;
    run(cfg, args, mem, device);
  }
  if (!any) usage("unknown --config " + args.config + "; valid: fmnist, latent32, all");
  return 0;
}
