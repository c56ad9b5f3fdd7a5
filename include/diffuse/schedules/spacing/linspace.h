// SPDX-License-Identifier: Apache-2.0
// Evenly spaced model times from t_max down to t_min (diffusers timestep_spacing="linspace").
// include_t_min=true: num_steps times linspace(t_min, t_max, n) (DDIM, DDPM, Euler, Heun).
// include_t_min=false: linspace over n+1 points with t_min dropped (DPM-Solver's convention), so
// with final=min the grid is exactly the n+1 linspace points. Discrete times are rounded half to
// even (numpy) unless round=false (diffusers' Euler/Heun keep fractional times).
#pragma once

#include <limits>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct LinspaceSpacingOptions {
  /// Round discrete model times to integers (half to even). Default true; ignored for continuous
  /// schedules.
  TORCH_ARG(bool, round) = true;
  /// Evaluate the model at t_min (true) or space n+1 points and drop t_min (false). Default true.
  TORCH_ARG(bool, include_t_min) = true;
  /// "zero" (default) or "min": where the last step lands.
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
  /// diffusers' lambda_min_clipped (DPM-Solver, "critical for the cosine schedule"): the noisiest
  /// training timesteps, whose half log-SNR is below it, are left out, so the grid starts at the
  /// last one kept. Discrete schedules only. Default -inf (off).
  TORCH_ARG(double, lambda_min) = -std::numeric_limits<double>::infinity();
};

class LinspaceSpacing final : public TimestepSpacing {
 public:
  explicit LinspaceSpacing(LinspaceSpacingOptions o = {}) : options(std::move(o)) {}
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "linspace"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  LinspaceSpacingOptions options;
};

}  // namespace diffuse
