// SPDX-License-Identifier: Apache-2.0
// Trajectory Consistency Distillation's strategic stochastic sampling. Zheng et al., "Trajectory
// Consistency Distillation" (2024), Eq. (13)-(14): a step from `now` to `next` first moves along
// the probability-flow ODE (DDIM) to a point s below `next`, then adds the forward process's
// noise from s up to `next`:
//   t_s    = (1 - gamma) * t_next       (floored to a training step on discrete schedules)
//   x_s    = alpha_s x0 + sigma_s eps
//   x_next = r x_s + sqrt(sigma_next^2 - r^2 sigma_s^2) z,   r = alpha_next / alpha_s
// (on a VP schedule r = sqrt(abar_next / abar_s) and the noise weight sqrt(1 - r^2), diffusers'
// form). gamma = 0 is DDIM (s = next, no noise); gamma = 1 denoises to t = 0 and re-noises fully,
// as LCM does. The clean final point takes x0; diffusers' TCDScheduler ends on training step 0
// instead (final=min of the lcm spacing, which from_diffusers sets). Needs the schedule
// (SampleContext.schedule) to place s. Use it with the lcm spacing on TCD-distilled networks.
// Checked against: diffusers TCDScheduler.step (58eb52c; tests/samplers/lcm_test.cpp).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct TcdOptions {
  /// The stochasticity gamma in [0, 1] (diffusers' eta, default 0.3).
  TORCH_ARG(double, gamma) = 0.3;
};

class TcdSampler final : public Sampler {
 public:
  explicit TcdSampler(TcdOptions o = {});
  /// Keys: gamma (alias eta).
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "tcd"; }
  bool is_stochastic() const override { return options.gamma() > 0; }

  TcdOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
