// SPDX-License-Identifier: Apache-2.0
// What each correction costs and what it buys.
//
// Part 1, overhead: diffuse::sample() on a [4, 4, 32, 32] float32 CPU batch with a trivial
// epsilon network (x * 0.1), `discrete` schedule, 50 steps, minimum of --runs runs; for each
// sampler, the plain run and the run with each correction. Reported: the time the correction adds
// per step (µs) and that as a percentage of the plain run's per-step time (sampler + trivial net)
// and of a DiT-S/2-sized network call (6.06 GFLOP per image, Peebles & Xie 2023, at the measured
// matmul throughput of this machine).
// Part 2, error vs NFE on the Gaussian-mixture testbed: the 2-D mixture with an imperfect
// epsilon network (exact eps * (1 + delta) + bias * tanh(x), an exposure-bias stand-in), each
// sampler with and without each correction, at several step counts; the sliced 2-Wasserstein
// distance of 4000 samples to a fresh draw of the true mixture. Written as a table and a CSV;
// with gnuplot installed also as a PNG (--plot docs/corrections_error_vs_nfe.png).
//
//   diffuse_bench_corrections [--threads N] [--runs 5] [--corrections "spec;spec"]
//                             [--samplers a,b] [--csv path] [--plot path.png] [--delta 0.03]
//                             [--bias 0.02]
#include <diffuse/all.h>

#include "timing.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using diffuse::Tensor;
using diffuse::bench::min_time;

struct Args {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int64_t runs = 5;
  std::vector<std::string> corrections;
  std::vector<std::string> samplers{"ddim", "dpmpp_2m", "euler", "heun"};
  std::vector<int64_t> steps{5, 10, 20, 40};
  std::string csv, plot;
  double delta = 0.03, bias = 0.02;
};

Args parse(int argc, char** argv) {
  Args a;
  a.corrections = diffuse::bench::default_bench_corrections();
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::printf(
          "usage: %s [--threads N] [--runs 5] [--corrections \"spec;spec\"] [--samplers a,b] "
          "[--steps 5,10,20,40]\n"
          "          [--csv path] [--plot path.png] [--delta 0.03] [--bias 0.02]\n",
          argv[0]);
      std::exit(0);
    }
    diffuse::check(i + 1 < argc, "option ", k, " needs a value (see --help)");
    const std::string v = argv[++i];
    if (k == "--threads") {
      a.threads = std::stoi(v);
    } else if (k == "--runs") {
      a.runs = std::stoll(v);
    } else if (k == "--corrections") {
      a.corrections = diffuse::bench::split_list(v, ';');
    } else if (k == "--samplers") {
      a.samplers = diffuse::bench::split_list(v, ',');
    } else if (k == "--steps") {
      a.steps.clear();
      for (const auto& s : diffuse::bench::split_list(v, ',')) a.steps.push_back(std::stoll(s));
    } else if (k == "--csv") {
      a.csv = v;
    } else if (k == "--plot") {
      a.plot = v;
    } else if (k == "--delta") {
      a.delta = std::stod(v);
    } else if (k == "--bias") {
      a.bias = std::stod(v);
    } else {
      throw diffuse::Error("unknown option '" + k + "' (see --help)");
    }
  }
  diffuse::check(a.threads >= 1 && a.runs >= 1, "--threads and --runs must be >= 1");
  return a;
}

/// A spec as one CSV field (options are separated by ',' inside a spec).
std::string csv_name(const std::string& spec) {
  std::string out = spec.empty() ? "none" : spec;
  std::replace(out.begin(), out.end(), ',', ' ');
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  at::set_num_threads(args.threads);
  std::printf("threads %d; corrections:", args.threads);
  for (const auto& c : args.corrections) std::printf(" %s", c.c_str());
  std::printf("\n\n");

  // ---- Part 1: overhead ----
  {
    const int64_t steps = 50;
    auto schedule = diffuse::make_schedule("discrete");
    const diffuse::Denoiser denoiser(
        [](const Tensor& x, const Tensor&, const diffuse::Conditioning&) { return x * 0.1; });
    const Tensor noise = diffuse::randn({4, 4, 32, 32}, 0);
    // DiT-S/2 network time at this machine's matmul throughput.
    const Tensor m = at::randn({1024, 384}), w = at::randn({384, 384});
    const double t_mm = min_time(5, [&] { at::matmul(m, w); });
    const double dit_call = 6.06e9 * 4 / (2.0 * 1024 * 384 * 384 / t_mm);
    std::printf(
        "## Overhead per step ([4,4,32,32] float32, %lld steps, trivial network; DiT-S/2 call ~ "
        "%.0f ms here)\n\n",
        static_cast<long long>(steps), dit_call * 1e3);
    std::printf(
        "| sampler | correction | plain µs/step | added µs/step | added / plain step | added / "
        "DiT-S/2 call |\n");
    std::printf("|---|---|---|---|---|---|\n");
    for (const auto& key : args.samplers) {
      auto sampler = diffuse::make_sampler(key);
      auto run = [&](const std::string& spec) {
        diffuse::SampleOptions o;
        o.num_steps = steps;
        o.seed = 1;
        if (!spec.empty()) o.corrections = {diffuse::correction_from_spec(spec)};
        return min_time(args.runs,
                        [&] { diffuse::sample(*sampler, denoiser, *schedule, noise, o); }) /
               steps;
      };
      const double plain = run("");
      for (const auto& spec : args.corrections) {
        const double with = run(spec);
        std::printf("| %s | `%s` | %.1f | %.1f | %+.1f%% | %+.3f%% |\n", key.c_str(), spec.c_str(),
                    plain * 1e6, (with - plain) * 1e6, 100.0 * (with - plain) / plain,
                    100.0 * (with - plain) / dit_call);
      }
    }
    std::printf("\n");
  }

  // ---- Part 2: error vs NFE on the imperfect Gaussian-mixture testbed ----
  {
    const auto gmm = diffuse::GaussianMixture::preset("mixture_2d");
    std::shared_ptr<const diffuse::NoiseSchedule> schedule = diffuse::make_schedule("discrete");
    const diffuse::Denoiser denoiser(gmm.imperfect_network(schedule, args.delta, args.bias));
    const int64_t n = 4000;
    const Tensor truth = gmm.sample(n, 11).x0;
    const double floor = diffuse::sliced_wasserstein(truth, gmm.sample(n, 12).x0, 5);
    const Tensor noise = diffuse::randn({n, 2}, 3, at::TensorOptions().dtype(at::kDouble));
    std::printf(
        "## Error vs NFE: mixture_2d, imperfect eps = (1 + %.3g) eps* + %.3g tanh(x), discrete "
        "schedule, "
        "trailing spacing, %lld samples; SW2 noise floor %.4f\n\n",
        args.delta, args.bias, static_cast<long long>(n), floor);
    std::vector<std::string> rows{""};
    rows.insert(rows.end(), args.corrections.begin(), args.corrections.end());
    std::ofstream csv;
    if (!args.csv.empty()) {
      csv.open(args.csv);
      diffuse::check(static_cast<bool>(csv), "cannot write --csv ", args.csv);
      csv << "sampler,correction,steps,nfe,sw2\n";
    }
    std::printf("| sampler | correction |");
    for (int64_t s : args.steps) std::printf(" %lld steps |", static_cast<long long>(s));
    std::printf("\n|---|---|");
    for (size_t i = 0; i < args.steps.size(); ++i) std::printf("---|");
    std::printf("\n");
    for (const auto& key : args.samplers) {
      auto sampler = diffuse::make_sampler(key);
      for (const auto& spec : rows) {
        std::printf("| %s | %s |", key.c_str(),
                    spec.empty() ? "(none)" : ("`" + spec + "`").c_str());
        for (int64_t steps : args.steps) {
          diffuse::SampleOptions o;
          o.num_steps = steps;
          o.spacing = diffuse::make_spacing("trailing");
          o.seed = 7;
          if (!spec.empty()) o.corrections = {diffuse::correction_from_spec(spec)};
          const Tensor x = diffuse::sample(*sampler, denoiser, *schedule, noise, o);
          const double sw = diffuse::sliced_wasserstein(x, truth, 5);
          std::printf(" %.4f |", sw);
          if (csv)
            csv << key << "," << csv_name(spec) << "," << steps << ","
                << sampler->model_calls(steps) << "," << sw << "\n";
        }
        std::printf("\n");
      }
    }
    if (csv && !args.plot.empty()) {
      csv.close();
      const std::string script = args.plot + ".gp";
      std::ofstream gp(script);
      gp << "set terminal pngcairo size 1200,800\nset output '" << args.plot << "'\n"
         << "set termoption noenhanced\nset datafile separator ','\nset logscale xy\nset xlabel "
            "'network evaluations'\n"
         << "set ylabel 'sliced W2 to the true mixture'\nset key outside right\n"
         << "set title 'Corrections on the imperfect Gaussian-mixture testbed'\nplot ";
      bool first = true;
      for (const auto& key : args.samplers)
        for (const auto& spec : rows) {
          const std::string label =
              key + (spec.empty() ? "" : " + " + spec.substr(0, spec.find(':')));
          const std::string c = csv_name(spec);
          gp << (first ? "" : ", \\\n     ") << "'" << args.csv << "' using (strcol(1) eq '" << key
             << "' && strcol(2) eq '" << c << "' ? $4 : 1/0):5 with linespoints title '" << label
             << "'";
          first = false;
        }
      gp << "\n";
      gp.close();
      const int rc = std::system(("gnuplot '" + script + "' 2>/dev/null").c_str());
      std::printf("\nplot: %s (%s)\n", args.plot.c_str(),
                  rc == 0 ? "written" : "gnuplot failed or missing");
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "diffuse_bench_corrections: %s\n", e.what());
  return 1;
}
