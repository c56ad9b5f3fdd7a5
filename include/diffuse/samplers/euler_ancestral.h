// SPDX-License-Identifier: Apache-2.0
// Euler ancestral sampler ("Euler a"): a deterministic Euler step down to a lower noise level, then
// fresh noise back up to the next point's. How the step's noise is split is `split`
// (see ancestral_coefficients in <diffuse/samplers/coefficients.h> for the formulas):
//   ve:      k-diffusion's get_ancestral_step in sigma_ve,
//              sigma_up   = min(sigma_next, eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) /
//              sigma^2)), sigma_down = sqrt(sigma_next^2 - sigma_up^2);
//            eta = 1 has the DDPM posterior's noise level. A1111 / diffusers "Euler a".
//   flow:    ComfyUI's rule for rectified-flow models (sample_euler_ancestral_RF, taken when the
//            model sampling is CONST): sigma_down = sigma_next (1 + (sigma_next / sigma - 1) eta)
//            in the flow sigma, then the signal is rescaled to alpha_next and noise fills the rest.
//            On other schedules the same rule runs in y = x / (alpha + sigma), tau = sigma /
//            (alpha + sigma), where every schedule is a rectified flow; it starts at pure noise.
//   renoise: x_next = alpha_next x0 + sigma_next z, all the noise redrawn each step: diffusers'
//            FlowMatchEulerDiscreteScheduler with stochastic_sampling=True (eta unused).
//   auto:    (default) flow on rectified-flow schedules (as ComfyUI decides by model sampling),
//            ve elsewhere.
// eta = 0 is plain Euler (= DDIM) under ve and flow. The step onto sigma = 0 lands on x0, adds no
// noise and draws none.
// Checked against: k-diffusion sample_euler_ancestral (4601bf0), diffusers
// EulerAncestralDiscreteScheduler.step (58eb52c, which is eta = s_noise = 1; numbers in
// tests/samplers/euler_ancestral_test.cpp); ComfyUI sample_euler_ancestral_RF (02159d8) and
// diffusers FlowMatchEulerDiscreteScheduler stochastic_sampling (58eb52c), numbers in
// tests/samplers/flow_match_test.cpp.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>
#include <diffuse/samplers/coefficients.h>

namespace diffuse {

struct EulerAncestralOptions {
  /// Share of the step's noise that is re-drawn. Default 1 (diffusers / A1111 "Euler a");
  /// 0 is deterministic Euler; must be >= 0 (values above 1 are capped by sigma_up <= sigma_next).
  TORCH_ARG(double, eta) = 1.0;
  /// Scale of the added noise. Default 1; must be >= 0.
  TORCH_ARG(double, s_noise) = 1.0;
  /// How the noise is split (see the top of this file). Default auto; renoise needs eta = 1.
  TORCH_ARG(AncestralRule, split) = AncestralRule::automatic;
};

class EulerAncestralSampler final : public Sampler {
 public:
  explicit EulerAncestralSampler(EulerAncestralOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "euler_ancestral"; }
  bool is_stochastic() const override {
    return (options.eta() > 0 || options.split() == AncestralRule::renoise) &&
           options.s_noise() > 0;
  }

  EulerAncestralOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
