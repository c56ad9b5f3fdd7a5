// SPDX-License-Identifier: Apache-2.0
// DPM++ 3M SDE: k-diffusion's sample_dpmpp_3m_sde (ComfyUI dpmpp_3m_sde). Third-order multistep
// DPM-Solver++ for the SDE with noise share eta, in lambda = -log sigma_ve: with h = lambda_next -
// lambda, h_eta = (1 + eta) h and the data predictions of the last three grid points,
//   x' = e^{-h_eta} x + (1 - e^{-h_eta}) x0 + phi_2 D1 - phi_3 D2
//        + s_noise sigma_next sqrt(1 - e^{-2 eta h}) z,
//   phi_2 = (e^{-h_eta} - 1) / h_eta + 1,  phi_3 = phi_2 / h_eta - 1/2,
// D1, D2 the divided differences of diffusers' / k-diffusion's third-order update (second order
// after one earlier step, first order on the first), all in sigma_ve units; the step onto
// sigma = 0 returns x0. z is the normalised Brownian increment over [sigma_next, sigma] of one
// seeded path (noise=brownian, the default, as k-diffusion's BrownianTreeNoiseSampler) or a fresh
// draw (noise=gaussian, k-diffusion with default_noise_sampler). eta = 0 is the deterministic
// DPM-Solver++ 3M ODE update of k-diffusion. Needs alpha > 0 where it steps from.
// Checked against: k-diffusion 4601bf0 with default_noise_sampler
// (tests/samplers/dpmpp_3m_sde_test.cpp).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>
#include <diffuse/samplers/detail/sde_noise.h>

namespace diffuse {

struct DpmPP3MSdeOptions {
  /// Noise share (default 1); 0 is the deterministic 3M update.
  TORCH_ARG(double, eta) = 1.0;
  /// Scale of the added noise. Default 1.
  TORCH_ARG(double, s_noise) = 1.0;
  /// brownian (default) or gaussian (see the top of this file).
  TORCH_ARG(SdeNoise, noise) = SdeNoise::brownian;
};

class DpmPP3MSdeSampler final : public Sampler {
 public:
  explicit DpmPP3MSdeSampler(DpmPP3MSdeOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dpmpp_3m_sde"; }
  bool is_stochastic() const override { return options.eta() > 0 && options.s_noise() > 0; }
  int64_t history_size() const override { return 2; }

  DpmPP3MSdeOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                       const History& history, SampleContext& ctx) const override;
};

}  // namespace diffuse
