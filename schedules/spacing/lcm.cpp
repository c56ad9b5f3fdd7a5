// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/lcm.h>.
#include <diffuse/schedules/spacing/lcm.h>

#include <cmath>
#include <vector>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

LcmSpacing::LcmSpacing(LcmSpacingOptions o) : options(std::move(o)) {
  check(options.original_steps() >= 0, "lcm spacing: original_steps must be >= 0 (0: every ",
        "training step), got ", options.original_steps());
  check_enum(options.final(), final_point_names(), "lcm spacing: final");
  check(std::isfinite(options.strength()) && options.strength() > 0 && options.strength() <= 1,
        "lcm spacing: strength must be in (0, 1], got ", options.strength());
}

std::unique_ptr<TimestepSpacing> LcmSpacing::from_config(const Config& c) {
  ConfigReader r(c, "lcm spacing");
  LcmSpacingOptions o;
  o.original_steps(r.get_int("original_steps", o.original_steps()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  o.strength(r.get_double("strength", o.strength()));
  r.finish();
  return std::make_unique<LcmSpacing>(o);
}

Config LcmSpacing::to_config() const {
  Config c{{"original_steps", std::to_string(options.original_steps())},
           {"final", enum_name(options.final(), final_point_names())}};
  if (options.strength() != 1.0) c["strength"] = format_double(options.strength());
  return c;
}

TimeGrid LcmSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("lcm", n);
  detail::check_discrete("lcm", s);
  const int64_t T = s.num_train_timesteps();
  const int64_t orig = options.original_steps();
  check(orig <= T, "lcm spacing: original_steps=", orig, " is more than the schedule's ", T,
        " training steps");
  // Python's int(original_steps * strength): the product in double, truncated.
  const int64_t len =
      static_cast<int64_t>(static_cast<double>(orig == 0 ? T : orig) * options.strength());
  check(n <= len, "lcm spacing: num_steps=", n, " is more than the ", len,
        orig == 0 ? " training steps" : " original_steps",
        options.strength() < 1 ? " that strength=" + format_double(options.strength()) + " keeps"
                               : std::string(),
        " to pick from");
  const int64_t k = orig == 0 ? 1 : T / orig;
  const int64_t first = orig == 0 ? 0 : k - 1;  // origin[j] = first + j * k, j = 0 .. len - 1
  // numpy.linspace(0, len, n, endpoint=False): i * (len / n), floored.
  const double stride = static_cast<double>(len) / static_cast<double>(n);
  std::vector<double> ts;
  ts.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto idx = static_cast<int64_t>(std::floor(static_cast<double>(i) * stride));
    ts.push_back(static_cast<double>(first + (len - 1 - idx) * k));
  }
  return detail::grid_from_times(s, ts, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, LcmSpacing, "lcm",
                 "LCM / TCD: n of the distillation's original_steps training steps (discrete "
                 "schedules)");

}  // namespace diffuse
