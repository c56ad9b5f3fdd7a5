// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/leading.h>.
#include <diffuse/schedules/spacing/leading.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

LeadingSpacing::LeadingSpacing(LeadingSpacingOptions o) : options(std::move(o)) {
  check(options.steps_offset() >= 0, "leading: steps_offset must be >= 0, got ",
        options.steps_offset());
}

std::unique_ptr<TimestepSpacing> LeadingSpacing::from_config(const Config& c) {
  ConfigReader r(c, "leading spacing");
  LeadingSpacingOptions o;
  o.steps_offset(r.get_int("steps_offset", o.steps_offset()));
  o.include_t_min(r.get_bool("include_t_min", o.include_t_min()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  o.lambda_min(r.get_double("lambda_min", o.lambda_min()));
  r.finish();
  return std::make_unique<LeadingSpacing>(o);
}

Config LeadingSpacing::to_config() const {
  Config c{{"steps_offset", std::to_string(options.steps_offset())},
           {"include_t_min", detail::bool_str(options.include_t_min())},
           {"final", enum_name(options.final(), final_point_names())}};
  if (std::isfinite(options.lambda_min())) c["lambda_min"] = format_double(options.lambda_min());
  return c;
}

TimeGrid LeadingSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("leading", n);
  detail::check_discrete("leading", s);
  const int64_t T = s.num_train_timesteps();
  check(n <= T, "leading: num_steps=", n, " exceeds the schedule's ", T, " training timesteps");
  const int64_t slots = options.include_t_min() ? n : n + 1;
  const int64_t ratio = detail::kept_train_steps(s, options.lambda_min(), "leading") / slots;
  check(ratio >= 1, "leading: num_steps=", n, " leaves no room between timesteps for T=", T);
  std::vector<double> ts;
  for (int64_t k = slots - 1; k >= 0; --k)
    ts.push_back(static_cast<double>(k * ratio + options.steps_offset()));
  if (!options.include_t_min()) ts.pop_back();
  for (double t : ts)
    check(t <= s.t_max(), "leading: steps_offset=", options.steps_offset(), " pushes timestep ", t,
          " past t_max=", s.t_max());
  return detail::grid_from_times(s, ts, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, LeadingSpacing, "leading",
                 "k*(T//n) + steps_offset, k = n-1..0 (diffusers 'leading', SD default)");

}  // namespace diffuse
