// SPDX-License-Identifier: Apache-2.0
#include <diffuse/sample.h>

#include <cmath>
#include <limits>

#include <diffuse/detail/aten.h>
#include <diffuse/detail/fused.h>

namespace diffuse {

std::unique_ptr<NoiseSchedule> make_schedule(const std::string& name, const Config& options) {
  return Registry<NoiseSchedule>::get().make(name, options);
}
std::unique_ptr<TimestepSpacing> make_spacing(const std::string& name, const Config& options) {
  return Registry<TimestepSpacing>::get().make(name, options);
}

namespace {
/// Each schedule names its default spacing; kept here so schedule.h need not know spacings.
std::string default_spacing_for(const NoiseSchedule& s) {
  if (s.rectified_flow()) return "flow_match";  // the spacing that applies the flow shift
  return s.num_train_timesteps() > 0 ? "linspace"
                                     : (s.variance_preserving() ? "linspace" : "karras");
}
}  // namespace

namespace detail {
/// make_grid with the run's correction objects (detail::CorrectionRun).
TimeGrid make_grid(const NoiseSchedule& schedule, const SampleOptions& o,
                   const std::vector<Correction*>& corrections) {
  TimeGrid grid;
  if (!o.grid.empty()) {
    grid = o.grid;
  } else {
    check(o.num_steps >= 1, "num_steps must be >= 1, got ", o.num_steps);
    if (o.spacing) {
      grid = o.spacing->grid(schedule, o.num_steps);
    } else {
      grid = make_spacing(default_spacing_for(schedule))->grid(schedule, o.num_steps);
    }
  }
  for (Correction* c : corrections) c->on_grid(grid, schedule);
  validate_grid(grid);
  return grid;
}
}  // namespace detail

TimeGrid make_grid(const NoiseSchedule& schedule, const SampleOptions& o) {
  const detail::CorrectionRun run(o.corrections, "make_grid()");
  return detail::make_grid(schedule, o, run.get());
}

Tensor randn(c10::IntArrayRef shape, uint64_t seed, const c10::TensorOptions& options) {
  return make_per_sample_noise(seed)->randn(shape, options);
}

namespace {

/// The two branches' values batch together: both undefined, or both defined with one shape.
void check_branch_values(const Tensor& a, const Tensor& b) {
  if (!a.defined() && !b.defined()) return;
  check(a.defined() && b.defined(),
        "guidance needs both a conditional and an unconditional conditioning value (one is "
        "undefined)");
  check(a.sizes() == b.sizes(),
        "conditional and unconditional conditionings differ in shape: ", a.sizes(), " vs ",
        b.sizes());
}

const Tensor& uncond_extra(const Conditioning& b, const std::string& key) {
  auto it = b.extra.find(key);
  check(it != b.extra.end(), "conditioning extra '", key,
        "' is missing from the unconditional branch");
  return it->second;
}

/// What cat_conditioning checks, without the tensors: sample() runs it before the loop, so a
/// mismatched pair is reported even when no call needs the unconditional branch.
void check_conditioning_pair(const Conditioning& a, const Conditioning& b) {
  check_branch_values(a.value, b.value);
  for (const auto& kv : a.extra) check_branch_values(kv.second, uncond_extra(b, kv.first));
}

Tensor cat_conditioning_value(const Tensor& a, const Tensor& b) {
  check_branch_values(a, b);
  if (!a.defined()) return Tensor();
  return at::cat({a, b}, 0);
}

Conditioning cat_conditioning(const Conditioning& a, const Conditioning& b) {
  Conditioning out;
  out.value = cat_conditioning_value(a.value, b.value);
  for (const auto& kv : a.extra)
    out.extra[kv.first] = cat_conditioning_value(kv.second, uncond_extra(b, kv.first));
  return out;
}

}  // namespace

namespace detail {

void FiniteLog::record(const Tensor& out, const StepContext& step, const TimePoint& at) {
  if (fused::can_fuse(out)) {
    // Contiguous float32/float64 CPU output: one integer pass over the bit patterns, read now.
    record_known(fused::any_nonfinite(out), step, at);
    return;
  }
  // Summed in float32: a tensor of zeros and NaNs converts exactly from any floating dtype.
  calls_.push_back(
      Call{step.index, step.num_steps, step.now.t, at.t, static_cast<int64_t>(flags_.size())});
  flags_.push_back(diffuse::scaled(out, 0.0).sum(at::kFloat));
}

void FiniteLog::record_known(bool nonfinite, const StepContext& step, const TimePoint& at) {
  calls_.push_back(Call{step.index, step.num_steps, step.now.t, at.t, -1, nonfinite});
}

void FiniteLog::check() {
  if (calls_.empty()) return;
  std::vector<Tensor> flags;
  flags.swap(flags_);
  std::vector<Call> calls;
  calls.swap(calls_);
  // CPU flags are read in place; device flags are gathered and copied once (the one sync).
  std::vector<Tensor> on_device;
  std::vector<int64_t> slot(flags.size(), -1);
  for (size_t f = 0; f < flags.size(); ++f) {
    if (!flags[f].device().is_cpu()) {
      slot[f] = static_cast<int64_t>(on_device.size());
      on_device.push_back(flags[f]);
    }
  }
  const Tensor host = on_device.empty() ? Tensor() : at::stack(on_device).to(at::kCPU);
  for (size_t k = 0; k < calls.size(); ++k) {
    const Call& c = calls[k];
    bool bad = c.nonfinite;
    if (c.flag >= 0) {
      const float v = slot[c.flag] >= 0 ? host.data_ptr<float>()[slot[c.flag]]
                                        : *flags[c.flag].data_ptr<float>();
      bad = !std::isfinite(v);
    }
    if (bad) {
      // Deferred (several records): which call of the run; a single record is the call itself.
      const std::string which =
          calls.size() > 1 ? cat("network call ", k + 1, " of the run's ", calls.size(), ", ")
                           : std::string("network ");
      throw NumericalError(cat("the network returned NaN/Inf output at step ", c.index, " of ",
                               c.num_steps, " (t=", c.t, "; ", which, "evaluated at t=", c.at,
                               ")"));
    }
  }
}

}  // namespace detail

ModelFn make_model_fn(const Denoiser& denoiser, const SampleOptions& o,
                      const std::vector<Correction*>& corrections, detail::FiniteLog* deferred) {
  // Captured by value/pointer: the returned function lives only for one run.
  const Denoiser* d = &denoiser;
  const SampleOptions* opts = &o;
  return [d, opts, corrections, deferred](const Tensor& x, const TimePoint& at,
                                          const StepContext& step) {
    // The finiteness check of a network output (check_finite): its flag (or one read already by
    // the conversion pass: known = 0 / 1) goes to the run's log, or is checked now.
    auto check_output = [&](const Tensor& out, int8_t known = -1) {
      if (!opts->check_finite) return;
      detail::FiniteLog now;
      detail::FiniteLog& log = deferred != nullptr ? *deferred : now;
      if (known < 0) {
        log.record(out, step, at);
      } else {
        log.record_known(known != 0, step, at);
      }
      if (deferred == nullptr) now.check();
    };
    // The on_prediction hooks and clipping of an unguided (or output-guided) prediction.
    auto finish = [&](Prediction p) {
      if (!corrections.empty()) {
        StepContext pstep = step;
        pstep.call = at;
        for (Correction* c : corrections) c->on_prediction(p, x, pstep);
      }
      d->finalize(p, x, at);
      return p;
    };
    StepContext gstep = step;  // what the guidance sees: the step, with the call's point
    gstep.call = at;
    const bool guided = static_cast<bool>(opts->guidance) && opts->guidance->needs_uncond(gstep);
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
      Tensor both = d->call_network(at::cat({x, x}, 0), at, cat_conditioning(cond, uncond));
      check_output(both);
      // A learned variance is not guided: the conditional branch's is kept.
      Tensor cond_variance;
      if (d->options().learned_variance) {
        if (both.scalar_type() != x.scalar_type()) both = both.to(x.scalar_type());
        cond_variance = both.narrow(0, 0, b).narrow(1, x.size(1), x.size(1));
        both = both.narrow(1, 0, x.size(1));
      }
      // guided_channels = k: channels k.. take the conditional branch's output (DiT's / SiT's
      // forward_with_cfg).
      const int64_t k = d->options().guided_channels;
      const bool partial = k > 0 && k < x.size(1);
      if (k > 0) {
        check(x.dim() >= 2 && k <= x.size(1), "DenoiserOptions.guided_channels=", k,
              " exceeds the sample's ", x.dim() >= 2 ? x.size(1) : 0, " channels (shape ",
              x.sizes(), ")");
      }
      auto keep_cond = [&](const Tensor& guided, const Tensor& cond_part) {
        return at::cat({guided.narrow(1, 0, k), cond_part.narrow(1, k, x.size(1) - k)}, 1);
      };
      if (opts->guidance->on_predictions()) {
        if (both.scalar_type() != x.scalar_type()) both = both.to(x.scalar_type());
        const Prediction pc = d->convert(both.narrow(0, 0, b), x, at);
        Prediction p = opts->guidance->combine_predictions(
            pc, d->convert(both.narrow(0, b, b), x, at), x, at, gstep);
        if (partial) {
          p.x0 = keep_cond(p.x0, pc.x0);
          p.eps = keep_cond(p.eps, pc.eps);
        }
        p.variance = cond_variance;
        if (!corrections.empty()) {
          for (Correction* c : corrections) c->on_prediction(p, x, gstep);
        }
        d->finalize(p, x, at);
        return p;
      }
      out = opts->guidance->combine(both.narrow(0, 0, b), both.narrow(0, b, b), gstep);
      if (partial) out = keep_cond(out.to(both.scalar_type()), both.narrow(0, 0, b));
      if (cond_variance.defined()) out = at::cat({out.to(x.scalar_type()), cond_variance}, 1);
    }
    // An unguided output in x's dtype is checked by the pass that converts it (where it can be);
    // one in another dtype before it is cast (a guided one was checked as `both`).
    bool unchecked = !guided;
    if (!guided) out = d->call_network(x, at, cond);
    if (out.scalar_type() != x.scalar_type()) {
      if (unchecked) check_output(out);
      unchecked = false;
      out = out.to(x.scalar_type());
    }
    // The conversion also computes the step's update (StepContext::update) where it can: not when
    // a correction's on_prediction hook may still change the prediction.
    int8_t nonfinite = -1;
    Prediction p =
        d->convert_checked(out, x, at, unchecked && opts->check_finite ? &nonfinite : nullptr,
                           corrections.empty() ? step.update : nullptr);
    if (unchecked) check_output(out, nonfinite);
    return finish(std::move(p));
  };
}

Tensor sample(const Sampler& sampler, const Denoiser& denoiser, const NoiseSchedule& schedule,
              const Tensor& noise, const SampleOptions& o) {
  check(noise.defined(), "sample(): the initial noise is undefined");
  check(noise.dim() >= 1 && noise.size(0) > 0,
        "sample(): the initial noise needs a batch dimension, got shape ", noise.sizes());
  check(noise.numel() > 0, "sample(): the initial noise is empty, shape ", noise.sizes());
  check(at::isFloatingType(noise.scalar_type()),
        "sample(): the initial noise must be floating point, got dtype ", noise.scalar_type());
  detail::check_conditioning_batch(o.cond, noise.size(0), "cond");
  if (o.guidance) detail::check_conditioning_batch(o.uncond, noise.size(0), "uncond");
  // With a guidance the unconditional branch must pair with the conditional one before any call,
  // even if no call ends up using it (a zero-init step, scale 1, a guidance interval).
  if (o.guidance) check_conditioning_pair(o.cond, o.uncond);
  // Per-run copies of the corrections (or the objects themselves, one run at a time): one
  // SampleOptions may serve concurrent runs.
  const detail::CorrectionRun run(o.corrections, "sample()");
  const std::vector<Correction*>& corrections = run.get();
  // A guidance with per-run state runs as a fresh copy.
  SampleOptions with_copy;
  const SampleOptions* opts = &o;
  if (o.guidance) {
    if (std::shared_ptr<const Guidance> copy = o.guidance->clone()) {
      with_copy = o;
      with_copy.guidance = std::move(copy);
      opts = &with_copy;
    }
  }
  const TimeGrid grid = detail::make_grid(schedule, o, corrections);
  std::shared_ptr<NoiseSource> noise_source =
      o.noise ? o.noise
              : std::shared_ptr<NoiseSource>(detail::default_run_noise(o.seed, noise.sizes()));
  SampleContext ctx;
  ctx.schedule = &schedule;
  ctx.noise = noise_source.get();
  ctx.corrections = corrections;
  ctx.on_step = o.on_step;
  check(o.resample_jump >= 0 && o.resample_jump <= kMaxNumSteps, "sample(): resample_jump must be ",
        "in [0, ", kMaxNumSteps, "], got ", o.resample_jump);
  check(o.resample_times >= 1 && o.resample_times <= 1000,
        "sample(): resample_times must be in [1, 1000], got ", o.resample_times);
  ctx.resample_jump = o.resample_jump;
  ctx.resample_times = o.resample_times;
  // img2img: the last floor(n * strength) steps of the grid, as diffusers' pipelines take them.
  const int64_t n_steps = static_cast<int64_t>(grid.size()) - 1;
  int64_t first_step = 0;
  const auto cdtype = Sampler::compute_dtype(noise.scalar_type());
  Tensor init, mask, noise0;
  if (o.init_image.defined()) {
    check(o.init_image.sizes() == noise.sizes(), "sample(): init_image has shape ",
          o.init_image.sizes(), " but the noise has shape ", noise.sizes());
    check(at::isFloatingType(o.init_image.scalar_type()),
          "sample(): init_image must be floating point, got dtype ", o.init_image.scalar_type());
    check(std::isfinite(o.strength) && o.strength > 0 && o.strength <= 1,
          "sample(): strength must be in (0, 1], got ", o.strength);
    const auto kept = static_cast<int64_t>(std::floor(static_cast<double>(n_steps) * o.strength));
    check(kept >= 1, "sample(): strength=", o.strength, " leaves no step of the grid's ", n_steps,
          " (floor(", n_steps, " * strength) = 0); raise strength or the step count");
    first_step = n_steps - kept;
    init = o.init_image.to(noise.device(), cdtype);
    check(at::isfinite(init).all().item<bool>(), "sample(): init_image has NaN/Inf entries");
  } else {
    check(o.strength == 1.0, "sample(): strength=", o.strength,
          " needs init_image (img2img); without one the run starts from noise");
  }
  if (o.mask.defined()) {
    check(init.defined(), "sample(): a mask (inpainting) needs init_image, the image it keeps");
    check(at::isFloatingType(o.mask.scalar_type()), "sample(): the mask must be floating point, ",
          "got dtype ", o.mask.scalar_type());
    try {
      mask = o.mask.to(noise.device(), cdtype).expand(noise.sizes());
    } catch (const c10::Error&) {
      throw Error(detail::cat("sample(): the mask of shape ", o.mask.sizes(),
                              " does not broadcast to the noise's shape ", noise.sizes()));
    }
    check(at::isfinite(mask).all().item<bool>(), "sample(): the mask has NaN/Inf entries");
  }
  const TimePoint& first = grid[static_cast<size_t>(first_step)];
  // Scaled in the sampler's compute dtype: float16 noise times a first sigma above ~16000 (EDM/VE
  // sigma_max) would overflow to Inf before the sampler upcasts.
  noise0 = noise.to(cdtype);
  const Tensor x =
      init.defined()
          ? init * first.alpha + noise0 * first.sigma
          : scaled(noise0, std::sqrt(first.alpha * first.alpha + first.sigma * first.sigma));
  // The finiteness flags are read once, after the loop. A NaN/Inf output that made the sampler
  // (or a correction) throw on the way is the real cause, so it is reported instead of that error.
  detail::FiniteLog finite;
  Tensor out;
  ModelFn model = make_model_fn(denoiser, *opts, corrections, &finite);
  if (mask.defined()) {
    // Inpainting: the kept region is the init image noised to the call's level, its x0 the image.
    const Tensor keep = 1.0 - mask;
    model = [inner = std::move(model), mask, keep, init, noise0](
                const Tensor& xt, const TimePoint& at, const StepContext& st) {
      const Tensor known = init * at.alpha + noise0 * at.sigma;
      StepContext plain = st;
      plain.update = nullptr;  // the prediction changes below: the step computes its update
      Prediction p = inner(xt * mask + known * keep, at, plain);
      p.x0 = p.x0 * mask + init * keep;
      if (at.sigma > 0) p.eps = (xt - p.x0 * at.alpha) / at.sigma;
      return p;
    };
  }
  try {
    out = sampler.sample(model, x, grid, ctx, first_step);
    if (mask.defined()) {
      const TimePoint& last = grid.back();
      out = out * mask + (init * last.alpha + noise0 * last.sigma) * (1.0 - mask);
    }
  } catch (const std::exception&) {
    finite.check();
    throw;
  }
  finite.check();
  Tensor result = out.to(noise.scalar_type());
  // Once per run: a result that overflowed the caller's dtype, or that the update arithmetic made
  // non-finite from finite network outputs, is an error rather than a silent NaN/Inf.
  // (One integer pass over a contiguous float32/float64 CPU result; LibTorch's isfinite + all +
  // item otherwise.)
  auto all_finite = [](const Tensor& r) {
    return detail::fused::can_fuse(r) ? !detail::fused::any_nonfinite(r)
                                      : at::isfinite(r).all().item<bool>();
  };
  if (o.check_finite && !all_finite(result)) {
    check_numerics(!at::isfinite(out).all().item<bool>(), "sample(): the result does not fit ",
                   noise.scalar_type(), ": its largest magnitude is ",
                   out.abs().max().item<double>(), " (finite in ", out.scalar_type(),
                   "); sample in ", out.scalar_type(), " or check the model's output scale");
    throw NumericalError(detail::cat(
        "sample(): the result has NaN/Inf although every network output was finite: the ",
        sampler.name(), " update overflowed on this grid (", grid.size() - 1,
        " steps from sigma_ve=", grid.front().sigma_ve(), ")"));
  }
  return result;
}

Prediction Guidance::combine_predictions(const Prediction&, const Prediction&, const Tensor&,
                                         const TimePoint&, const StepContext&) const {
  throw Error(detail::cat(name(), ": combine_predictions is not implemented (on_predictions() is ",
                          "false)"));
}

std::unique_ptr<Guidance> make_guidance(const std::string& name, const Config& options) {
  return Registry<Guidance>::get().make(name, options);
}

}  // namespace diffuse
