// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dopri5.h>.
#include <diffuse/samplers/dopri5.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

namespace {

// Dormand-Prince 5(4): stage times, the stage weights (the last row is also the 5th-order
// solution, first-same-as-last) and the difference of the 5th- and 4th-order weights.
constexpr std::array<double, 6> kStageTime{1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
constexpr std::array<std::array<double, 6>, 6> kStageWeight{{
    {1.0 / 5, 0, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84},
}};
constexpr std::array<double, 7> kErrorWeight{35.0 / 384 - 1951.0 / 21600,
                                             0.0,
                                             500.0 / 1113 - 22642.0 / 50085,
                                             125.0 / 192 - 451.0 / 720,
                                             -2187.0 / 6784 + 12231.0 / 42400,
                                             11.0 / 84 - 649.0 / 6300,
                                             -1.0 / 60};

/// The RMS norm of every element (torchdiffeq's _rms_norm), on the host.
double rms(const Tensor& t) { return t.square().mean().sqrt().item<double>(); }

/// One ODE in the chosen space: the noise level of a time point along it, the time point at a
/// level, the state variable y of x, and the slope dy/du with u = level(now) - level (so that u
/// increases from 0 along the run, as SiT's t).
struct OdeSpace {
  bool flow = true;
  const NoiseSchedule* schedule = nullptr;

  double level(const TimePoint& p) const {
    return flow ? p.sigma / (p.alpha + p.sigma) : p.sigma_ve();
  }
  TimePoint at(double lv) const {
    if (flow) {
      const double lambda = lv >= 1.0   ? -std::numeric_limits<double>::infinity()
                            : lv <= 0.0 ? std::numeric_limits<double>::infinity()
                                        : std::log1p(-lv) - std::log(lv);
      return schedule->at_log_snr(lambda);
    }
    return schedule->at_sigma_ve(lv);
  }
  double scale(const TimePoint& p) const { return flow ? p.alpha + p.sigma : p.alpha; }
  Tensor slope(const Prediction& p) const {
    return flow ? p.x0 - p.eps : p.eps.neg();  // -(eps - x0), -eps
  }
};

}  // namespace

const EnumNames<Dopri5CleanEnd>& dopri5_clean_end_names() {
  static const EnumNames<Dopri5CleanEnd> names{{"x0", Dopri5CleanEnd::x0},
                                               {"integrate", Dopri5CleanEnd::integrate}};
  return names;
}

Dopri5Sampler::Dopri5Sampler(Dopri5Options o) : options(o) {
  check(std::isfinite(options.atol()) && options.atol() >= 0 && std::isfinite(options.rtol()) &&
            options.rtol() >= 0 && options.atol() + options.rtol() > 0,
        "dopri5: atol and rtol must be finite, >= 0 and not both 0, got atol=", options.atol(),
        " rtol=", options.rtol());
  check(options.max_steps() >= 1, "dopri5: max_steps must be >= 1, got ", options.max_steps());
  check_enum(options.space(), heun_space_names(), "dopri5: space");
  check_enum(options.clean_end(), dopri5_clean_end_names(), "dopri5: clean_end");
}

std::unique_ptr<Sampler> Dopri5Sampler::from_config(const Config& c) {
  ConfigReader r(c, "dopri5");
  Dopri5Options o;
  o.atol(r.get_double("atol", o.atol()));
  o.rtol(r.get_double("rtol", o.rtol()));
  o.space(r.get_enum("space", o.space(), heun_space_names()));
  o.max_steps(r.get_int("max_steps", o.max_steps()));
  o.clean_end(r.get_enum("clean_end", o.clean_end(), dopri5_clean_end_names()));
  r.finish();
  return std::make_unique<Dopri5Sampler>(o);
}

Config Dopri5Sampler::to_config() const {
  return {{"atol", format_double(options.atol())},
          {"rtol", format_double(options.rtol())},
          {"space", enum_name(options.space(), heun_space_names())},
          {"max_steps", std::to_string(options.max_steps())},
          {"clean_end", enum_name(options.clean_end(), dopri5_clean_end_names())}};
}

StepResult Dopri5Sampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                    const History&, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(ctx.schedule != nullptr, "dopri5: places its stages between grid points and needs the ",
        "schedule (SampleContext.schedule), which is not set");
  OdeSpace sp;
  sp.schedule = ctx.schedule;
  sp.flow = options.space() == HeunSpace::flow ||
            (options.space() == HeunSpace::automatic && ctx.schedule->rectified_flow());
  check(now.sigma > 0, "dopri5: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
  check(sp.flow || now.alpha > 0, "dopri5: step ", st.index, " starts at alpha = 0 (t=", now.t,
        ", sigma_ve = inf), which space=ve cannot; use ", "space=flow");

  // Where the integration stops: `next`, or for a clean end with clean_end=x0, the smallest
  // trained level (then x0 there is the result).
  TimePoint stop = next;
  bool x0_at_stop = false;
  if (next.is_clean() && options.clean_end() == Dopri5CleanEnd::x0) {
    stop = ctx.schedule->at(ctx.schedule->t_min());
    x0_at_stop = true;
  }
  const double level0 = sp.level(now);
  const double u_end = x0_at_stop ? level0 - sp.level(stop) : level0 - sp.level(next);
  const Prediction p0 = model(x, now, st);
  if (x0_at_stop && !(u_end > 0)) return {scaled(p0.x0, next.alpha), p0};  // already below it
  check(u_end >= 0, "dopri5: step ", st.index, " goes up in noise level (t=", now.t, " to ", next.t,
        ")");
  if (u_end == 0) return {x, p0};  // a zero-length interval (final=min repeats the last point)

  auto point = [&](double u) {
    if (u == 0.0) return now;
    if (u == u_end) return stop;
    return sp.at(level0 - u);
  };
  Prediction last;  // the prediction at the current state
  auto eval = [&](double u, const Tensor& yu, Prediction* keep) {
    const TimePoint tp = point(u);
    const double n = sp.scale(tp);
    Prediction p = model(scaled(yu, n), tp, st);
    Tensor f = sp.slope(p);
    if (keep != nullptr) *keep = std::move(p);
    return f;
  };

  const double n0 = sp.scale(now);
  Tensor y = divided(x, n0);
  Tensor f = sp.slope(p0);
  last = p0;
  const double atol = options.atol(), rtol = options.rtol();

  // Hairer's starting step (Solving ODEs I, II.4; torchdiffeq _select_initial_step, order 4).
  double h = 0;
  {
    const Tensor scale = y.abs().mul_(rtol).add_(atol);
    const double d0 = rms(y / scale), d1 = rms(f / scale);
    check(std::isfinite(d0) && std::isfinite(d1), "dopri5: step ", st.index, " (t=", now.t,
          "): non-finite state or slope at the interval's start (the model returned inf or NaN)");
    double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h0 = std::min(h0, u_end);
    Tensor y1 = y.clone();
    add_scaled_(y1, f, h0);
    const Tensor f1 = eval(h0, y1, nullptr);
    const double d2 = rms((f1 - f) / scale) / h0;
    check(std::isfinite(d2), "dopri5: step ", st.index, " (t=", now.t,
          "): non-finite slope at the first-step probe (the model returned inf or NaN)");
    const double h1 = (d1 <= 1e-15 && d2 <= 1e-15) ? std::max(1e-6, h0 * 1e-3)
                                                   : std::pow(0.01 / std::max(d1, d2), 1.0 / 5);
    h = std::min(100 * h0, h1);
  }

  double u = 0;
  std::vector<Tensor> k(7);
  Prediction stage_pred;
  for (int64_t attempt = 0; u < u_end; ++attempt) {
    check(attempt < options.max_steps(), "dopri5: step ", st.index, " (t=", now.t, " to ", next.t,
          ") took more than max_steps=", options.max_steps(),
          " step attempts; the step size reached ", h, " at ", u, " of ", u_end,
          " (raise max_steps or atol/rtol)");
    check(std::isfinite(h) && h > 0, "dopri5: step ", st.index, " (t=", now.t,
          "): the step size became ", h, " at ", u, " of ", u_end);
    double dt = h;
    double u1 = u + dt;
    if (u1 >= u_end) {  // end on the interval's end (torchdiffeq's step_t)
      u1 = u_end;
      dt = u_end - u;
    }
    check(u + dt > u, "dopri5: step ", st.index, " (t=", now.t, "): the step size ", dt,
          " underflows at ", u, " of ", u_end);
    k[0] = f;
    Tensor yi;
    for (size_t i = 0; i < kStageTime.size(); ++i) {
      yi = y.clone();
      for (size_t j = 0; j <= i; ++j)
        if (kStageWeight[i][j] != 0.0) add_scaled_(yi, k[j], kStageWeight[i][j] * dt);
      const double ui = kStageTime[i] == 1.0 ? u1 : u + kStageTime[i] * dt;
      k[i + 1] = eval(ui, yi, i + 1 == kStageTime.size() ? &stage_pred : nullptr);
    }
    Tensor err = scaled(k[0], kErrorWeight[0] * dt);
    for (size_t j = 1; j < k.size(); ++j)
      if (kErrorWeight[j] != 0.0) add_scaled_(err, k[j], kErrorWeight[j] * dt);
    const Tensor tol = y.abs().maximum(yi.abs()).mul_(rtol).add_(atol);
    const double ratio = rms(err.div_(tol));
    check(std::isfinite(ratio), "dopri5: step ", st.index, " (t=", now.t,
          "): non-finite error estimate at ", u, " of ", u_end,
          " (the model returned inf or NaN, or the state overflowed)");
    if (ratio <= 1) {
      u = u1;
      y = std::move(yi);
      f = k[6];
      last = stage_pred;
    }
    // torchdiffeq _optimal_step_size: safety 0.9, growth <= 10, shrink >= 0.2 (none after an
    // accepted step with ratio < 1), exponent 1/5.
    if (ratio == 0) {
      h = dt * 10;
    } else {
      const double shrink = ratio < 1 ? 1.0 : 0.2;
      h = dt * std::min(10.0, std::max(0.9 * std::pow(ratio, -1.0 / 5), shrink));
    }
  }
  if (x0_at_stop) return {scaled(last.x0, next.alpha), p0};
  return {scale_(y, sp.scale(next)), p0};
}

DIFFUSE_REGISTER_SAMPLER(Dopri5Sampler, "dopri5",
                         "adaptive Dormand-Prince 5(4) ODE solver (SiT's default; atol, rtol)");

}  // namespace diffuse
