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
//                          [--device cpu|cuda] [--caching-allocator 1|0]
//
// --caching-allocator 1 (default) runs on diffuse's caching CPU allocator, as the CLI does (it
// reports to the same memory hook); 0 leaves LibTorch's malloc, whose page faults made the speed
// ratio depend on glibc's thresholds (issue 18).
//
// Configs: fmnist = 28x28x1 (Fashion-MNIST), patch 2 -> 196 tokens, encoder d 128 x 6 blocks (4
// heads), decoder 64 x 2 (4 heads), 10 classes, batch 64; latent32 = 32x32x4 (a 256^2 SD latent),
// DiT-S/2 encoder (d 384 x 12, 6 heads), decoder 256 x 2 (8 heads), 1000 classes, batch 8.
#include <diffuse/cpu_allocator.h>
#include <diffuse/training/dit.h>

#include "training_step.h"

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
using diffuse::bench::median_of;
using diffuse::bench::mib;
using diffuse::bench::PeakMemory;
using diffuse::bench::TrainingBench;

struct Args {
  std::string config = "all", device = "cpu";
  int64_t steps = 5, batch = 0;
  int threads = 1;
  bool caching_allocator = true;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(
      stderr,
      "%s\nusage: diffuse_bench_training [--config fmnist|latent32|all] [--steps N] [--batch B] "
      "[--threads N] [--device cpu|cuda] [--caching-allocator 1|0]\n",
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
    else if (k == "--caching-allocator")
      a.caching_allocator = v != "0" && v != "false";
    else
      usage("unknown option " + k);
  }
  if (a.steps < 1) usage("--steps must be >= 1");
  if (a.device != "cpu" && a.device != "cuda")
    usage("--device must be cpu or cuda, got " + a.device);
  return a;
}

void run(const diffuse::bench::TrainingConfig& cfg, const Args& args,
         const std::shared_ptr<PeakMemory>& mem, const at::Device& device) {
  TrainingBench bench(cfg, args.batch, mem, device);
  const int64_t batch = bench.batch();
  const auto& o = cfg.options;
  auto& model = bench.model();
  bench.step(false);  // warm-up: allocates gradients and the AdamW state
  bench.step(true);
  std::vector<double> times[2];
  int64_t step_peak[2] = {0, 0}, total_peak[2] = {0, 0};
  for (int64_t s = 0; s < args.steps; ++s)
    for (int m : {0, 1}) {  // modes alternate so that load from other processes hits both alike
      const TrainingBench::Step st = bench.step(m == 1);
      times[m].push_back(st.seconds);
      step_peak[m] = std::max(step_peak[m], st.step_peak);
      total_peak[m] = std::max(total_peak[m], st.total_peak);
    }
  const int64_t params = bench.parameters();
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
    const double med = median_of(times[m]);
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
  if (args.caching_allocator) diffuse::enable_caching_cpu_allocator();
  std::printf("CPU allocator: %s\n",
              args.caching_allocator ? "diffuse's caching allocator" : "LibTorch's (malloc)");
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
  for (const auto& cfg : diffuse::bench::training_configs()) {
    if (args.config != "all" && args.config != cfg.name) continue;
    any = true;
    run(cfg, args, mem, device);
  }
  if (!any) usage("unknown --config " + args.config + "; valid: fmnist, latent32, all");
  return 0;
}
