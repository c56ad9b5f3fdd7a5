// SPDX-License-Identifier: Apache-2.0
// How much time a sampler spends outside the network, per step.
//
// Every registered sampler (keys, and aliases with preset options) runs diffuse::sample() on a
// [4, 4, 32, 32] float32 CPU batch with an epsilon network whose calls are timed from the inside,
// so one run gives both the total and the network time:
//   overhead per step = (total - network time) / steps.
// Two networks:
//   trivial:    eps = x * 0.1 (one elementwise op); measures the library's own cost: solver
//               arithmetic, eps/x0 conversion, noise draws, the finiteness check, bookkeeping;
//   cost model: a chain of [B*256, 384] x [384, 384] matmuls, the shape of DiT-S/2 on 32x32x4
//               latents (256 tokens, hidden 384). A full DiT-S/2 forward is about 6.06 GFLOP per
//               image (Peebles & Xie 2023, Table 1), 24.2 GFLOP for this batch = 80 such matmuls;
//               --cost-matmuls sets how many run (default 8, a tenth), and the report scales the
//               measured overhead to the full-size network time as well.
// Not a unit test: timings depend on the machine. Threads: --threads N (default: all hardware
// threads) sets LibTorch's intra-op pool.
//
//   diffuse_bench_sampler_overhead [--threads N] [--steps 50] [--runs 7] [--cost-steps 10]
//                                  [--cost-matmuls 8] [--samplers a,b,c] [--check-finite 1|0]
//                                  [--caching-allocator 1|0]
// --caching-allocator 1 (default) runs on diffuse's caching CPU allocator (as the CLI does): with
// LibTorch's malloc the runs are bimodal (freed buffers go back to the OS and fault in again).
#include <diffuse/all.h>
#include <diffuse/detail/fused.h>

#include "timing.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using diffuse::Tensor;
using diffuse::bench::RunTime;
using diffuse::bench::timed_sample;
using diffuse::bench::TimedNetwork;

struct Args {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t steps = 50, runs = 7, cost_steps = 10, cost_matmuls = 8;
  bool check_finite = true, caching_allocator = true;
  std::vector<std::string> samplers;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::printf(
          "usage: %s [--threads N] [--steps 50] [--runs 7] [--cost-steps 10] [--cost-matmuls 8] "
          "[--samplers a,b] [--check-finite 1|0] [--caching-allocator 1|0]\n",
          argv[0]);
      std::exit(0);
    }
    diffuse::check(i + 1 < argc, "option ", k, " needs a value");
    const std::string v = argv[++i];
    if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--steps")
      a.steps = std::stoll(v);
    else if (k == "--runs")
      a.runs = std::stoll(v);
    else if (k == "--cost-steps")
      a.cost_steps = std::stoll(v);
    else if (k == "--cost-matmuls")
      a.cost_matmuls = std::stoll(v);
    else if (k == "--check-finite")
      a.check_finite = v != "0" && v != "false";
    else if (k == "--caching-allocator")
      a.caching_allocator = v != "0" && v != "false";
    else if (k == "--samplers") {
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) a.samplers.push_back(item);
    } else {
      throw diffuse::Error("unknown option '" + k + "'");
    }
  }
  diffuse::check(
      a.threads >= 1 && a.steps >= 2 && a.runs >= 1 && a.cost_steps >= 2 && a.cost_matmuls >= 1,
      "all counts must be positive (steps >= 2)");
  return a;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  at::set_num_threads(args.threads);
  if (args.caching_allocator) diffuse::enable_caching_cpu_allocator();
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const int64_t batch = 4, tokens = 256, hidden = 384;

  auto schedule = diffuse::make_schedule("discrete");
  const Tensor noise = diffuse::randn({batch, 4, 32, 32}, 0, f32);

  TimedNetwork trivial_timer, cost_timer;
  const diffuse::Denoiser trivial(trivial_timer.wrap(diffuse::bench::trivial_network()));
  // Cost model: project the latent to [B*256, 384] tokens, K matmuls, project back.
  at::Generator g = diffuse::detail::cpu_generator(1);
  const Tensor w = at::randn({hidden, hidden}, g, f32) / std::sqrt(static_cast<double>(hidden));
  const Tensor w_in = at::randn({16, hidden}, g, f32) / 4.0,
               w_out = at::randn({hidden, 16}, g, f32) / std::sqrt(384.0);
  const int64_t k = args.cost_matmuls;
  const diffuse::Denoiser cost(
      cost_timer.wrap(diffuse::bench::dit_s_cost_network(w_in, w, w_out, k)));
  const double flop_per_matmul = 2.0 * batch * tokens * hidden * hidden;
  const double dit_s_flop = 6.06e9 * batch;

  const auto& registry = diffuse::Registry<diffuse::Sampler>::get();
  std::vector<std::string> names = args.samplers;
  if (names.empty()) names = diffuse::distinct_sampler_names();

  // Measured network throughput of the cost model, to scale to a full DiT-S/2 forward.
  {
    Tensor x = noise.clone();
    for (int i = 0; i < 2; ++i) cost(x, schedule->at(500), {});
  }
  double cost_call = 1e30;  // min over 5 calls: the machine may be shared
  for (int i = 0; i < 5; ++i) {
    cost_timer.reset();
    cost(noise, schedule->at(500), {});
    cost_call = std::min(cost_call, *cost_timer.seconds);
  }
  const double gflops = (k + 0.0) * flop_per_matmul / cost_call / 1e9;  // projections ignored
  const double dit_call = dit_s_flop / (gflops * 1e9);

  std::printf(
      "threads %d, batch [4, 4, 32, 32] float32 CPU, %lld steps x %lld runs (min), discrete "
      "schedule, "
      "default spacing, check_finite %s, %s, kernels %s\n",
      args.threads, static_cast<long long>(args.steps), static_cast<long long>(args.runs),
      args.check_finite ? "on" : "off",
      args.caching_allocator ? "caching CPU allocator" : "LibTorch's CPU allocator",
      diffuse::detail::fused::kernel_isa_name(diffuse::detail::fused::kernel_isa()));
  std::printf(
      "cost model: %lld matmuls [%lld, %d] x [%d, %d] = %.2f GFLOP/call, %.1f ms/call (%.1f "
      "GFLOP/s); "
      "full DiT-S/2 (%.1f GFLOP for this batch) would take %.0f ms/call\n\n",
      static_cast<long long>(k), static_cast<long long>(batch * tokens), static_cast<int>(hidden),
      static_cast<int>(hidden), static_cast<int>(hidden), k * flop_per_matmul / 1e9,
      cost_call * 1e3, gflops, dit_s_flop / 1e9, dit_call * 1e3);
  std::printf(
      "| sampler | NFE/step | overhead us/step (trivial net) | trivial net us/step | cost-model "
      "run: net ms/step |"
      " cost-model run: overhead / net | overhead / cost-model net | overhead / full DiT-S/2 net "
      "|\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const auto& name : names) {
    std::unique_ptr<diffuse::Sampler> sampler;
    try {
      sampler = registry.make(name);
      timed_sample(*sampler, *schedule, trivial_timer, trivial, noise, 2, 0,
                   args.check_finite);  // warm-up
    } catch (const std::exception& e) {
      std::printf("| %s | failed: %s |\n", name.c_str(), e.what());
      continue;
    }
    double best_over = 1e30, best_net = 0;
    int64_t calls = 0;
    for (int64_t r = 0; r < args.runs; ++r) {
      const RunTime m = timed_sample(*sampler, *schedule, trivial_timer, trivial, noise, args.steps,
                                     r, args.check_finite);
      const double over = (m.total - m.network) / args.steps;
      if (over < best_over) {
        best_over = over;
        best_net = m.network / args.steps;
      }
      calls = m.calls;
    }
    const RunTime c = timed_sample(*sampler, *schedule, cost_timer, cost, noise, args.cost_steps, 0,
                                   args.check_finite);
    const double cost_net_step = c.network / args.cost_steps;
    const double cost_over_pct = 100.0 * (c.total - c.network) / c.network;
    const double nfe_step = static_cast<double>(calls) / args.steps;
    std::printf("| %s | %.2f | %.1f | %.1f | %.1f | %.2f%% | %.3f%% | %.4f%% |\n", name.c_str(),
                nfe_step, best_over * 1e6, best_net * 1e6, cost_net_step * 1e3, cost_over_pct,
                100.0 * best_over / (cost_call * nfe_step),
                100.0 * best_over / (dit_call * nfe_step));
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "sampler_overhead: %s\n", e.what());
  return 1;
}
