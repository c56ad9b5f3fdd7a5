// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/linspace.h>.
#include <diffuse/schedules/spacing/linspace.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

std::unique_ptr<TimestepSpacing> LinspaceSpacing::from_config(const Config& c) {
  ConfigReader r(c, "linspace spacing");
  LinspaceSpacingOptions o;
  o.round(r.get_bool("round", o.round()));
  o.include_t_min(r.get_bool("include_t_min", o.include_t_min()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  o.lambda_min(r.get_double("lambda_min", o.lambda_min()));
  r.finish();
  return std::make_unique<LinspaceSpacing>(o);
}

Config LinspaceSpacing::to_config() const {
  Config c{{"round", detail::bool_str(options.round())},
           {"include_t_min", detail::bool_str(options.include_t_min())},
           {"final", enum_name(options.final(), final_point_names())}};
  if (std::isfinite(options.lambda_min())) c["lambda_min"] = format_double(options.lambda_min());
  return c;
}

TimeGrid LinspaceSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("linspace", n);
  const int64_t T = s.num_train_timesteps();
  check(T == 0 || n <= T, "linspace: num_steps=", n, " exceeds the schedule's ", T,
        " training timesteps");
  const int64_t points = options.include_t_min() ? n : n + 1;
  const int64_t kept = detail::kept_train_steps(s, options.lambda_min(), "linspace");
  const double t_top = kept < T ? static_cast<double>(kept - 1) : s.t_max();
  std::vector<double> ts = detail::np_linspace(s.t_min(), t_top, points);
  std::reverse(ts.begin(), ts.end());
  if (!options.include_t_min()) ts.pop_back();
  if (T > 0 && options.round())
    for (double& t : ts) t = detail::np_round(t);
  return detail::grid_from_times(s, ts, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, LinspaceSpacing, "linspace",
                 "evenly spaced model times from t_max to t_min (diffusers 'linspace')");

}  // namespace diffuse
