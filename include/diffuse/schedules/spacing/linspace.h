// SPDX-License-Identifier: Apache-2.0
// Evenly spaced model times from t_max down to t_min (diffusers timestep_spacing="linspace").
// include_t_min=true: num_steps times linspace(t_min, t_max, n) (DDIM, DDPM, Euler, Heun).
// include_t_min=false: linspace over n+1 points with t_min dropped (DPM-Solver's convention), so
// with final=min the grid is exactly the n+1 linspace points. Discrete times are rounded half to
// even (numpy) unless round=false (diffusers' Euler/Heun keep fractional times).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

struct LinspaceSpacingOptions {
  /// Round discrete model times to integers (half to even). Default true; ignored for continuous schedules.
  TORCH_ARG(bool, round) = true;
  /// Evaluate the model at t_min (true) or space n+1 points and drop t_min (false). Default true.
  TORCH_ARG(bool, include_t_min) = true;
  /// "zero" (default) or "min": where the last step lands.
  TORCH_ARG(std::string, final) = "zero";
};

class LinspaceSpacing final : public TimestepSpacing {
 public:
  explicit LinspaceSpacing(LinspaceSpacingOptions o = {}) : options(std::move(o)) {}
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "linspace spacing");
    LinspaceSpacingOptions o;
    o.round(r.get_bool("round", o.round()));
    o.include_t_min(r.get_bool("include_t_min", o.include_t_min()));
    o.final(r.get_choice("final", o.final(), detail::final_choices()));
    r.finish();
    return std::make_unique<LinspaceSpacing>(o);
  }
  Config to_config() const override {
    return {{"round", detail::bool_str(options.round())},
            {"include_t_min", detail::bool_str(options.include_t_min())},
            {"final", options.final()}};
  }
  std::string name() const override { return "linspace"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    detail::check_steps("linspace", n);
    const int64_t T = s.num_train_timesteps();
    check(T == 0 || n <= T, "linspace: num_steps=", n, " exceeds the schedule's ", T, " training timesteps");
    const int64_t points = options.include_t_min() ? n : n + 1;
    std::vector<double> ts = detail::np_linspace(s.t_min(), s.t_max(), points);
    std::reverse(ts.begin(), ts.end());
    if (!options.include_t_min()) ts.pop_back();
    if (T > 0 && options.round())
      for (double& t : ts) t = detail::np_round(t);
    return detail::grid_from_times(s, ts, options.final());
  }

  LinspaceSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, LinspaceSpacing, "linspace",
                 "evenly spaced model times from t_max to t_min (diffusers 'linspace')");

}  // namespace diffuse
