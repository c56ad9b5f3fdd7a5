// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/simple.h>.
#include <diffuse/schedules/spacing/simple.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

SimpleSpacing::SimpleSpacing(SimpleSpacingOptions o) : options(std::move(o)) {
  check_enum(options.final(), final_point_names(), "simple spacing: final");
}

std::unique_ptr<TimestepSpacing> SimpleSpacing::from_config(const Config& c) {
  ConfigReader r(c, "simple spacing");
  SimpleSpacingOptions o;
  o.final(r.get_enum("final", o.final(), final_point_names()));
  r.finish();
  return std::make_unique<SimpleSpacing>(o);
}

Config SimpleSpacing::to_config() const {
  return {{"final", enum_name(options.final(), final_point_names())}};
}

TimeGrid SimpleSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("simple", n);
  detail::check_discrete("simple", s);
  const int64_t T = s.num_train_timesteps();
  check(n <= T, "simple spacing: num_steps=", n, " is more than the ", T,
        " training steps it picks from");
  const double stride = static_cast<double>(T) / static_cast<double>(n);  // Python's len / steps
  std::vector<double> ts;
  ts.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    ts.push_back(static_cast<double>(T - 1 - static_cast<int64_t>(std::floor(i * stride))));
  return detail::grid_from_times(s, ts, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, SimpleSpacing, "simple",
                 "A1111 / ComfyUI 'simple': every T/n-th training step from the noisiest "
                 "(discrete schedules)");

}  // namespace diffuse
