// SPDX-License-Identifier: Apache-2.0
// diffusers' interpolation_type="log_linear" (EulerDiscreteScheduler, 58eb52c): the model times
// are those of a diffusers timestep spacing (linspace, leading or trailing), but the noise levels
// are n + 1 values uniform in log sigma_ve from the schedule's sigma_max to its sigma_min,
//   sigma_i = exp(log sigma_max + i / n (log sigma_min - log sigma_max)),  i = 0..n,
// and the run ends on sigma_n = sigma_min (diffusers appends a final 0 it never reaches: its n
// steps use sigmas[0..n]). The two do not match: step i's state is at sigma_i while the network is
// told the time of a different noise level (on linspace, t = 0 already at step n - 1, whose sigma
// is sigma_min^((n-1)/n) sigma_max^(1/n)). This spacing reproduces it for parity; for noise levels
// uniform in log sigma with consistent times use `exponential`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>

namespace diffuse {

struct LogLinearSpacingOptions {
  /// The timestep spacing of the model times: "linspace" (default), "leading" or "trailing".
  TORCH_ARG(std::string, spacing) = "linspace";
  /// leading's steps_offset. Default 0.
  TORCH_ARG(int64_t, steps_offset) = 0;
};

class LogLinearSpacing final : public TimestepSpacing {
 public:
  explicit LogLinearSpacing(LogLinearSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "log_linear"; }

  /// Needs a discrete schedule (the timestep spacings do).
  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  LogLinearSpacingOptions options;
};

}  // namespace diffuse
