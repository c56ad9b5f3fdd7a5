// SPDX-License-Identifier: Apache-2.0
// Karras et al. 2022, Eq. (5): sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
// sigma_max^(1/rho)))^rho, i = 0..n-1, then the final point. sigma_min / sigma_max default to the
// schedule's own range. Checked against: k-diffusion get_sigmas_karras (4601bf0), diffusers
// _convert_to_karras (58eb52c).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct KarrasSpacingOptions {
  /// Curvature. Default 7 (EDM); > 0.
  TORCH_ARG(double, rho) = 7.0;
  /// Noise range in sigma_ve; 0 (default) takes the schedule's sigma at t_min / t_max.
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Round discrete model times (diffusers' DPM-Solver does, Euler does not). Default false.
  TORCH_ARG(bool, round_t) = false;
  /// Truncate discrete model times to integers (diffusers' DPM-Solver casts its exponential, beta
  /// and cosine-schedule Karras times to int64). Default false; not with round_t.
  TORCH_ARG(bool, trunc_t) = false;
  /// "zero" (default) or "min" (lands on sigma_min, diffusers' final_sigmas_type="sigma_min").
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
  /// Where sigma_min / sigma_max default from (when 0): "schedule" (default), the schedule's
  /// t_min / t_max; "linspace", "leading" (with range_steps_offset) or "trailing", that spacing's
  /// first and last timesteps at the same step count, as diffusers' Euler / Heun / LMS / KDPM2
  /// schedulers take them with use_karras_sigmas and the like.
  TORCH_ARG(std::string, range) = "schedule";
  TORCH_ARG(int64_t, range_steps_offset) = 0;
};

class KarrasSpacing final : public TimestepSpacing {
 public:
  explicit KarrasSpacing(KarrasSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "karras"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  KarrasSpacingOptions options;
};

}  // namespace diffuse
