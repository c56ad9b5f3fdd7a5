// SPDX-License-Identifier: Apache-2.0
// User-supplied model times (diffusers' set_timesteps(timesteps=[...])), strictly descending,
// each in [t_min, t_max]; num_steps must equal their count. Then the final point.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

struct TimestepsSpacingOptions {
  /// The model times, noisiest first (required, strictly descending).
  TORCH_ARG(std::vector<double>, timesteps) = {};
  /// "zero" (default) or "min".
  TORCH_ARG(std::string, final) = "zero";
};

class TimestepsSpacing final : public TimestepSpacing {
 public:
  explicit TimestepsSpacing(TimestepsSpacingOptions o) : options(std::move(o)) {
    const auto& ts = options.timesteps();
    check(!ts.empty(), "timesteps spacing: the list of timesteps is empty");
    for (size_t i = 0; i < ts.size(); ++i) {
      check(std::isfinite(ts[i]), "timesteps spacing: timesteps[", i, "]=", ts[i], " is not finite");
      if (i > 0)
        check(ts[i] < ts[i - 1], "timesteps spacing: timesteps must be strictly descending, but timesteps[", i,
              "]=", ts[i], " >= timesteps[", i - 1, "]=", ts[i - 1]);
    }
  }
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "timesteps spacing");
    TimestepsSpacingOptions o;
    o.timesteps(r.get_doubles("timesteps"));
    o.final(r.get_choice("final", o.final(), detail::final_choices()));
    r.finish();
    return std::make_unique<TimestepsSpacing>(o);
  }
  Config to_config() const override {
    std::string v;
    for (double t : options.timesteps()) v += (v.empty() ? "" : ";") + format_double(t);
    return {{"timesteps", v}, {"final", options.final()}};
  }
  std::string name() const override { return "timesteps"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    const auto& ts = options.timesteps();
    check(n == static_cast<int64_t>(ts.size()), "timesteps spacing: num_steps=", n, " but ", ts.size(),
          " timesteps were given");
    for (size_t i = 0; i < ts.size(); ++i)
      check(ts[i] >= s.t_min() && ts[i] <= s.t_max(), "timesteps spacing: timesteps[", i, "]=", ts[i],
            " is outside the schedule's range [", s.t_min(), ", ", s.t_max(), "]");
    return detail::grid_from_times(s, ts, options.final());
  }

  TimestepsSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, TimestepsSpacing, "timesteps", "a user-supplied list of model times");

}  // namespace diffuse
