// SPDX-License-Identifier: Apache-2.0
// diffusers timestep_spacing="trailing" (Lin et al. 2024, Table 2): round(T - k*T/n) - 1 for
// k = 0..n-1, so the first step is always t = T-1. Bit-compatible with diffusers' (58eb52c)
// np.round(np.arange(T, 0, -T/n)) - 1: numpy's float arange fills start + k*delta with
// delta = (T - T/n) - T, which rounds differently from T - k*T/n for some n (T=1000: n=48 gives
// 936 at k=3, not 937). numpy's length ceil(T / (T/n)) is n+1 for some n (T=1000: n=61, 103, ...);
// the extra value is always -1, which diffusers then indexes as alphas_cumprod[-1] (the noisiest
// point). We keep the first n values.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
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
    const double start = static_cast<double>(T);
    const double ratio = start / static_cast<double>(n);
    const double delta = (start + (-ratio)) - start;  // numpy arange's step, as it fills the array
    std::vector<double> ts;
    for (int64_t k = 0; k < n; ++k) ts.push_back(detail::np_round(start + static_cast<double>(k) * delta) - 1.0);
    return detail::grid_from_times(s, ts, options.final());
  }

  TrailingSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, TrailingSpacing, "trailing",
                 "round(T - k*T/n) - 1: always starts at T-1 (Lin et al. 2024)");

}  // namespace diffuse
