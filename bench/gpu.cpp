// SPDX-License-Identifier: Apache-2.0
// GPU benchmark (DIFFUSE_CUDA builds; run by scripts/gpu-check): on cuda:0,
//   1. per-step sampler overhead: a sampling loop with a trivial network minus the network calls
//      alone, [4, 4, 32, 32] float32, 50 steps;
//   2. CUDA graph vs eager: the same loop (trivial network and DiT-S/2 on [8, 4, 32, 32] with
//      classifier-free guidance) eager and as a CudaGraphSampler replay;
//   3. a DiT-S/2 training step ([32, 4, 32, 32]) with autocast off / bf16 / fp16.
// Times are medians of repeated runs with device synchronisation; ratios come from one run.
// Usage: diffuse_bench_gpu [output_dir]  (writes output_dir/gpu_bench.md and prints it).
#include <diffuse/cuda_graph.h>
#include <diffuse/diffuse.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/trainer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <torch/cuda.h>
#include <torch/utils.h>

namespace {

using diffuse::Tensor;
const at::Device kCuda(at::kCUDA, 0);

/// Median wall time in seconds of f() over `reps` runs (after one warm-up), synchronised.
double median_time(int reps, const std::function<void()>& f) {
  f();
  torch::cuda::synchronize();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    torch::cuda::synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::string fmt(double v, int digits = 1) {
  char b[64];
  std::snprintf(b, sizeof(b), "%.*f", digits, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::cerr << "diffuse_bench_gpu: no CUDA device visible\n";
    return 2;
  }
  const std::string out_dir = argc > 1 ? argv[1] : ".";
  std::ostringstream md;
  torch::NoGradGuard no_grad;
  std::shared_ptr<const diffuse::NoiseSchedule> schedule = diffuse::make_schedule("discrete");

  // 1 + 2a: trivial network.
  const int64_t steps = 50;
  diffuse::Denoiser trivial(
      [](const Tensor& x, const Tensor&, const diffuse::Conditioning&) { return x * 0.5; });
  const Tensor noise = diffuse::randn({4, 4, 32, 32}, 0, at::TensorOptions().device(kCuda));
  diffuse::SampleOptions so;
  so.num_steps = steps;
  so.check_finite = false;
  // The network alone, once per step (every sampler below makes one call per step).
  const double net_only = median_time(20, [&] {
    for (int64_t i = 0; i < steps; ++i) (void)(noise * 0.5);
  });
  md << "## Sampler overhead on CUDA (trivial network, [4, 4, 32, 32] float32, " << steps
     << " steps)\n\n"
     << "| sampler | eager us/step | overhead us/step | CUDA graph us/step | eager / graph |\n"
     << "|---|---|---|---|---|\n";
  for (const std::string name : {"ddim", "dpmpp_2m", "euler"}) {
    auto sampler = diffuse::sampler_from_spec(name);
    const double eager =
        median_time(20, [&] { (void)diffuse::sample(*sampler, trivial, *schedule, noise, so); });
    diffuse::CudaGraphSampler g(*sampler, trivial, *schedule, noise, so);
    auto src = diffuse::make_per_sample_noise(0);
    const double graph = median_time(20, [&] { g.replay(noise, *src); });
    md << "| " << name << " | " << fmt(eager / steps * 1e6) << " | "
       << fmt((eager - net_only) / steps * 1e6) << " | " << fmt(graph / steps * 1e6) << " | "
       << fmt(eager / graph, 2) << " |\n";
  }

  // 2b: DiT-S/2 with guidance.
  {
    torch::manual_seed(0);
    diffuse::DiTOptions o = diffuse::dit_preset("S/2", 32, 4);
    o.num_classes(10);
    diffuse::DiT model(o);
    model->to(kCuda);
    model->eval();
    diffuse::Denoiser d(diffuse::as_network(model));
    auto sampler = diffuse::sampler_from_spec("dpmpp_2m");
    diffuse::SampleOptions gs;
    gs.num_steps = 20;
    gs.check_finite = false;
    gs.guidance = diffuse::make_guidance("cfg", {{"scale", "4"}});
    gs.cond.value = at::arange(8, at::TensorOptions(at::kLong).device(kCuda));
    gs.uncond.value = at::full({8}, 10, at::TensorOptions(at::kLong).device(kCuda));
    const Tensor x = diffuse::randn({8, 4, 32, 32}, 0, at::TensorOptions().device(kCuda));
    const double eager =
        median_time(5, [&] { (void)diffuse::sample(*sampler, d, *schedule, x, gs); });
    diffuse::CudaGraphSampler g(*sampler, d, *schedule, x, gs);
    auto src = diffuse::make_per_sample_noise(0);
    const double graph = median_time(5, [&] { g.replay(x, *src); });
    md << "\n## CUDA graph vs eager, DiT-S/2 [8, 4, 32, 32], cfg 4, dpmpp_2m 20 steps\n\n"
       << "| eager ms | CUDA graph ms | eager / graph |\n|---|---|---|\n"
       << "| " << fmt(eager * 1e3, 2) << " | " << fmt(graph * 1e3, 2) << " | "
       << fmt(eager / graph, 2) << " |\n";
  }

  // 3: training step with autocast.
  {
    md << "\n## DiT-S/2 training step [32, 4, 32, 32] on CUDA\n\n"
       << "| autocast | ms/step | images/s | vs off |\n|---|---|---|---|\n";
    at::Generator gen = at::detail::createCPUGenerator(1);
    diffuse::Dataset data;
    data.name = "bench";
    data.data = at::randn({256, 4, 32, 32}, gen);
    data.labels = at::randint(0, 10, {256}, gen, at::kLong);
    data.num_classes = 10;
    double off = 0;
    for (const std::string ac : {"off", "bf16", "fp16"}) {
      torch::manual_seed(0);
      diffuse::DiTOptions o = diffuse::dit_preset("S/2", 32, 4);
      o.num_classes(10);
      diffuse::DiT model(o);
      model->to(kCuda);
      diffuse::TrainerOptions to;
      to.steps(1000000).batch_size(32).threads(-1).checkpoint_every(0).log_every(1000000).autocast(
          diffuse::parse_autocast(ac));
      diffuse::Trainer<diffuse::DiT> t(model, diffuse::objective_from_spec("denoising"), schedule,
                                       data, to);
      torch::AutoGradMode grad(true);
      for (int i = 0; i < 3; ++i) (void)t.train_step();
      const double s = median_time(10, [&] { (void)t.train_step(); });
      if (ac == "off") off = s;
      md << "| " << ac << " | " << fmt(s * 1e3, 2) << " | " << fmt(32.0 / s, 0) << " | "
         << fmt(off / s, 2) << "x |\n";
    }
  }

  std::cout << md.str();
  std::filesystem::create_directories(out_dir);
  std::ofstream(std::filesystem::path(out_dir) / "gpu_bench.md") << md.str();
  return 0;
}
