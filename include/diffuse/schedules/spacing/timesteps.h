// SPDX-License-Identifier: Apache-2.0
// User-supplied model times (diffusers' set_timesteps(timesteps=[...])), strictly descending,
// each in [t_min, t_max]; num_steps must equal their count. Then the final point.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct TimestepsSpacingOptions {
  /// The model times, noisiest first (required, strictly descending).
  TORCH_ARG(std::vector<double>, timesteps) = {};
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
};

class TimestepsSpacing final : public TimestepSpacing {
 public:
  explicit TimestepsSpacing(TimestepsSpacingOptions o);
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "timesteps"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  TimestepsSpacingOptions options;
};

}  // namespace diffuse
