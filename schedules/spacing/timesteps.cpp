// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/timesteps.h>.
#include <diffuse/schedules/spacing/timesteps.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

TimestepsSpacing::TimestepsSpacing(TimestepsSpacingOptions o) : options(std::move(o)) {
  const auto& ts = options.timesteps();
  check(!ts.empty(), "timesteps spacing: the list of timesteps is empty");
  for (size_t i = 0; i < ts.size(); ++i) {
    check(std::isfinite(ts[i]), "timesteps spacing: timesteps[", i, "]=", ts[i], " is not finite");
    if (i > 0)
      check(ts[i] < ts[i - 1],
            "timesteps spacing: timesteps must be strictly descending, but timesteps[", i,
            "]=", ts[i], " >= timesteps[", i - 1, "]=", ts[i - 1]);
  }
}

std::unique_ptr<TimestepSpacing> TimestepsSpacing::from_config(const Config& c) {
  ConfigReader r(c, "timesteps spacing");
  TimestepsSpacingOptions o;
  o.timesteps(r.get_doubles("timesteps"));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  r.finish();
  return std::make_unique<TimestepsSpacing>(o);
}

Config TimestepsSpacing::to_config() const {
  std::string v;
  for (double t : options.timesteps()) v += (v.empty() ? "" : ";") + format_double(t);
  return {{"timesteps", v}, {"final", enum_name(options.final(), final_point_names())}};
}

TimeGrid TimestepsSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  const auto& ts = options.timesteps();
  check(n == static_cast<int64_t>(ts.size()), "timesteps spacing: num_steps=", n, " but ",
        ts.size(), " timesteps were given");
  for (size_t i = 0; i < ts.size(); ++i)
    check(ts[i] >= s.t_min() && ts[i] <= s.t_max(), "timesteps spacing: timesteps[", i, "]=", ts[i],
          " is outside the schedule's range [", s.t_min(), ", ", s.t_max(), "]");
  return detail::grid_from_times(s, ts, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, TimestepsSpacing, "timesteps",
                 "a user-supplied list of model times");

}  // namespace diffuse
