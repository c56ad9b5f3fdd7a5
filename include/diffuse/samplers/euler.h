// SPDX-License-Identifier: Apache-2.0
// Euler sampler for the probability-flow ODE in sigma_ve, with optional "churn" (Karras et al.
// 2022, "Elucidating the Design Space of Diffusion-Based Generative Models", Alg. 2 lines 4-8,
// first-order part): before the step the noise level is raised to sigma_hat = sigma (1 + gamma)
// by adding fresh noise of standard deviation s_noise * sqrt(sigma_hat^2 - sigma^2), with
// gamma = min(s_churn / num_steps, sqrt(2) - 1) when s_tmin <= sigma_ve <= s_tmax, else 0.
// Checked against: k-diffusion sample_euler (4601bf0), diffusers EulerDiscreteScheduler.step
// (58eb52c; tests/samplers/euler_test.cpp holds its numbers).
//
// In k-diffusion's variables (x_ve = x / alpha, sigma = sigma_ve):
//   d = (x_ve - x0) / sigma_hat,   x_ve_next = x_ve + d (sigma_next - sigma_hat)
// which on the VP-native state is DDIM with eta = 0 (<diffuse/samplers/coefficients.h>). The
// network is fed x = alpha * x_ve, which is exactly diffusers' scale_model_input(x_ve) = x_ve /
// sqrt(sigma^2+1) for VP schedules.
#pragma once

#include <limits>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

/// Whose churn EulerSampler reproduces when s_churn > 0 (see EulerOptions::churn_convention).
enum class EulerChurnConvention {
  kKDiffusion,  ///< "k_diffusion" (default; EDM Alg. 2, k-diffusion's sample_euler)
  kDiffusers    ///< "diffusers" (EulerDiscreteScheduler)
};

struct EulerOptions {
  /// Churn strength; gamma = min(s_churn / num_steps, sqrt(2) - 1). Default 0 (deterministic ODE
  /// solver, draws no noise); must be >= 0.
  TORCH_ARG(double, s_churn) = 0.0;
  /// Churn is applied only while s_tmin <= sigma_ve <= s_tmax. Defaults 0 and +inf (always).
  TORCH_ARG(double, s_tmin) = 0.0;
  TORCH_ARG(double, s_tmax) = std::numeric_limits<double>::infinity();
  /// Scale of the churn noise (EDM's S_noise). Default 1; must be >= 0.
  TORCH_ARG(double, s_noise) = 1.0;
  /// Whose churn to reproduce when s_churn > 0:
  /// kKDiffusion, "k_diffusion" (default; EDM Alg. 2): the model is evaluated on the noised state
  /// at the raised
  ///   level sigma_hat, whose network time comes from the schedule (NoiseSchedule::at_sigma_ve);
  ///   one noise tensor is drawn on every step, also outside the [s_tmin, s_tmax] window
  ///   (k-diffusion's sample_euler draws and discards it), so the stream does not depend on the
  ///   window.
  /// kDiffusers, "diffusers" (EulerDiscreteScheduler): the model is evaluated at the grid point
  /// before the noise
  ///   is added (the pipeline calls it before step()); its eps is reused at sigma_hat,
  ///   x0 = x_hat - sigma_hat * eps; noise is drawn only on steps with gamma > 0. Matches diffusers
  ///   exactly for epsilon-prediction models (its v_prediction mixes sigma and sigma_hat).
  TORCH_ARG(EulerChurnConvention, churn_convention) = EulerChurnConvention::kKDiffusion;
};

class EulerSampler final : public Sampler {
 public:
  explicit EulerSampler(EulerOptions o = {});
  /// Keys: s_churn, s_tmin, s_tmax, s_noise, churn_convention (k_diffusion | diffusers).
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "euler"; }
  bool is_stochastic() const override { return options.s_churn() > 0 && options.s_noise() > 0; }

  /// gamma of step `st` (0 where churn is off).
  double gamma(const StepContext& st) const;

  EulerOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
