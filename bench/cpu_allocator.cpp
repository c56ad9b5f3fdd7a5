// SPDX-License-Identifier: Apache-2.0
// LibTorch's malloc against diffuse's caching CPU allocator (<diffuse/cpu_allocator.h>), side by
// side in one process: per-step time of diffuse::sample() with the trivial network (eps = 0.1 x,
// so the run is the library's own cost plus one elementwise op) for each sampler and shape, in
// blocks that alternate the two allocators (the order swapped every round), default malloc
// settings, no environment tuning. Reports the median and the minimum over the rounds, and the
// ratio of medians (caching / malloc). Also checks that both give the same samples.
//
//   diffuse_bench_cpu_allocator [--threads 1] [--steps 50] [--rounds 9]
//       [--samplers ddim,dpmpp_2m,dpmpp_3m,euler,euler_a,ddpm]
//       [--shapes 4x4x32x32,1x4x128x128,16x4x64x64]
#include <diffuse/all.h>

#include "timing.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using diffuse::Tensor;

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> out;
  for (const std::string& part : diffuse::bench::split_list(s, 'x'))
    out.push_back(std::stoll(part));
  diffuse::check(out.size() >= 2, "a shape is BxCxHxW, got '", s, "'");
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  int threads = 1;
  int64_t steps = 50, rounds = 9;
  std::string samplers = "ddim,dpmpp_2m,dpmpp_3m,euler,euler_a,ddpm";
  std::string shapes = "4x4x32x32,1x4x128x128,16x4x64x64";
  diffuse::bench::parse_key_values(
      argc, argv,
      {{"--threads", [&](const std::string& v) { threads = std::stoi(v); }},
       {"--steps", [&](const std::string& v) { steps = std::stoll(v); }},
       {"--rounds", [&](const std::string& v) { rounds = std::stoll(v); }},
       {"--samplers", [&](const std::string& v) { samplers = v; }},
       {"--shapes", [&](const std::string& v) { shapes = v; }}});
  diffuse::check(threads >= 1 && steps >= 1 && rounds >= 1,
                 "--threads, --steps and --rounds must be >= 1");
  at::set_num_threads(threads);
  auto schedule = diffuse::make_schedule("discrete");
  diffuse::bench::TimedNetwork timer;
  const diffuse::Denoiser denoiser(timer.wrap(diffuse::bench::trivial_network()));
  std::printf("threads %d, %lld steps, %lld rounds (median / min of the rounds, us per step)\n",
              threads, static_cast<long long>(steps), static_cast<long long>(rounds));
  std::printf("%-10s %-14s %10s %10s %10s %10s %8s\n", "sampler", "shape", "malloc med",
              "malloc min", "cache med", "cache min", "ratio");
  for (const std::string& shape_text : diffuse::bench::split_list(shapes, ',')) {
    const std::vector<int64_t> shape = parse_shape(shape_text);
    const Tensor noise = diffuse::randn(shape, 1, at::kFloat);
    for (const std::string& name : diffuse::bench::split_list(samplers, ',')) {
      const auto sampler = diffuse::make_sampler(name);
      diffuse::SampleOptions o;
      o.num_steps = steps;
      o.seed = 3;
      std::vector<double> plain, cached;
      Tensor a, b;
      auto run = [&](bool cache, std::vector<double>& into, Tensor* out) {
        if (cache) diffuse::enable_caching_cpu_allocator();
        const auto r =
            diffuse::bench::timed_sample(*sampler, *schedule, timer, denoiser, noise, o, out);
        if (cache) diffuse::disable_caching_cpu_allocator();
        into.push_back(r.total / static_cast<double>(steps) * 1e6);
      };
      std::vector<double> warm;
      run(false, warm, nullptr);
      run(true, warm, nullptr);
      for (int64_t r = 0; r < rounds; ++r) {
        const bool cache_first = r % 2 == 1;
        run(cache_first, cache_first ? cached : plain, cache_first ? &b : &a);
        run(!cache_first, cache_first ? plain : cached, cache_first ? &a : &b);
      }
      diffuse::check(at::equal(a, b), name, " ", shape_text, ": the samples differ");
      const double pm = diffuse::bench::median_of(plain), cm = diffuse::bench::median_of(cached);
      std::printf("%-10s %-14s %10.1f %10.1f %10.1f %10.1f %8.3f\n", name.c_str(),
                  shape_text.c_str(), pm, *std::min_element(plain.begin(), plain.end()), cm,
                  *std::min_element(cached.begin(), cached.end()), cm / pm);
      std::fflush(stdout);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "diffuse_bench_cpu_allocator: %s\n", e.what());
  return 1;
}
