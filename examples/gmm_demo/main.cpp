// SPDX-License-Identifier: Apache-2.0
// diffuse_demo: every registered sampler on a problem whose answer is known exactly.
//
// The data is a built-in 2-D Gaussian mixture (diffuse::GaussianMixture), whose exact denoiser
// E[x0 | x_t] stands in for a trained network. Every sampler in the registry (keys and aliases, so
// a new sampler file shows up here with no edit) draws the same initial noise at a few step counts.
// The table reports
//   - for deterministic samplers, the RMSE against the exact probability-flow ODE solution from the
//     same starting points (the error of the solver alone: the network is exact);
//   - for all samplers, distances between the samples and the true mixture: a sliced 2-Wasserstein
//     distance against a fresh draw of the same size (its noise floor is printed in the header),
//     the error of the mean and the Frobenius error of the covariance.
//
//   diffuse_demo [--steps 10,20,50] [--samples 4000] [--seed 0] [--preset mixture_2d]
//                [--spacing karras] [--schedule vp]
#include <diffuse/all.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using diffuse::Tensor;

struct Args {
  std::vector<int64_t> steps{10, 20, 50};
  int64_t samples = 4000;
  uint64_t seed = 0;
  std::string preset = "mixture_2d";
  std::string spacing = "karras";
  std::string schedule = "vp";
  int64_t threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
};

void usage() {
  std::cout
      << "usage: diffuse_demo [--steps 10,20,50] [--samples 4000] [--seed 0] [--preset "
         "mixture_2d|mixture_16d]\n"
         "                    [--spacing karras|exponential|linspace|...] [--schedule "
         "vp|discrete|...] [--threads N]\n"
         "Samples a Gaussian mixture with its exact denoiser using every registered sampler and\n"
         "prints the error against the exact ODE solution and the distance to the true mixture.\n";
}

int64_t to_int(const std::string& option, const std::string& v) {
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  diffuse::check(used == v.size() && !v.empty(), option, ": '", v, "' is not an integer");
  return n;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      usage();
      std::exit(0);
    }
    static const char* const kKnown[] = {"--steps",   "--samples",  "--seed",   "--preset",
                                         "--spacing", "--schedule", "--threads"};
    diffuse::check(std::find(std::begin(kKnown), std::end(kKnown), k) != std::end(kKnown),
                   "unknown option '", k, "' (see --help)");
    diffuse::check(i + 1 < argc, "option ", k, " needs a value (see --help)");
    const std::string v = argv[++i];
    if (k == "--steps") {
      a.steps.clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) {
        const int64_t n = to_int(k, item);
        diffuse::check(n >= 1, "--steps: every step count must be >= 1, got ", n);
        a.steps.push_back(n);
      }
      diffuse::check(!a.steps.empty(), "--steps needs at least one number");
    } else if (k == "--samples") {
      a.samples = to_int(k, v);
      diffuse::check(a.samples >= 2, "--samples must be >= 2, got ", a.samples);
    } else if (k == "--seed") {
      const int64_t seed = to_int(k, v);
      diffuse::check(seed >= 0, "--seed must be >= 0, got ", seed);
      a.seed = static_cast<uint64_t>(seed);
    } else if (k == "--preset") {
      a.preset = v;
    } else if (k == "--spacing") {
      a.spacing = v;
    } else if (k == "--schedule") {
      a.schedule = v;
    } else if (k == "--threads") {
      a.threads = to_int(k, v);
      diffuse::check(a.threads >= 1, "--threads must be >= 1, got ", a.threads);
    } else {
      throw diffuse::Error("unknown option '" + k + "' (see --help)");
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  at::set_num_threads(static_cast<int>(args.threads));  // LibTorch starts at 1 intra-op thread here
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const auto started = std::chrono::steady_clock::now();

  // The problem: the data distribution, its exact denoiser as an epsilon network, a schedule.
  const auto gmm = diffuse::GaussianMixture::preset(args.preset);
  std::shared_ptr<const diffuse::NoiseSchedule> schedule = diffuse::make_schedule(args.schedule);
  // Counts its calls: the NFE column of an adaptive sampler (dopri5) is the run's own count.
  auto calls = std::make_shared<int64_t>(0);
  const diffuse::Denoiser denoiser(
      [calls, net = gmm.network(schedule, diffuse::Parameterization::kEpsilon)](
          const Tensor& x, const Tensor& t, const diffuse::Conditioning& c) {
        ++*calls;
        return net(x, t, c);
      });
  const std::shared_ptr<const diffuse::TimestepSpacing> spacing =
      diffuse::make_spacing(args.spacing);

  // The same initial noise for every sampler, and an independent draw of the data as reference.
  const int64_t n = args.samples, dim = gmm.dim();
  const Tensor noise = diffuse::randn({n, dim}, args.seed, f64);
  const Tensor truth = gmm.sample(n, args.seed + 1000).x0;
  const double floor =
      diffuse::sliced_wasserstein(truth, gmm.sample(n, args.seed + 2000).x0, args.seed + 3);

  std::printf(
      "diffuse_demo: %s (D=%lld, K=%lld), %lld samples, schedule %s, spacing %s, seed %llu\n",
      args.preset.c_str(), static_cast<long long>(dim),
      static_cast<long long>(gmm.num_components()), static_cast<long long>(n),
      args.schedule.c_str(), args.spacing.c_str(), static_cast<unsigned long long>(args.seed));
  std::printf(
      "SW2 = sliced 2-Wasserstein distance to a fresh draw of the mixture; two fresh draws give "
      "%.4f.\n",
      floor);
  std::printf(
      "ODE RMSE = error against the exact probability-flow ODE solution (deterministic samplers,\n"
      "first %lld samples).\n\n",
      static_cast<long long>(std::min<int64_t>(n, 500)));
  std::printf("%-36s %5s %5s %12s %9s %9s %9s %8s\n", "sampler", "steps", "NFE", "ODE RMSE", "SW2",
              "mean err", "cov err", "ms");

  // The exact probability-flow ODE solution from the same start (sample() scales the noise to the
  // first grid point), for the first `ode_points` samples; solved once per pair of grid ends.
  const int64_t ode_points = std::min<int64_t>(n, 500);
  std::vector<std::pair<std::pair<diffuse::TimePoint, diffuse::TimePoint>, Tensor>> exact_cache;
  auto exact_ode = [&](const diffuse::TimePoint& first,
                       const diffuse::TimePoint& last) -> const Tensor& {
    for (const auto& e : exact_cache)
      if (e.first.first == first && e.first.second == last) return e.second;
    const Tensor start = noise.narrow(0, 0, ode_points) * std::hypot(first.alpha, first.sigma);
    exact_cache.push_back(
        {{first, last},
         gmm.solve_ode(start, first, last, {}, diffuse::GmmOdeOptions().rtol(1e-10).atol(1e-10))});
    return exact_cache.back().second;
  };

  const auto& registry = diffuse::Registry<diffuse::Sampler>::get();
  for (const std::string& name : diffuse::distinct_sampler_names()) {
    std::unique_ptr<diffuse::Sampler> sampler;
    try {
      sampler = registry.make(name);
    } catch (const std::exception& e) {
      std::printf("%-36s needs options: %s\n", name.c_str(), e.what());
      continue;
    }
    // Aliases with preset options (dpmpp_2m = dpm_solver_pp:order=2) are samplers of their own.
    const std::string key = registry.resolve(name, {}).first;
    const std::string label = key == name ? name : name + " (" + key + ")";
    for (int64_t steps : args.steps) {
      diffuse::SampleOptions o;
      o.num_steps = steps;
      o.spacing = spacing;
      o.noise = diffuse::make_torch_noise(args.seed + 17);  // one fast stream for the whole batch
      o.check_finite = false;
      const auto t0 = std::chrono::steady_clock::now();
      *calls = 0;
      Tensor x;
      try {
        x = diffuse::sample(*sampler, denoiser, *schedule, noise, o);
      } catch (const std::exception& e) {
        std::printf("%-36s %5lld  failed: %s\n", label.c_str(), static_cast<long long>(steps),
                    e.what());
        continue;
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      char rmse[32] = "-";
      const diffuse::TimeGrid grid = diffuse::make_grid(*schedule, o);
      if (!sampler->is_stochastic()) {
        const Tensor& exact = exact_ode(grid.front(), grid.back());
        const Tensor err = x.narrow(0, 0, exact.size(0)) - exact;
        std::snprintf(rmse, sizeof rmse, "%.3e", err.pow(2).mean().sqrt().item<double>());
      }
      const double sw = diffuse::sliced_wasserstein(x, truth, args.seed + 3);
      const double mean_err = diffuse::mean_error(x, gmm.mean());
      const double cov_err = diffuse::covariance_error(x, gmm.covariance());
      std::printf("%-36s %5lld %5lld %12s %9.4f %9.4f %9.4f %8.1f\n", label.c_str(),
                  static_cast<long long>(steps), static_cast<long long>(*calls), rmse, sw, mean_err,
                  cov_err, ms);
    }
  }
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("\ntotal %.2f s\n", total);
  return 0;
} catch (const std::exception& e) {
  std::cerr << "diffuse_demo: " << e.what() << "\n";
  return 1;
}
