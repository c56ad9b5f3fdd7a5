// SPDX-License-Identifier: Apache-2.0
// Beta sampling (Lee, Lin, Chen, "Beta Sampling is All You Need", 2024): noise levels at the
// quantiles of Beta(alpha, beta), linear in sigma_ve between the range's ends,
//   sigma_i = sigma_min + ppf(1 - i / (n - 1); alpha, beta) (sigma_max - sigma_min), i = 0..n-1,
// then the final point. With alpha = beta = 0.6 (the default, as diffusers fixes it) the steps are
// dense at both ends of the range. This is diffusers' use_beta_sigmas (_convert_to_beta, 58eb52c)
// for Euler, Heun and DPM-Solver; flow models have it in the flow_match spacing (sigmas=beta).
// ComfyUI's "beta" scheduler differs: it rounds the quantiles to training timesteps and drops
// repeats.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct BetaSpacingOptions {
  /// The Beta distribution's parameters. Defaults 0.6, 0.6; > 0.
  TORCH_ARG(double, alpha) = 0.6;
  TORCH_ARG(double, beta) = 0.6;
  /// Noise range in sigma_ve; 0 (default) takes the schedule's own range.
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Round / truncate discrete model times (see karras.h). Defaults false.
  TORCH_ARG(bool, round_t) = false;
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

class BetaSpacing final : public TimestepSpacing {
 public:
  explicit BetaSpacing(BetaSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "beta"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  BetaSpacingOptions options;
};

}  // namespace diffuse
