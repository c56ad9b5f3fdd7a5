// SPDX-License-Identifier: Apache-2.0
// The grids of diffusers' flow-matching schedulers on the flow schedule
// (<diffuse/schedules/flow.h>), with its shift applied: the default spacing of `flow`.
//
// rule=euler (FlowMatchEulerDiscreteScheduler / FlowMatchHeunDiscreteScheduler.set_timesteps,
// diffusers 58eb52c): u_i = linspace(t_scale * 1, t_scale * u_min, n) / t_scale with
// u_min = shifted(sigma_min) under a static shift (the scheduler's training table is shifted once
// at construction, and set_timesteps shifts again) and sigma_min under the dynamic shift; then
// sigma_i = shifted(u_i), the shift_terminal stretch, and optionally a Karras, exponential or beta
// re-spacing between the first and last sigma (beta: sigma_min + ppf(1 - i / (n - 1); 0.6, 0.6)
// (sigma_max - sigma_min), the quantiles of Beta(0.6, 0.6)). The network is fed t = t_scale *
// sigma. The first point is sigma = 1 (pure noise, alpha = 0). rule=dpm_solver
// (DPMSolverMultistepScheduler with use_flow_sigmas): sigma_i = the shift of 1 - linspace(1,
// sigma_min, n + 1), noisiest first, without the 0; the dynamic exponential shift is the static one
// with s = e^mu (diffusers sets flow_shift = exp(mu)); the network is fed the truncated integer t =
// floor(t_scale * sigma), the solver steps with the exact sigma. rule=unipc
// (UniPCMultistepScheduler with use_flow_sigmas): n of linspace(1, sigma_min, n + 1), shifted,
// stretched to shift_terminal, the first nudged 1e-6 below 1, integer times as dpm_solver. All
// end at the clean point (sigma = 0), or with final=min on their last sigma again.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

/// Whose set_timesteps the flow_match spacing reproduces.
enum class FlowMatchRule { euler, dpm_solver, unipc };
/// Names of FlowMatchRule ("euler", "dpm_solver", "unipc").
const EnumNames<FlowMatchRule>& flow_match_rule_names();

/// Re-spacing of the shifted sigmas (diffusers use_karras_sigmas / use_exponential_sigmas /
/// use_beta_sigmas).
enum class FlowSigmas { shifted, karras, exponential, beta };
/// Names of FlowSigmas ("shifted", "karras", "exponential", "beta").
const EnumNames<FlowSigmas>& flow_sigmas_names();

struct FlowMatchSpacingOptions {
  /// Default euler.
  TORCH_ARG(FlowMatchRule, rule) = FlowMatchRule::euler;
  /// Default shifted (no re-spacing). karras / exponential only with rule=euler.
  TORCH_ARG(FlowSigmas, sigmas) = FlowSigmas::shifted;
  /// rho of the Karras re-spacing. Default 7; > 0.
  TORCH_ARG(double, rho) = 7.0;
  /// The Beta(beta_alpha, beta_beta) of the beta re-spacing. Defaults 0.6, 0.6 (diffusers' fixed
  /// values, the paper's choice); > 0.
  TORCH_ARG(double, beta_alpha) = 0.6;
  TORCH_ARG(double, beta_beta) = 0.6;
  /// "zero" (default): the run ends on the clean point; "min": the last noise level again, a
  /// zero-length last step (diffusers' UniPC with use_flow_sigmas and
  /// final_sigmas_type="sigma_min").
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
};

class FlowMatchSpacing final : public TimestepSpacing {
 public:
  explicit FlowMatchSpacing(FlowMatchSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "flow_match"; }

  /// `s` must be the flow schedule (ConfigError naming the schedule otherwise).
  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  FlowMatchSpacingOptions options;
};

}  // namespace diffuse
