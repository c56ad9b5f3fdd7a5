// SPDX-License-Identifier: Apache-2.0
// The noise sources of <diffuse/noise.h>: ns per normal of one draw, and the per-step time of the
// stochastic samplers with each (trivial network, 50 steps), blocks alternating between the
// sources, median of the rounds. One thread by default.
//
//   diffuse_bench_noise [--threads 1] [--rounds 9] [--shapes 4x4x32x32,16x4x64x64]
//       [--samplers euler_a,ddpm,dpmpp_2m_sde,dpmpp_sde]
#include <diffuse/all.h>

#include "timing.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace {

using diffuse::Tensor;

struct Source {
  const char* name;
  std::function<std::shared_ptr<diffuse::NoiseSource>(uint64_t)> make;
};

}  // namespace

int main(int argc, char** argv) try {
  int threads = 1;
  int64_t rounds = 9;
  std::string shapes = "4x4x32x32,16x4x64x64", samplers = "euler_a,ddpm,dpmpp_2m_sde,dpmpp_sde";
  diffuse::bench::parse_key_values(
      argc, argv,
      {{"--threads", [&](const std::string& v) { threads = std::stoi(v); }},
       {"--rounds", [&](const std::string& v) { rounds = std::stoll(v); }},
       {"--shapes", [&](const std::string& v) { shapes = v; }},
       {"--samplers", [&](const std::string& v) { samplers = v; }}});
  diffuse::check(threads >= 1 && rounds >= 1, "--threads and --rounds must be >= 1");
  at::set_num_threads(threads);
  const std::vector<Source> sources = {
      {"per_sample", [](uint64_t s) { return std::shared_ptr(diffuse::make_per_sample_noise(s)); }},
      {"torch", [](uint64_t s) { return std::shared_ptr(diffuse::make_torch_noise(s)); }},
      {"philox", [](uint64_t s) { return std::shared_ptr(diffuse::make_philox_noise(s)); }}};
  auto schedule = diffuse::make_schedule("discrete");
  diffuse::bench::TimedNetwork timer;
  const diffuse::Denoiser denoiser(timer.wrap(diffuse::bench::trivial_network()));
  std::printf("threads %d, %lld rounds, medians\n", threads, static_cast<long long>(rounds));
  for (const std::string& shape_text : diffuse::bench::split_list(shapes, ',')) {
    std::vector<int64_t> shape;
    for (const std::string& d : diffuse::bench::split_list(shape_text, 'x'))
      shape.push_back(std::stoll(d));
    const Tensor noise = diffuse::randn(shape, 1, at::kFloat);
    // ns per normal of one draw of the whole shape.
    std::vector<std::vector<double>> per(sources.size());
    for (int64_t r = 0; r < rounds; ++r) {
      for (size_t j = 0; j < sources.size(); ++j) {
        const size_t s = (j + static_cast<size_t>(r)) % sources.size();
        auto src = sources[s].make(7);
        const int64_t reps = 20;
        const auto t0 = diffuse::bench::Clock::now();
        for (int64_t k = 0; k < reps; ++k) (void)src->randn(shape, at::kFloat);
        per[s].push_back(diffuse::bench::seconds_since(t0) / static_cast<double>(reps) /
                         static_cast<double>(noise.numel()) * 1e9);
      }
    }
    std::printf("%s draw, ns per normal:", shape_text.c_str());
    for (size_t s = 0; s < sources.size(); ++s)
      std::printf("  %s %.2f", sources[s].name, diffuse::bench::median_of(per[s]));
    std::printf("\n");
    for (const std::string& name : diffuse::bench::split_list(samplers, ',')) {
      const auto sampler = diffuse::make_sampler(name);
      std::vector<std::vector<double>> step(sources.size());
      for (int64_t r = 0; r < rounds; ++r) {
        for (size_t j = 0; j < sources.size(); ++j) {
          const size_t s = (j + static_cast<size_t>(r)) % sources.size();
          diffuse::SampleOptions o;
          o.num_steps = 50;
          o.noise = sources[s].make(3);
          const auto t =
              diffuse::bench::timed_sample(*sampler, *schedule, timer, denoiser, noise, o);
          step[s].push_back(t.total / 50.0 * 1e6);
        }
      }
      std::printf("  %-14s us/step:", name.c_str());
      for (size_t s = 0; s < sources.size(); ++s)
        std::printf("  %s %.1f", sources[s].name, diffuse::bench::median_of(step[s]));
      std::printf("  (philox / per_sample %.3f)\n",
                  diffuse::bench::median_of(step[2]) / diffuse::bench::median_of(step[0]));
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "diffuse_bench_noise: %s\n", e.what());
  return 1;
}
