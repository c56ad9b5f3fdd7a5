// SPDX-License-Identifier: Apache-2.0
// Noise levels uniform in log sigma (= uniform in log-SNR): sigma_i = exp(linspace(log sigma_max,
// log sigma_min, n)), then the final point. This is k-diffusion's get_sigmas_exponential and
// diffusers' use_exponential_sigmas / use_lu_lambdas (DPM-Solver's "logSNR" skip type).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct ExponentialSpacingOptions {
  /// Noise range in sigma_ve; 0 (default) takes the schedule's own range.
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Round discrete model times. Default false.
  TORCH_ARG(bool, round_t) = false;
  /// Truncate discrete model times to integers (diffusers' DPM-Solver casts its exponential, beta
  /// and cosine-schedule Karras times to int64). Default false; not with round_t.
  TORCH_ARG(bool, trunc_t) = false;
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
  /// Where sigma_min / sigma_max default from (when 0): "schedule" (default), the schedule's
  /// t_min / t_max; "linspace", "leading" (with range_steps_offset) or "trailing", that spacing's
  /// first and last timesteps at the same step count, as diffusers' Euler / Heun / LMS / KDPM2
  /// schedulers take them with use_karras_sigmas and the like.
  TORCH_ARG(std::string, range) = "schedule";
  TORCH_ARG(int64_t, range_steps_offset) = 0;
};

class ExponentialSpacing final : public TimestepSpacing {
 public:
  explicit ExponentialSpacing(ExponentialSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "exponential"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  ExponentialSpacingOptions options;
};

}  // namespace diffuse
