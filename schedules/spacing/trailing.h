// SPDX-License-Identifier: Apache-2.0
// diffusers timestep_spacing="trailing" (Lin et al. 2024, Table 2): round(T - k*T/n) - 1 for
// k = 0..n-1, so the first step is always t = T-1. (diffusers builds these with a float arange,
// which for some n yields one spurious extra value; we compute the n values directly.)
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

struct TrailingSpacingOptions {
  /// "zero" (default) or "min".
  TORCH_ARG(std::string, final) = "zero";
};

class TrailingSpacing final : public TimestepSpacing {
 public:
  explicit TrailingSpacing(TrailingSpacingOptions o = {}) : options(std::move(o)) {}
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "trailing spacing");
    TrailingSpacingOptions o;
    o.final(r.get_choice("final", o.final(), detail::final_choices()));
    r.finish();
    return std::make_unique<TrailingSpacing>(o);
  }
  Config to_config() const override { return {{"final", options.final()}}; }
  std::string name() const override { return "trailing"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    detail::check_steps("trailing", n);
    detail::check_discrete("trailing", s);
    const int64_t T = s.num_train_timesteps();
    check(n <= T, "trailing: num_steps=", n, " exceeds the schedule's ", T, " training timesteps");
    const double ratio = static_cast<double>(T) / static_cast<double>(n);
    std::vector<double> ts;
    for (int64_t k = 0; k < n; ++k) ts.push_back(detail::np_round(static_cast<double>(T) - k * ratio) - 1.0);
    return detail::grid_from_times(s, ts, options.final());
  }

  TrailingSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, TrailingSpacing, "trailing",
                 "round(T - k*T/n) - 1: always starts at T-1 (Lin et al. 2024)");

}  // namespace diffuse
