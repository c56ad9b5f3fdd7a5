// SPDX-License-Identifier: Apache-2.0
// Euler ancestral sampler ("Euler a"): an Euler step in sigma_ve down to sigma_down, then fresh
// noise of standard deviation s_noise * sigma_up, with the ancestral split of k-diffusion's
// get_ancestral_step:
//   sigma_up   = min(sigma_next, eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))
//   sigma_down = sqrt(sigma_next^2 - sigma_up^2)
// eta = 1 (default) has the DDPM posterior's noise level, eta = 0 is plain Euler. The step onto
// sigma = 0 adds no noise and draws none.
// Checked against: k-diffusion sample_euler_ancestral (4601bf0), diffusers
// EulerAncestralDiscreteScheduler.step (58eb52c, which is eta = s_noise = 1; numbers in
// tests/samplers/euler_ancestral_test.cpp).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct EulerAncestralOptions {
  /// Share of the step's noise that is re-drawn. Default 1 (diffusers / A1111 "Euler a");
  /// 0 is deterministic Euler; must be >= 0 (values above 1 are capped by sigma_up <= sigma_next).
  TORCH_ARG(double, eta) = 1.0;
  /// Scale of the added noise. Default 1; must be >= 0.
  TORCH_ARG(double, s_noise) = 1.0;
};

class EulerAncestralSampler final : public Sampler {
 public:
  explicit EulerAncestralSampler(EulerAncestralOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "euler_ancestral"; }
  bool is_stochastic() const override { return options.eta() > 0 && options.s_noise() > 0; }

  EulerAncestralOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
