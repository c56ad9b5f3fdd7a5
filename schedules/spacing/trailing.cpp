// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/trailing.h>.
#include <diffuse/schedules/spacing/trailing.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

std::unique_ptr<TimestepSpacing> TrailingSpacing::from_config(const Config& c) {
  ConfigReader r(c, "trailing spacing");
  TrailingSpacingOptions o;
  o.final(r.get_enum("final", o.final(), final_point_names()));
  r.finish();
  return std::make_unique<TrailingSpacing>(o);
}

Config TrailingSpacing::to_config() const {
  return {{"final", enum_name(options.final(), final_point_names())}};
}

TimeGrid TrailingSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("trailing", n);
  detail::check_discrete("trailing", s);
  const int64_t T = s.num_train_timesteps();
  check(n <= T, "trailing: num_steps=", n, " exceeds the schedule's ", T, " training timesteps");
  const double start = static_cast<double>(T);
  const double ratio = start / static_cast<double>(n);
  const double delta = (start + (-ratio)) - start;  // numpy arange's step, as it fills the array
  std::vector<double> ts;
  for (int64_t k = 0; k < n; ++k)
    ts.push_back(detail::np_round(start + static_cast<double>(k) * delta) - 1.0);
  return detail::grid_from_times(s, ts, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, TrailingSpacing, "trailing",
                 "round(T - k*T/n) - 1: always starts at T-1 (Lin et al. 2024)");

}  // namespace diffuse
