// SPDX-License-Identifier: Apache-2.0
// diffuse ays: optimises an Align-Your-Steps schedule (Sabour et al., ICML 2024) for a model on
// real data: the KLUB of the schedule is minimised with optimise_schedule()
// (samplers/corrections/schedule_optimisation.h) on Fashion-MNIST training images; the result is
// printed and saved as a schedule file that `diffuse sample --schedule file:PATH` reads.
#include "cli.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>

#include <diffuse/all.h>
#include <diffuse/samplers/corrections/schedule_optimisation.h>
#include <diffuse/training/data.h>
#include <diffuse/training/model_file.h>

namespace diffuse::cli {
namespace {

using diffuse::format_double;

struct AysArgs {
  std::string model = "default";
  std::string model_card;
  int64_t steps = 10;
  int64_t base_steps = 0;
  int64_t refine = 0;
  int64_t sweeps = 3;
  int64_t search_iters = 8;
  int64_t nodes = 4;
  double tol = 1e-3;
  std::string estimator = "importance";
  std::string init = "karras";
  double rho = 7.0;
  double sigma_min = 0;
  double sigma_max = 0;
  int64_t limit = 16;
  uint64_t seed = 0;
  std::string data_dir;
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string out = "ays_schedule.json";
};

/// Checks every option (before anything is loaded); returns the steps optimised (--base-steps, or
/// --steps with at least 2).
int64_t check_args(const AysArgs& a) {
  require(a.steps >= 1 && a.steps <= 10000,
          "--steps must be in [1, 10000], got " + std::to_string(a.steps));
  const int64_t base = a.base_steps > 0 ? a.base_steps : std::max<int64_t>(2, a.steps);
  require(
      a.base_steps == 0 || (a.base_steps >= 2 && a.base_steps <= 1000),
      "--base-steps must be 0 (= --steps) or in [2, 1000], got " + std::to_string(a.base_steps));
  require(a.refine >= 0 && a.refine <= 6,
          "--refine must be in [0, 6], got " + std::to_string(a.refine));
  require(a.sweeps >= 0 && a.sweeps <= 1000,
          "--sweeps must be in [0, 1000], got " + std::to_string(a.sweeps));
  require(a.search_iters >= 1 && a.search_iters <= 200,
          "--search-iters must be in [1, 200], got " + std::to_string(a.search_iters));
  require(a.nodes >= 1 && a.nodes <= 1024,
          "--nodes must be in [1, 1024], got " + std::to_string(a.nodes));
  require(std::isfinite(a.tol) && a.tol >= 0, "--tol must be >= 0, got " + format_double(a.tol));
  (void)require_enum(a.estimator, diffuse::klub_quadrature_names(), "--estimator");
  (void)require_enum(a.init, diffuse::schedule_init_names(), "--init");
  require(std::isfinite(a.rho) && a.rho > 0, "--rho must be > 0, got " + format_double(a.rho));
  require(std::isfinite(a.sigma_min) && a.sigma_min >= 0,
          "--sigma-min must be >= 0 (0 = the schedule's), got " + format_double(a.sigma_min));
  require(std::isfinite(a.sigma_max) && a.sigma_max >= 0,
          "--sigma-max must be >= 0 (0 = the schedule's), got " + format_double(a.sigma_max));
  require(a.limit >= 1 && a.limit <= 60000,
          "--limit must be in [1, 60000], got " + std::to_string(a.limit));
  require(!a.out.empty(), "--out must name the schedule file to write");
  return base;
}

/// The optimiser's options: the noise range in sigma_ve = sigma / alpha (by default the schedule's
/// whole range) and the search settings.
diffuse::ScheduleOptimisationOptions optimisation_options(const AysArgs& a, int64_t base,
                                                          const diffuse::NoiseSchedule& schedule) {
  const diffuse::TimePoint lo = schedule.at(schedule.t_min()), hi = schedule.at(schedule.t_max());
  const double sched_min = lo.sigma / lo.alpha,
               sched_max = hi.alpha > 0 ? hi.sigma / hi.alpha : 1e4;
  const double sigma_min = a.sigma_min > 0 ? a.sigma_min : sched_min;
  const double sigma_max = a.sigma_max > 0 ? a.sigma_max : sched_max;
  require(sigma_min < sigma_max, "the noise range needs sigma_min < sigma_max, got " +
                                     format_double(sigma_min) + " and " + format_double(sigma_max));
  diffuse::ScheduleOptimisationOptions o;
  o.num_steps(base)
      .sigma_min(sigma_min)
      .sigma_max(sigma_max)
      .init(diffuse::parse_schedule_init(a.init))
      .rho(a.rho)
      .estimator(diffuse::parse_klub_quadrature(a.estimator))
      .nodes(a.nodes)
      .max_sweeps(a.sweeps)
      .tol(a.tol)
      .search_iters(a.search_iters)
      .refine(a.refine)
      .seed(a.seed);
  return o;
}

/// The most KLUB interval evaluations (denoiser batches) the optimiser can do: the progress total
/// (it usually stops earlier).
int64_t max_evaluations(const AysArgs& a, int64_t base) {
  int64_t max_evals = base + a.sweeps * (base - 1) * (2 * (a.search_iters + 2) + 2);
  for (int64_t l = 0, intervals = base; l < a.refine; ++l, intervals *= 2)
    max_evals += 2 * intervals + intervals * (2 * (a.search_iters + 2) + 2);
  return max_evals;
}

/// The KLUB as it goes: a line per sweep and per level (info), per point (debug, -v).
std::function<void(const diffuse::AysIteration&)> iteration_logger(const AysArgs& a, int64_t base,
                                                                   Progress& bar) {
  return [&a, base, &bar](const diffuse::AysIteration& it) {
    using Kind = diffuse::AysIteration::Kind;
    const bool wanted =
        spdlog::should_log(it.kind == Kind::kPoint ? spdlog::level::debug : spdlog::level::info);
    if (!wanted) return;
    bar.finish();  // clear a drawn bar before the log line
    const double change =
        it.klub_start > 0 ? 100.0 * (it.klub - it.klub_start) / it.klub_start : 0.0;
    const int64_t level_steps = base << it.level;
    switch (it.kind) {
      case Kind::kInitial:
        spdlog::info("ays: initial {} schedule ({} steps): KLUB {:.6g} | {:.1f} s", a.init, base,
                     it.klub, it.elapsed_s);
        break;
      case Kind::kPoint:
        spdlog::debug(
            "ays: {} {}/{}, point {}/{} (sigma_ve {:.5g}): KLUB {:.6g} ({:+.2f}% this {}) | {:.1f} "
            "s",
            it.level == 0 ? "sweep" : "refinement", it.level == 0 ? it.sweep + 1 : it.level,
            it.level == 0 ? it.max_sweeps : a.refine, it.point + 1, it.points, it.sigma, it.klub,
            change, it.level == 0 ? "sweep" : "pass", it.elapsed_s);
        break;
      case Kind::kSweep:
        spdlog::info("ays: sweep {}/{}: KLUB {:.6g} -> {:.6g} ({:+.2f}%) | {:.1f} s", it.sweep + 1,
                     it.max_sweeps, it.klub_start, it.klub, change, it.elapsed_s);
        break;
      case Kind::kLevel:
        if (it.level > 0)
          spdlog::info(
              "ays: refinement {}/{} ({} steps): KLUB {:.6g} -> {:.6g} ({:+.2f}%) | {:.1f} s",
              it.level, a.refine, level_steps, it.klub_start, it.klub, change, it.elapsed_s);
        break;
    }
  };
}

/// The schedule file of the result: steps + 1 noise levels (the last one 0 = the clean point) ->
/// model times.
ScheduleFile schedule_file_of(const AysArgs& a, int64_t base, const std::vector<double>& sigmas,
                              const diffuse::LoadedModel& model,
                              const diffuse::NoiseSchedule& schedule, const diffuse::Dataset& data,
                              const std::string& klub) {
  ScheduleFile f;
  f.noise_schedule = model.card.schedule;
  f.final_point = "zero";
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    const double t =
        std::clamp(schedule.at_sigma_ve(sigmas[i]).t, schedule.t_min(), schedule.t_max());
    require(f.timesteps.empty() || t < f.timesteps.back(),
            "the optimised schedule maps to non-descending model times at step " +
                std::to_string(i) + " (t=" + format_double(t) +
                "); try fewer --steps or a narrower noise range");
    f.timesteps.push_back(t);
  }
  f.description =
      "diffuse ays: " + std::to_string(a.steps) + " steps (optimised at " + std::to_string(base) +
      (a.refine > 0 ? " refined " + std::to_string(a.refine) + "x" : "") + ") for model " +
      (model.source == "default" ? std::string("default") : model.source) + " on " +
      std::to_string(data.size()) + " images of " + data.name + ", seed " + std::to_string(a.seed) +
      ", KLUB " + klub;
  return f;
}

int run_ays(const AysArgs& a) {
  const int64_t base = check_args(a);
  const c10::Device device = parse_device(a.device);
  const c10::ScalarType dtype = parse_dtype(a.dtype);

  diffuse::LoadedModel model = load_cli_model(a.model, a.model_card, device, dtype);
  const diffuse::ModelCard& card = model.card;
  require(card.sample_shape == std::vector<int64_t>({1, 28, 28}),
          "ays uses Fashion-MNIST training images; the model's sample_shape is " +
              diffuse::detail::card_shape_text(card.sample_shape) + ", not 1x28x28");
  std::shared_ptr<const diffuse::NoiseSchedule> schedule = model.make_schedule();
  const diffuse::Dataset data = diffuse::load_fashion_mnist("train", a.data_dir, a.limit);
  diffuse::ScheduleOptimisationOptions o = optimisation_options(a, base, *schedule);

  // The conditional denoiser with each image's own label (no guidance); batches are whole copies
  // of the data batch, so the labels repeat.
  diffuse::Denoiser denoiser(model.network, model.denoiser_options());
  const int64_t n = data.size();
  const at::Tensor labels = card.num_classes > 0 ? data.labels.to(device) : at::Tensor();
  // The KLUB's data and noise in the samplers' compute dtype (float32 for float16 / bfloat16 runs);
  // the Denoiser hands the network x_t in its own dtype.
  const auto topt =
      at::TensorOptions().dtype(diffuse::Sampler::compute_dtype(dtype)).device(device);
  // Progress: one unit per KLUB interval evaluation (one denoiser batch).
  Progress bar("ays", max_evaluations(a, base), "denoiser batches");
  int64_t evals = 0;
  o.on_iteration(iteration_logger(a, base, bar));
  diffuse::VeDenoiserFn inner = diffuse::ve_denoiser([&](const at::Tensor& x_ve, double sigma) {
    const diffuse::TimePoint p = schedule->at_sigma_ve(sigma);
    diffuse::Conditioning cond;
    if (labels.defined()) cond.value = labels.repeat({x_ve.size(0) / n});
    return denoiser(x_ve.to(topt) * p.alpha, p, cond).x0.to(at::kDouble);
  });
  diffuse::VeDenoiserFn counted = [&](const at::Tensor& x, const at::Tensor& sigma) {
    at::Tensor r = inner(x, sigma);
    bar.update(++evals);
    return r;
  };
  spdlog::info(
      "optimising a {}-step schedule (base {} steps{}) for {} ({}) on {} images of {}, sigma_ve in "
      "[{}, {}], "
      "{} sweeps at most, {} nodes, estimator {}",
      a.steps, base, a.refine > 0 ? ", refined " + std::to_string(a.refine) + "x" : "",
      model.source == "default" ? std::string("the default model") : model.source, card.schedule, n,
      data.name, format_double(o.sigma_min()), format_double(o.sigma_max()), a.sweeps, a.nodes,
      a.estimator);
  const auto t0 = std::chrono::steady_clock::now();
  diffuse::ScheduleOptimisationResult res;
  {
    at::NoGradGuard no_grad;
    res = diffuse::optimise_schedule(counted, data.data.to(device).to(at::kDouble), o);
  }
  bar.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::vector<double> sigmas = res.sigmas_for_steps(a.steps);
  std::string klub;
  for (double k : res.klub_history) klub += (klub.empty() ? "" : " -> ") + format_double(k);
  const ScheduleFile f = schedule_file_of(a, base, sigmas, model, *schedule, data, klub);
  write_schedule_file(a.out, f);

  std::cout << "sigma_ve:";
  for (double s : sigmas) std::cout << " " << format_double(s);
  std::cout << "\ntimesteps:";
  for (double t : f.timesteps) std::cout << " " << format_double(t);
  std::cout << "\n";
  spdlog::info(
      "KLUB {} ({} sweeps, {} denoiser batches, {:.1f} s); wrote {} (use: diffuse sample "
      "--schedule "
      "file:{})",
      klub, res.sweeps, evals, secs, a.out, a.out);
  return kExitOk;
}

std::function<int()> setup_ays(CLI::App& app) {
  auto a = std::make_shared<AysArgs>();
  app.footer(
      R"(The schedule minimises the KL upper bound (KLUB) of the first-order discretisation of the reverse
SDE for this model on real images (--limit Fashion-MNIST training images, with their labels as the
condition). With --base-steps B != --steps, a B-step schedule is optimised and log-linearly
interpolated (the authors' recommendation; --refine R doubles it R times first). The schedule file
(JSON: noise_schedule, timesteps, final) is read by `diffuse sample --schedule file:PATH` and
`diffuse eval --schedule file:PATH`.

Examples:
  diffuse ays --steps 10 --out ays10.json && diffuse sample --schedule file:ays10.json
  diffuse ays --steps 20 --base-steps 10 --refine 1 --limit 128 --out ays20.json
  diffuse ays --model runs/tiny/model.pt --steps 8 --sweeps 8 --search-iters 16 --out tiny_ays.json)");
  app.add_option("-m,--model", a->model,
                 "Model (as in `diffuse sample`; default: the shipped model)")
      ->capture_default_str();
  app.add_option("--model-card", a->model_card, "Card for a model file without one");
  app.add_option("--steps", a->steps, "Steps of the schedule written")->capture_default_str();
  app.add_option("--base-steps", a->base_steps, "Steps optimised (0 = --steps, at least 2)")
      ->capture_default_str();
  app.add_option("--refine", a->refine,
                 "Hierarchical refinements of the base schedule (each doubles it)")
      ->capture_default_str();
  app.add_option("--sweeps", a->sweeps,
                 "Coordinate sweeps at most (0 = evaluate the initial schedule)")
      ->capture_default_str();
  app.add_option("--search-iters", a->search_iters, "Golden-section iterations per point")
      ->capture_default_str();
  app.add_option("--nodes", a->nodes, "Quadrature nodes per interval")->capture_default_str();
  app.add_option("--tol", a->tol, "Stop when a sweep lowers the KLUB by less than tol * KLUB")
      ->capture_default_str();
  app.add_option("--estimator", a->estimator, "KLUB estimator: importance or log_t")
      ->capture_default_str();
  app.add_option("--init", a->init, "Initial schedule: karras or exponential")
      ->capture_default_str();
  app.add_option("--rho", a->rho, "Karras rho of the initial schedule")->capture_default_str();
  app.add_option("--sigma-min", a->sigma_min, "Smallest noise level sigma_ve (0 = the schedule's)")
      ->capture_default_str();
  app.add_option("--sigma-max", a->sigma_max, "Largest noise level sigma_ve (0 = the schedule's)")
      ->capture_default_str();
  app.add_option("--limit", a->limit, "Training images used by the estimator")
      ->capture_default_str();
  app.add_option("--seed", a->seed, "Seed of the estimator's noise")->capture_default_str();
  app.add_option("--data-dir", a->data_dir, "Fashion-MNIST folder (default: the Debian package's)");
  app.add_option("--device", a->device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", a->dtype, "float32, float64, float16, bfloat16")->capture_default_str();
  app.add_option("-o,--out", a->out, "Schedule file to write (JSON, atomically)")
      ->capture_default_str();
  return [a] { return run_ays(*a); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(
    ays, "ays", "Optimise an Align-Your-Steps schedule for a model on data; write a schedule file",
    setup_ays);

}  // namespace diffuse::cli
