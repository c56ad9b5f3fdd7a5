// SPDX-License-Identifier: Apache-2.0
// The one composition point: schedule + spacing -> grid, corrections, guidance (conditional and
// unconditional branches batched into one network call), denoiser, sampler. No other code knows
// how the pieces combine.
#pragma once

#include <cmath>
#include <limits>
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
  /// Passed to the network (uncond: to the unconditional branch of `guidance`). Every defined
  /// tensor needs one row per sample: size(0) == the batch size of the noise.
  Conditioning cond, uncond;
  /// Applied in list order at every hook.
  std::vector<std::shared_ptr<Correction>> corrections;
  /// Where noise comes from. Null: per-sample generators seeded with `seed` (sample i gets
  /// seed + i; independent of the batch size).
  std::shared_ptr<NoiseSource> noise;
  uint64_t seed = 0;
  /// Check every network output for NaN/Inf and throw naming the first bad step and network call,
  /// and the result once at the end (NaN/Inf from the update, or overflow of a float16 result).
  /// Default true. The per-call check runs on the device without a host sync: each call adds one
  /// flag (two small ops), and sample() reads all flags once, after the loop, then throws for the
  /// first bad call. A run with a bad output therefore finishes its remaining steps on NaN/Inf
  /// first (and on_step sees them); if the sampler throws on the way, the NaN/Inf error is
  /// reported instead.
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

namespace detail {
class FiniteLog;
}

/// The ModelFn sample() runs: conditioning hooks, batched guidance branches, conversion to
/// (x0, eps), on_prediction hooks, clipping, and the finiteness check. With `deferred` null the
/// check (when options.check_finite) throws at the call itself (one host sync per call); sample()
/// passes its run's log instead and checks it once at the end.
ModelFn make_model_fn(const Denoiser& denoiser, const SampleOptions& options,
                      const std::vector<Correction*>& corrections,
                      detail::FiniteLog* deferred = nullptr);

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

/// The finiteness check of network outputs without a host sync per call. record() adds one
/// device flag per call: sum(out * 0), which is 0 when every entry of out is finite and NaN when
/// one is NaN or +-Inf (Inf * 0 = NaN), exactly, whatever the magnitudes (every term is 0, so
/// nothing can overflow); contiguous float32/float64 CPU outputs get the same 0 or NaN from one
/// fused pass (detail/fused.h). check() reads all flags with one host transfer and throws naming
/// the first bad call's step; a run without records costs nothing.
class FiniteLog {
 public:
  struct Call {
    int64_t index, num_steps;  ///< the sampler step of the call
    double t;                  ///< that step's time (StepContext::now.t)
    double at;                 ///< where the call evaluated the network
  };

  void record(const Tensor& out, const StepContext& step, const TimePoint& at) {
    if (fused::can_fuse(out)) {
      // Contiguous float32/float64 CPU output: one integer pass over the bit patterns writes the
      // same flag value sum(out * 0) would have (0 or NaN) into a fresh 0-dim tensor.
      Tensor flag = at::empty({}, at::TensorOptions().dtype(at::kFloat));
      *flag.data_ptr<float>() =
          fused::any_nonfinite(out) ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
      flags_.push_back(std::move(flag));
    } else {
      // Summed in float32: a tensor of zeros and NaNs converts exactly from any floating dtype.
      flags_.push_back(scaled(out, 0.0).sum(at::kFloat));
    }
    calls_.push_back(Call{step.index, step.num_steps, step.now.t, at.t});
  }

  size_t size() const { return flags_.size(); }

  /// Throws for the first recorded call whose output was not finite, then forgets the records.
  void check() {
    if (flags_.empty()) return;
    std::vector<Tensor> flags;
    flags.swap(flags_);
    std::vector<Call> calls;
    calls.swap(calls_);
    bool on_cpu = true;
    for (const Tensor& f : flags) on_cpu = on_cpu && f.device().is_cpu();
    // CPU flags are read in place; device flags are gathered and copied once (the one sync).
    const Tensor host = on_cpu ? Tensor() : at::stack(flags).to(at::kCPU);
    for (size_t k = 0; k < flags.size(); ++k) {
      const float v = on_cpu ? *flags[k].data_ptr<float>() : host.data_ptr<float>()[k];
      if (!std::isfinite(v)) {
        const Call& c = calls[k];
        // Deferred (several records): which call of the run; a single record is the call itself.
        const std::string which =
            flags.size() > 1 ? cat("network call ", k + 1, " of the run's ", flags.size(), ", ")
                             : std::string("network ");
        throw Error(cat("the network returned NaN/Inf output at step ", c.index, " of ",
                        c.num_steps, " (t=", c.t, "; ", which, "evaluated at t=", c.at, ")"));
      }
    }
  }

 private:
  std::vector<Tensor> flags_;
  std::vector<Call> calls_;
};

}  // namespace detail

inline ModelFn make_model_fn(const Denoiser& denoiser, const SampleOptions& o,
                             const std::vector<Correction*>& corrections,
                             detail::FiniteLog* deferred) {
  // Captured by value/pointer: the returned function lives only for one run.
  const Denoiser* d = &denoiser;
  const SampleOptions* opts = &o;
  return [d, opts, corrections, deferred](const Tensor& x, const TimePoint& at,
                                          const StepContext& step) {
    auto check_output = [&](const Tensor& out) {
      if (!opts->check_finite) return;
      if (deferred != nullptr) {
        deferred->record(out, step, at);
      } else {
        detail::FiniteLog now;
        now.record(out, step, at);
        now.check();
      }
    };
    const bool guided = static_cast<bool>(opts->guidance) && opts->guidance->needs_uncond(step);
    // The conditioning hooks get copies; without hooks the options' own values are passed.
    Conditioning hooked;
    if (!corrections.empty()) {
      hooked = opts->cond;
      StepContext cstep = step;
      cstep.branch = Branch::kCond;
      cstep.call = at;
      for (Correction* c : corrections) c->on_condition(hooked, cstep);
    }
    const Conditioning& cond = corrections.empty() ? opts->cond : hooked;
    Tensor out;
    if (guided) {
      Conditioning uncond = opts->uncond;
      StepContext ustep = step;
      ustep.branch = Branch::kUncond;
      ustep.call = at;
      for (Correction* c : corrections) c->on_condition(uncond, ustep);
      const int64_t b = x.size(0);
      Tensor both = d->call_network(at::cat({x, x}, 0), at, detail::cat_conditioning(cond, uncond));
      check_output(both);
      out = opts->guidance->combine(both.narrow(0, 0, b), both.narrow(0, b, b), step);
    } else {
      out = d->call_network(x, at, cond);
      check_output(out);
    }
    if (out.scalar_type() != x.scalar_type()) out = out.to(x.scalar_type());
    Prediction p = d->convert(out, x, at);
    if (!corrections.empty()) {
      StepContext pstep = step;
      pstep.call = at;
      for (Correction* c : corrections) c->on_prediction(p, x, pstep);
    }
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
  detail::check_conditioning_batch(o.cond, noise.size(0), "cond");
  if (o.guidance) detail::check_conditioning_batch(o.uncond, noise.size(0), "uncond");
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
  // Scaled in the sampler's compute dtype: float16 noise times a first sigma above ~16000 (EDM/VE
  // sigma_max) would overflow to Inf before the sampler upcasts.
  const Tensor x = detail::scaled(noise.to(Sampler::compute_dtype(noise.scalar_type())),
                                  std::sqrt(first.alpha * first.alpha + first.sigma * first.sigma));
  // The finiteness flags are read once, after the loop. A NaN/Inf output that made the sampler
  // (or a correction) throw on the way is the real cause, so it is reported instead of that error.
  detail::FiniteLog finite;
  Tensor out;
  try {
    out = sampler.sample(make_model_fn(denoiser, o, corrections, &finite), x, grid, ctx);
  } catch (const std::exception&) {
    finite.check();
    throw;
  }
  finite.check();
  Tensor result = out.to(noise.scalar_type());
  // Once per run: a result that overflowed the caller's dtype, or that the update arithmetic made
  // non-finite from finite network outputs, is an error rather than a silent NaN/Inf.
  if (o.check_finite && !at::isfinite(result).all().item<bool>()) {
    check(!at::isfinite(out).all().item<bool>(), "sample(): the result does not fit ",
          noise.scalar_type(), ": its largest magnitude is ", out.abs().max().item<double>(),
          " (finite in ", out.scalar_type(), "); sample in ", out.scalar_type(),
          " or check the model's output scale");
    throw Error(detail::cat(
        "sample(): the result has NaN/Inf although every network output was finite: the ",
        sampler.name(), " update overflowed on this grid (", grid.size() - 1,
        " steps from sigma_ve=", grid.front().sigma_ve(), ")"));
  }
  return result;
}

}  // namespace diffuse
