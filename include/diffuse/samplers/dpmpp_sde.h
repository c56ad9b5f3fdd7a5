// SPDX-License-Identifier: Apache-2.0
// DPM++ SDE: k-diffusion's sample_dpmpp_sde (A1111 "DPM++ SDE", ComfyUI dpmpp_sde; the sampler
// Lightning / Turbo checkpoints ask for). A stochastic DPM-Solver++ singlestep method in
// t = -log sigma_ve: with h = t_next - t and the intermediate point s = t + r h,
//   1. ancestral split of [sigma_t, sigma_s] (eta): x_2 = (sigma_s' / sigma_t) x - (e^{t - s'} - 1)
//   x0
//      + s_noise sigma_up z_1,  s' = -log sigma_down; the model at sigma_s;
//   2. ancestral split of [sigma_t, sigma_next]: x' = (sigma_n' / sigma_t) x - (e^{t - n'} - 1)
//      ((1 - 1/(2r)) x0 + 1/(2r) x0(x_2)) + s_noise sigma_up z_2,
// and one Euler step (= x0) onto sigma = 0. z_1 and z_2 are the normalised Brownian increments over
// [sigma_s, sigma_t] and [sigma_next, sigma_t] of one path (noise=brownian, the default, as
// k-diffusion's BrownianTreeNoiseSampler: overlapping intervals are correlated, and the path is the
// same at any step count) or independent draws (noise=gaussian, k-diffusion with
// default_noise_sampler). eta = 0 is deterministic. Needs alpha > 0 where it steps from; the
// intermediate point's model time comes from the schedule.
// Checked against: k-diffusion 4601bf0 with default_noise_sampler
// (tests/samplers/dpmpp_sde_test.cpp).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>
#include <diffuse/samplers/detail/sde_noise.h>

namespace diffuse {

struct DpmPPSdeOptions {
  /// Ancestral noise share (default 1); 0 is deterministic.
  TORCH_ARG(double, eta) = 1.0;
  /// Scale of the added noise. Default 1.
  TORCH_ARG(double, s_noise) = 1.0;
  /// Position of the intermediate point in t, r in (0, 1]. Default 1/2.
  TORCH_ARG(double, r) = 0.5;
  /// brownian (default) or gaussian (see the top of this file).
  TORCH_ARG(SdeNoise, noise) = SdeNoise::brownian;
};

class DpmPPSdeSampler final : public Sampler {
 public:
  explicit DpmPPSdeSampler(DpmPPSdeOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dpmpp_sde"; }
  bool is_stochastic() const override { return options.eta() > 0 && options.s_noise() > 0; }
  /// Two calls per step, one for the last step (assumed to land on sigma = 0).
  int64_t model_calls(int64_t num_steps) const override {
    return num_steps > 0 ? 2 * num_steps - 1 : 0;
  }

  DpmPPSdeOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
