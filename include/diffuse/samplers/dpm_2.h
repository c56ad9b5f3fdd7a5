// SPDX-License-Identifier: Apache-2.0
// DPM2 and DPM2 ancestral: k-diffusion's second-order sampler "inspired by DPM-Solver-2 and
// Algorithm 2 of Karras et al. (2022)" (sample_dpm_2 / sample_dpm_2_ancestral; A1111's "DPM2" /
// "DPM2 a", diffusers' KDPM2DiscreteScheduler / KDPM2AncestralDiscreteScheduler). In sigma_ve with
// d(x, s) = (x - x0(x, s)) / s, from sigma (or the churned sigma_hat) towards a target sigma_t
// (sigma_next; with eta > 0 the ancestral sigma_down of get_ancestral_step):
//   sigma_mid = sqrt(sigma sigma_t),  x_mid = x + d(x, sigma) (sigma_mid - sigma),
//   x' = x + d(x_mid, sigma_mid) (sigma_t - sigma)     (the midpoint rule in log sigma),
// then with eta > 0 noise of standard deviation s_noise sigma_up is added. A target of 0 (the step
// onto sigma = 0) is one Euler step (= x0), which adds no noise: k-diffusion adds none either when
// a large eta makes sigma_down = 0 before the last step. The midpoint's model time comes from the
// schedule (fractional on discrete schedules, as k-diffusion's sigma_to_t).
// eta = 0 (default) is sample_dpm_2, with k-diffusion's churn options (one noise draw every step
// while s_churn > 0, as there); eta > 0 is sample_dpm_2_ancestral (no churn). Needs alpha > 0 at
// the points it steps from.
// Checked against: k-diffusion 4601bf0 (tests/samplers/dpm_2_test.cpp).
#pragma once

#include <limits>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct Dpm2Options {
  /// Ancestral noise share (get_ancestral_step's eta): 0 (default) is DPM2, 1 DPM2 ancestral.
  TORCH_ARG(double, eta) = 0.0;
  /// Scale of the added noise (ancestral and churn). Default 1.
  TORCH_ARG(double, s_noise) = 1.0;
  /// EDM churn as in sample_dpm_2 (see EulerOptions); eta = 0 only. Defaults 0, 0, +inf.
  TORCH_ARG(double, s_churn) = 0.0;
  TORCH_ARG(double, s_tmin) = 0.0;
  TORCH_ARG(double, s_tmax) = std::numeric_limits<double>::infinity();
};

class Dpm2Sampler final : public Sampler {
 public:
  explicit Dpm2Sampler(Dpm2Options o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dpm_2"; }
  bool is_stochastic() const override {
    return (options.eta() > 0 || options.s_churn() > 0) && options.s_noise() > 0;
  }
  /// Two calls per step, one for the last step (assumed to land on sigma = 0).
  int64_t model_calls(int64_t num_steps) const override {
    return num_steps > 0 ? 2 * num_steps - 1 : 0;
  }

  Dpm2Options options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
