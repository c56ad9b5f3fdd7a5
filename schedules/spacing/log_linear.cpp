// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/log_linear.h>.
#include <diffuse/schedules/spacing/log_linear.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

LogLinearSpacing::LogLinearSpacing(LogLinearSpacingOptions o) : options(std::move(o)) {
  const std::string& ts = options.spacing();
  check(ts == "linspace" || ts == "leading" || ts == "trailing",
        "log_linear: spacing must be linspace, leading or trailing, got '", ts, "'");
  check(options.steps_offset() >= 0, "log_linear: steps_offset must be >= 0, got ",
        options.steps_offset());
  check(options.steps_offset() == 0 || ts == "leading",
        "log_linear: steps_offset=", options.steps_offset(),
        " applies to spacing=leading only (spacing=", ts, ")");
}

std::unique_ptr<TimestepSpacing> LogLinearSpacing::from_config(const Config& c) {
  ConfigReader r(c, "log_linear spacing");
  LogLinearSpacingOptions o;
  o.spacing(r.get_string("spacing", o.spacing()));
  o.steps_offset(r.get_int("steps_offset", o.steps_offset()));
  r.finish();
  return std::make_unique<LogLinearSpacing>(o);
}

Config LogLinearSpacing::to_config() const {
  return {{"spacing", options.spacing()}, {"steps_offset", std::to_string(options.steps_offset())}};
}

TimeGrid LogLinearSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("log_linear", n);
  detail::check_discrete("log_linear", s);
  Config c;
  if (options.spacing() == "leading") c["steps_offset"] = std::to_string(options.steps_offset());
  const TimeGrid times = Registry<TimestepSpacing>::get().make(options.spacing(), c)->grid(s, n);
  double lo = 0.0, hi = 0.0;
  detail::sigma_range(s, lo, hi, "log_linear");
  const std::vector<double> sigmas = detail::exponential_ramp(lo, hi, n + 1);
  TimeGrid g = detail::grid_from_sigmas(s, sigmas, false, false);
  for (int64_t i = 0; i < n; ++i)
    g[static_cast<size_t>(i)].t = times[static_cast<size_t>(i)].t;  // the spacing's model time
  g.back() = s.at(s.t_min());                                       // sigma_min exactly
  return g;
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, LogLinearSpacing, "log_linear",
                 "diffusers' interpolation_type=log_linear: a timestep spacing's model times on "
                 "n + 1 log-uniform noise levels ending at sigma_min (parity only)");

}  // namespace diffuse
