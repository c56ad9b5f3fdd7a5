// SPDX-License-Identifier: Apache-2.0
// The KL-optimal noise levels of Sabour, Fidler and Kreis, "Align Your Steps" (2024, Thm. 3.1):
// uniform in arctan(sigma_ve), sigma_i = tan((1 - u_i) atan(sigma_max) + u_i atan(sigma_min)),
// u_i = i / (n - 1), i = 0 .. n - 1, then the final point: ComfyUI's kl_optimal scheduler
// (A1111's kl_optimal instead spreads n + 1 points over the same range and stops at sigma_min
// without a step to 0). n = 1 is sigma_max alone. The range is the schedule's unless set.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct KlOptimalSpacingOptions {
  /// Noise range in sigma_ve; 0 (default) takes the schedule's own range.
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Round discrete model times (ComfyUI feeds the nearest training step). Default false.
  TORCH_ARG(bool, round_t) = false;
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
};

class KlOptimalSpacing final : public TimestepSpacing {
 public:
  explicit KlOptimalSpacing(KlOptimalSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "kl_optimal"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  KlOptimalSpacingOptions options;
};

}  // namespace diffuse
