// SPDX-License-Identifier: Apache-2.0
// Timing pieces shared by the benchmark programs (bench/*.cpp) and `diffuse bench`
// (bench/suites.h): a network timed from the inside, the trivial network, one timed sample() run.
// Header-only like the library; needs only the core library.
#pragma once

#include <diffuse/all.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace diffuse::bench {

using Clock = std::chrono::steady_clock;

/// CPU seconds used so far by this process (all its threads; std::clock). With one intra-op
/// thread this is the compute time of the work, unaffected by other processes on a shared machine
/// (wall time is not: it also counts the time the process waits for a core).
inline double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

/// The non-empty items of `s` separated by `sep` (the benchmark programs' list options).
inline std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

/// Seconds elapsed since t0.
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Parses "--key value" pairs: each key's handler gets its value; an unknown key or a key without
/// a value is an error naming it.
inline void parse_key_values(
    int argc, char** argv,
    const std::map<std::string, std::function<void(const std::string&)>>& handlers) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    check(i + 1 < argc, "option ", k, " needs a value");
    const auto it = handlers.find(k);
    check(it != handlers.end(), "unknown option '", k, "'");
    it->second(argv[++i]);
  }
}

/// The median of a non-empty list (the mean of the middle two for an even count).
inline double median_of(std::vector<double> v) {
  check(!v.empty(), "median of an empty list");
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

/// A network that records how long its calls take (total seconds and number of calls).
struct TimedNetwork {
  std::shared_ptr<double> seconds = std::make_shared<double>(0.0);
  std::shared_ptr<int64_t> calls = std::make_shared<int64_t>(0);
  /// `inner` wrapped so that each call adds its wall time to `seconds`.
  Network wrap(Network inner) const {
    auto s = seconds;
    auto c = calls;
    return [inner, s, c](const Tensor& x, const Tensor& t, const Conditioning& cond) {
      const auto t0 = Clock::now();
      Tensor out = inner(x, t, cond);
      *s += seconds_since(t0);
      ++*c;
      return out;
    };
  }
  void reset() const {
    *seconds = 0;
    *calls = 0;
  }
};

/// eps = x * 0.1: one elementwise op, so that a run's time is almost all the library's own.
inline Network trivial_network() {
  return [](const Tensor& x, const Tensor&, const Conditioning&) { return x * 0.1; };
}

/// The DiT-S/2-sized cost model of the sampler benchmarks (bench/sampler_overhead.cpp,
/// scripts/bench_vs_diffusers.py runs the same op sequence in Python): a [B, 4, 32, 32] latent cut
/// into 2x2 patches ([B*256, 16] tokens), projected to width 384 by `w_in` [16, 384], `k` matmuls
/// with `w` [384, 384], projected back by `w_out` [384, 16], reassembled and scaled by 0.01 (so the
/// "eps" stays small). A full DiT-S/2 forward is about 6.06 GFLOP per image (Peebles & Xie 2023,
/// Table 1), 80 such matmuls for a batch of 4; the time t is ignored.
inline Network dit_s_cost_network(Tensor w_in, Tensor w, Tensor w_out, int64_t k) {
  return [w_in, w, w_out, k](const Tensor& x, const Tensor&, const Conditioning&) {
    const int64_t b = x.size(0);
    Tensor h = x.reshape({b, 4, 16, 2, 16, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({b * 256, 16});
    h = at::matmul(h, w_in);
    for (int64_t i = 0; i < k; ++i) h = at::matmul(h, w);
    h = at::matmul(h, w_out);
    return h.reshape({b, 16, 16, 4, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape(x.sizes()) * 0.01;
  };
}

/// One timed diffuse::sample() run: total wall time and the time inside the network.
struct RunTime {
  double total = 0, network = 0;  ///< seconds
  double cpu = 0;                 ///< CPU seconds of the process during the run (cpu_seconds())
  int64_t calls = 0;              ///< network calls
};

/// Runs sample() once with options `o` (spacing, steps, seed, check_finite, ...); `timer` must be
/// the TimedNetwork wrapped into `denoiser`'s network. The sample goes to *result when not null.
inline RunTime timed_sample(const Sampler& sampler, const NoiseSchedule& schedule,
                            const TimedNetwork& timer, const Denoiser& denoiser,
                            const Tensor& noise, const SampleOptions& o, Tensor* result = nullptr) {
  timer.reset();
  const double c0 = cpu_seconds();
  const auto t0 = Clock::now();
  Tensor x = diffuse::sample(sampler, denoiser, schedule, noise, o);
  RunTime m;
  m.total = seconds_since(t0);
  m.cpu = cpu_seconds() - c0;
  m.network = *timer.seconds;
  m.calls = *timer.calls;
  if (result != nullptr) *result = std::move(x);
  return m;
}

/// Runs sample() once with `steps` steps and `seed`; `timer` must be the TimedNetwork wrapped
/// into `denoiser`'s network.
inline RunTime timed_sample(const Sampler& sampler, const NoiseSchedule& schedule,
                            const TimedNetwork& timer, const Denoiser& denoiser,
                            const Tensor& noise, int64_t steps, uint64_t seed,
                            bool check_finite = true,
                            std::vector<std::shared_ptr<Correction>> corrections = {}) {
  SampleOptions o;
  o.check_finite = check_finite;
  o.num_steps = steps;
  o.seed = seed;
  o.corrections = std::move(corrections);
  return timed_sample(sampler, schedule, timer, denoiser, noise, o);
}

/// Minimum wall time of `runs` calls of f.
template <class F>
double min_time(int64_t runs, F&& f) {
  double best = 1e30;
  for (int64_t r = 0; r < runs; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

namespace detail {

/// Repeats f until at least min_time seconds have passed (at least `at_least` times, at most
/// `at_most`); returns the number of repetitions.
template <class F>
int64_t repeat_for(double min_time, int64_t at_least, int64_t at_most, F&& f) {
  const auto t0 = Clock::now();
  int64_t n = 0;
  while (n < at_least || (n < at_most && seconds_since(t0) < min_time)) {
    f();
    ++n;
  }
  return n;
}

}  // namespace detail

/// The corrections compared by bench/corrections.cpp and `diffuse bench --suite corrections`, each
/// with the published or testbed-appropriate setting; those not registered in this build are left
/// out.
inline std::vector<std::string> default_bench_corrections() {
  std::vector<std::string> out;
  for (const char* spec : {"epsilon_scaling:b=1.03", "time_shift:window=30,cutoff=300"}) {
    const std::string s = spec;
    if (Registry<Correction>::get().contains(s.substr(0, s.find(':')))) out.push_back(s);
  }
  return out;
}

}  // namespace diffuse::bench
