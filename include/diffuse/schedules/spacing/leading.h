// SPDX-License-Identifier: Apache-2.0
// diffusers timestep_spacing="leading" (Stable Diffusion's default): times k * (T // n) for
// k = n-1..0, plus steps_offset. include_t_min=false uses n+1 slots of T // (n+1) and drops the
// last (DPM-Solver's convention). Never visits t = T-1, so unsuitable for zero terminal SNR.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

struct LeadingSpacingOptions {
  /// Added to every timestep (SD uses 1). Default 0; >= 0.
  TORCH_ARG(int64_t, steps_offset) = 0;
  /// See linspace. Default true.
  TORCH_ARG(bool, include_t_min) = true;
  /// "zero" (default) or "min".
  TORCH_ARG(std::string, final) = "zero";
};

class LeadingSpacing final : public TimestepSpacing {
 public:
  explicit LeadingSpacing(LeadingSpacingOptions o = {}) : options(std::move(o)) {
    check(options.steps_offset() >= 0, "leading: steps_offset must be >= 0, got ", options.steps_offset());
  }
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "leading spacing");
    LeadingSpacingOptions o;
    o.steps_offset(r.get_int("steps_offset", o.steps_offset()));
    o.include_t_min(r.get_bool("include_t_min", o.include_t_min()));
    o.final(r.get_choice("final", o.final(), detail::final_choices()));
    r.finish();
    return std::make_unique<LeadingSpacing>(o);
  }
  Config to_config() const override {
    return {{"steps_offset", std::to_string(options.steps_offset())},
            {"include_t_min", detail::bool_str(options.include_t_min())},
            {"final", options.final()}};
  }
  std::string name() const override { return "leading"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    detail::check_steps("leading", n);
    detail::check_discrete("leading", s);
    const int64_t T = s.num_train_timesteps();
    check(n <= T, "leading: num_steps=", n, " exceeds the schedule's ", T, " training timesteps");
    const int64_t slots = options.include_t_min() ? n : n + 1;
    const int64_t ratio = T / slots;
    check(ratio >= 1, "leading: num_steps=", n, " leaves no room between timesteps for T=", T);
    std::vector<double> ts;
    for (int64_t k = slots - 1; k >= 0; --k) ts.push_back(static_cast<double>(k * ratio + options.steps_offset()));
    if (!options.include_t_min()) ts.pop_back();
    for (double t : ts)
      check(t <= s.t_max(), "leading: steps_offset=", options.steps_offset(), " pushes timestep ", t,
            " past t_max=", s.t_max());
    return detail::grid_from_times(s, ts, options.final());
  }

  LeadingSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, LeadingSpacing, "leading",
                 "k*(T//n) + steps_offset, k = n-1..0 (diffusers 'leading', SD default)");

}  // namespace diffuse
