// SPDX-License-Identifier: Apache-2.0
// diffusers timestep_spacing="leading" (Stable Diffusion's default): times k * (T // n) for
// k = n-1..0, plus steps_offset. include_t_min=false uses n+1 slots of T // (n+1) and drops the
// last (DPM-Solver's convention). Never visits t = T-1, so unsuitable for zero terminal SNR.
#pragma once

#include <limits>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct LeadingSpacingOptions {
  /// Added to every timestep (SD uses 1). Default 0; >= 0.
  TORCH_ARG(int64_t, steps_offset) = 0;
  /// See linspace. Default true.
  TORCH_ARG(bool, include_t_min) = true;
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
  /// diffusers' lambda_min_clipped (see linspace.h): the slots are laid over the training
  /// timesteps kept. Default -inf (off).
  TORCH_ARG(double, lambda_min) = -std::numeric_limits<double>::infinity();
};

class LeadingSpacing final : public TimestepSpacing {
 public:
  explicit LeadingSpacing(LeadingSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "leading"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  LeadingSpacingOptions options;
};

}  // namespace diffuse
