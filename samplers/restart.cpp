// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/restart.h>.
#include <diffuse/samplers/restart.h>

#include <cmath>
#include <limits>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/churn.h>
#include <diffuse/schedules/detail/grid.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

RestartSampler::RestartSampler(RestartOptions o) : options(o) {
  const double lo = options.restart_min(), hi = options.restart_max();
  check(std::isfinite(lo) && lo >= 0, "restart: restart_min must be finite and >= 0, got ", lo);
  check(std::isfinite(hi) && hi > lo, "restart: restart_max must be finite and > restart_min (", lo,
        "), got ", hi);
  check(options.restart_steps() >= 1, "restart: restart_steps must be >= 1, got ",
        options.restart_steps());
  check(options.restart_times() >= 0 && options.restart_times() <= 1000,
        "restart: restart_times must be in [0, 1000], got ", options.restart_times());
  check(options.restart_steps() <= kMaxNumSteps, "restart: restart_steps must be <= ", kMaxNumSteps,
        ", got ", options.restart_steps());
  check(std::isfinite(options.rho()) && options.rho() > 0,
        "restart: rho must be finite and > 0, got ", options.rho());
  check(std::isfinite(options.s_noise()) && options.s_noise() >= 0,
        "restart: s_noise must be finite and >= 0, got ", options.s_noise());
  check_enum(options.space(), heun_space_names(), "restart: space");
}

std::unique_ptr<Sampler> RestartSampler::from_config(const Config& c) {
  ConfigReader r(c, "restart");
  RestartOptions o;
  o.restart_min(r.get_double("restart_min", o.restart_min()));
  o.restart_max(r.get_double("restart_max", o.restart_max()));
  o.restart_steps(r.get_int("restart_steps", o.restart_steps()));
  o.restart_times(r.get_int("restart_times", o.restart_times()));
  o.rho(r.get_double("rho", o.rho()));
  o.s_noise(r.get_double("s_noise", o.s_noise()));
  o.space(r.get_enum("space", o.space(), heun_space_names()));
  r.finish();
  return std::make_unique<RestartSampler>(o);
}

Config RestartSampler::to_config() const {
  return {{"restart_min", format_double(options.restart_min())},
          {"restart_max", format_double(options.restart_max())},
          {"restart_steps", std::to_string(options.restart_steps())},
          {"restart_times", std::to_string(options.restart_times())},
          {"rho", format_double(options.rho())},
          {"s_noise", format_double(options.s_noise())},
          {"space", enum_name(options.space(), heun_space_names())}};
}

std::pair<int64_t, int64_t> RestartSampler::restart_indices(const TimeGrid& grid) const {
  // argmin |sigma_ve - value|, the first index on ties (torch.argmin); inf (pure noise) is never
  // nearest unless every point is.
  const auto nearest = [&grid](double value) {
    int64_t best = 0;
    double best_d = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < grid.size(); ++i) {
      const double d = std::abs(grid[i].sigma_ve() - value);
      if (d < best_d) {
        best_d = d;
        best = static_cast<int64_t>(i);
      }
    }
    return best;
  };
  return {nearest(options.restart_min()), nearest(options.restart_max())};
}

int64_t RestartSampler::model_calls_on(const TimeGrid& grid) const {
  // Heun: two calls per step, one onto a clean point.
  const auto heun_calls = [](const TimePoint& next) -> int64_t { return next.is_clean() ? 1 : 2; };
  int64_t calls = 0;
  for (size_t i = 1; i < grid.size(); ++i) calls += heun_calls(grid[i]);
  const auto [lo, hi] = restart_indices(grid);
  if (lo >= 1 && hi < lo)
    calls += options.restart_times() *
             (2 * (options.restart_steps() - 1) + heun_calls(grid[static_cast<size_t>(lo)]));
  return calls;
}

StepResult RestartSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                     const History& history, SampleContext& ctx) const {
  const HeunSampler heun(HeunOptions().space(options.space()));
  StepResult out = heun.step(model, x, st, history, ctx);
  if (options.restart_times() == 0 || st.grid == nullptr) return out;
  const TimeGrid& grid = *st.grid;
  const auto [lo, hi] = restart_indices(grid);
  if (st.index + 1 != lo || hi >= lo) return out;
  const TimePoint& bottom = grid[static_cast<size_t>(lo)];
  const TimePoint& top = grid[static_cast<size_t>(hi)];
  check(top.alpha > 0, "restart: the restart interval's upper end (grid point ", hi, ", t=", top.t,
        ") has alpha = 0 (pure noise); lower restart_max");
  // The sub-grid: Karras from top down to bottom, its ends exactly the grid points.
  const double s_lo = bottom.sigma_ve(), s_hi = top.sigma_ve();
  const std::vector<double> ramp =
      detail::karras_ramp(s_lo, s_hi, options.rho(), options.restart_steps() + 1);
  TimeGrid sub;
  sub.reserve(ramp.size());
  sub.push_back(top);
  for (size_t k = 1; k + 1 < ramp.size(); ++k)
    sub.push_back(detail::off_grid_point(ctx, ramp[k], "restart", "a restart sub-grid point"));
  sub.push_back(bottom);
  const ForwardTransition up = forward_transition(bottom, top);
  const double jump = options.s_noise() * up.std;
  Tensor xr = out.x;
  for (int64_t r = 0; r < options.restart_times(); ++r) {
    // Forward noise from bottom to top (s_noise scales it).
    xr = scaled(xr, up.scale);
    if (jump > 0) ctx.add_randn_(xr, jump);
    for (size_t k = 0; k + 1 < sub.size(); ++k) {
      StepContext sc = st;
      sc.now = sub[k];
      sc.next = sub[k + 1];
      xr = heun.step(model, xr, sc, history, ctx).x;
    }
  }
  out.x = xr;
  return out;
}

DIFFUSE_REGISTER_SAMPLER(RestartSampler, "restart",
                         "Restart sampling (Xu et al. 2023; A1111's restart_sampler): Heun plus "
                         "noise-and-re-solve restarts on [restart_min, restart_max]");
DIFFUSE_REGISTER_SAMPLER_ALIAS(RestartA1111, "Restart", "restart", {},
                               "A1111's label for restart (A1111 counts restart steps in --steps: "
                               "see restart.h)");

}  // namespace diffuse
