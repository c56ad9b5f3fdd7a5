// SPDX-License-Identifier: Apache-2.0
// The one composition point: schedule + spacing -> grid, corrections, guidance (conditional and
// unconditional branches batched into one network call), denoiser, sampler. No other code knows
// how the pieces combine.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/detail/aten.h>
#include <diffuse/guidance.h>
#include <diffuse/noise.h>
#include <diffuse/registry.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>

namespace diffuse {

struct SampleOptions {
  /// Number of solver steps (>= 1). Ignored when `grid` is given.
  int64_t num_steps = 50;
  /// Which times to visit; null: the schedule's default spacing.
  std::shared_ptr<const TimestepSpacing> spacing;
  /// An explicit grid (num_steps + 1 points, final point last); overrides spacing and num_steps.
  TimeGrid grid;
  /// Classifier-free guidance or similar; null: one network call per model evaluation.
  std::shared_ptr<const Guidance> guidance;
  Conditioning cond, uncond;
  /// Applied in list order at every hook.
  std::vector<std::shared_ptr<Correction>> corrections;
  /// Where noise comes from. Null: per-sample generators seeded with `seed` (sample i gets
  /// seed + i; independent of the batch size).
  std::shared_ptr<NoiseSource> noise;
  uint64_t seed = 0;
  /// Check every network output for NaN/Inf and throw naming the step (one host sync per call).
  bool check_finite = true;
  std::function<void(const StepInfo&)> on_step;
};

/// Builds a schedule / spacing from a registry name ("discrete", "karras", ...) and options.
std::unique_ptr<NoiseSchedule> make_schedule(const std::string& name, const Config& options = {});
std::unique_ptr<TimestepSpacing> make_spacing(const std::string& name, const Config& options = {});

/// The grid sample() will visit for these options (after the corrections' on_grid hooks, run on
/// per-run copies as in sample()).
TimeGrid make_grid(const NoiseSchedule& schedule, const SampleOptions& options);

/// Draws an initial N(0, I) tensor from `seed` with the per-sample convention of sample().
Tensor randn(c10::IntArrayRef shape, uint64_t seed, const c10::TensorOptions& options = {});

/// The ModelFn sample() runs: conditioning hooks, batched guidance branches, conversion to
/// (x0, eps), on_prediction hooks, clipping, and the finiteness check.
ModelFn make_model_fn(const Denoiser& denoiser, const SampleOptions& options,
                      const std::vector<Correction*>& corrections);

/// Samples from `noise` ~ N(0, I) (any shape [B, ...], the caller's dtype and device): scales it by
/// sqrt(alpha^2 + sigma^2) of the first grid point and runs the sampler over the grid.
Tensor sample(const Sampler& sampler, const Denoiser& denoiser, const NoiseSchedule& schedule,
              const Tensor& noise, const SampleOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Implementation

inline std::unique_ptr<NoiseSchedule> make_schedule(const std::string& name, const Config& options) {
  return Registry<NoiseSchedule>::get().make(name, options);
}
inline std::unique_ptr<TimestepSpacing> make_spacing(const std::string& name, const Config& options) {
  return Registry<TimestepSpacing>::get().make(name, options);
}

namespace detail {
/// Each schedule names its default spacing; kept here so schedule.h need not know spacings.
inline std::string default_spacing_for(const NoiseSchedule& s) {
  return s.num_train_timesteps() > 0 ? "linspace" : (s.variance_preserving() ? "linspace" : "karras");
}
}  // namespace detail

namespace detail {
/// make_grid with the run's correction objects (detail::CorrectionRun).
inline TimeGrid make_grid(const NoiseSchedule& schedule, const SampleOptions& o,
                          const std::vector<Correction*>& corrections) {
  TimeGrid grid;
  if (!o.grid.empty()) {
    grid = o.grid;
  } else {
    check(o.num_steps >= 1, "num_steps must be >= 1, got ", o.num_steps);
    if (o.spacing) {
      grid = o.spacing->grid(schedule, o.num_steps);
    } else {
      grid = make_spacing(detail::default_spacing_for(schedule))->grid(schedule, o.num_steps);
    }
  }
  for (Correction* c : corrections) c->on_grid(grid, schedule);
  validate_grid(grid);
  return grid;
}
}  // namespace detail

inline TimeGrid make_grid(const NoiseSchedule& schedule, const SampleOptions& o) {
  const detail::CorrectionRun run(o.corrections, "make_grid()");
  return detail::make_grid(schedule, o, run.get());
}

inline Tensor randn(c10::IntArrayRef shape, uint64_t seed, const c10::TensorOptions& options) {
  return make_per_sample_noise(seed)->randn(shape, options);
}

namespace detail {

inline Tensor cat_conditioning_value(const Tensor& a, const Tensor& b) {
  if (!a.defined() && !b.defined()) return Tensor();
  check(a.defined() && b.defined(),
        "guidance needs both a conditional and an unconditional conditioning value (one is undefined)");
  check(a.sizes() == b.sizes(), "conditional and unconditional conditionings differ in shape: ", a.sizes(),
        " vs ", b.sizes());
  return at::cat({a, b}, 0);
}

inline Conditioning cat_conditioning(const Conditioning& a, const Conditioning& b) {
  Conditioning out;
  out.value = cat_conditioning_value(a.value, b.value);
  for (const auto& kv : a.extra) {
    auto it = b.extra.find(kv.first);
    check(it != b.extra.end(), "conditioning extra '", kv.first, "' is missing from the unconditional branch");
    out.extra[kv.first] = cat_conditioning_value(kv.second, it->second);
  }
  return out;
}

inline void check_finite(const Tensor& t, const char* what, const StepContext& step) {
  // One reduction: a NaN or Inf anywhere makes the double-precision sum non-finite. Only a sum
  // that overflows double from finite values could be a false alarm; confirm before throwing.
  const double total = t.sum(at::kDouble).item<double>();
  if (!std::isfinite(total) && !at::isfinite(t).all().item<bool>()) {
    throw Error(cat("the network returned NaN/Inf ", what, " at step ", step.index, " of ", step.num_steps,
                    " (t=", step.now.t, ")"));
  }
}

}  // namespace detail

inline ModelFn make_model_fn(const Denoiser& denoiser, const SampleOptions& o,
                             const std::vector<Correction*>& corrections) {
  // Captured by value/pointer: the returned function lives only for one run.
  const Denoiser* d = &denoiser;
  const SampleOptions* opts = &o;
  return [d, opts, corrections](const Tensor& x, const TimePoint& at, const StepContext& step) {
    const bool guided = static_cast<bool>(opts->guidance) && opts->guidance->needs_uncond(step);
    Conditioning cond = opts->cond;
    StepContext cstep = step;
    cstep.branch = Branch::kCond;
    cstep.call = at;
    for (Correction* c : corrections) c->on_condition(cond, cstep);
    Tensor out;
    if (guided) {
      Conditioning uncond = opts->uncond;
      StepContext ustep = step;
      ustep.branch = Branch::kUncond;
      ustep.call = at;
      for (Correction* c : corrections) c->on_condition(uncond, ustep);
      const int64_t b = x.size(0);
      Tensor both = d->call_network(at::cat({x, x}, 0), at, detail::cat_conditioning(cond, uncond));
      if (opts->check_finite) detail::check_finite(both, "output", step);
      out = opts->guidance->combine(both.narrow(0, 0, b), both.narrow(0, b, b), step);
    } else {
      out = d->call_network(x, at, cond);
      if (opts->check_finite) detail::check_finite(out, "output", step);
    }
    out = out.to(x.scalar_type());
    Prediction p = d->convert(out, x, at);
    StepContext pstep = step;
    pstep.call = at;
    for (Correction* c : corrections) c->on_prediction(p, x, pstep);
    d->finalize(p, x, at);
    return p;
  };
}

inline Tensor sample(const Sampler& sampler, const Denoiser& denoiser, const NoiseSchedule& schedule,
                     const Tensor& noise, const SampleOptions& o) {
  check(noise.defined(), "sample(): the initial noise is undefined");
  check(noise.dim() >= 1 && noise.size(0) > 0, "sample(): the initial noise needs a batch dimension, got shape ",
        noise.sizes());
  check(noise.numel() > 0, "sample(): the initial noise is empty, shape ", noise.sizes());
  check(at::isFloatingType(noise.scalar_type()), "sample(): the initial noise must be floating point, got dtype ",
        noise.scalar_type());
  // Per-run copies of the corrections (or the objects themselves, one run at a time): one
  // SampleOptions may serve concurrent runs.
  const detail::CorrectionRun run(o.corrections, "sample()");
  const std::vector<Correction*>& corrections = run.get();
  const TimeGrid grid = detail::make_grid(schedule, o, corrections);
  std::shared_ptr<NoiseSource> noise_source = o.noise ? o.noise : std::shared_ptr<NoiseSource>(make_per_sample_noise(o.seed));
  SampleContext ctx;
  ctx.schedule = &schedule;
  ctx.noise = noise_source.get();
  ctx.corrections = corrections;
  ctx.on_step = o.on_step;
  const TimePoint& first = grid.front();
  Tensor x = noise * std::sqrt(first.alpha * first.alpha + first.sigma * first.sigma);
  return sampler.sample(make_model_fn(denoiser, o, corrections), x, grid, ctx);
}

}  // namespace diffuse
