// SPDX-License-Identifier: Apache-2.0
// DPM++ 2S ancestral: k-diffusion's sample_dpmpp_2s_ancestral (A1111 "DPM++ 2S a", ComfyUI
// dpmpp_2s_ancestral). Each step splits the noise level like Euler ancestral (get_ancestral_step
// in sigma_ve: sigma_down, sigma_up), takes one DPM-Solver++(2S) step to sigma_down with its
// intermediate point at the log-midpoint (t = -log sigma, s = t + h / 2):
//   x_s = (sigma_s / sigma) x - (e^{-h/2} - 1) x0,   x' = (sigma_down / sigma) x - (e^{-h} - 1)
//   x0(x_s)
// (sigma_ve units), then adds s_noise sigma_up of fresh noise unless the step lands on sigma = 0.
// A step with sigma_down = 0 is one Euler step (= x0). eta = 0 is the deterministic
// DPM-Solver++(2S) with midpoints off the grid (dpmpp_2s is the variant that uses grid points).
// The midpoint's model time comes from the schedule. Needs alpha > 0 at the points it steps from.
// Checked against: k-diffusion 4601bf0 (tests/samplers/dpmpp_2s_ancestral_test.cpp).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct DpmPP2SAncestralOptions {
  /// Ancestral noise share (default 1); 0 is deterministic DPM-Solver++(2S).
  TORCH_ARG(double, eta) = 1.0;
  /// Scale of the added noise. Default 1.
  TORCH_ARG(double, s_noise) = 1.0;
};

class DpmPP2SAncestralSampler final : public Sampler {
 public:
  explicit DpmPP2SAncestralSampler(DpmPP2SAncestralOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dpmpp_2s_ancestral"; }
  bool is_stochastic() const override { return options.eta() > 0 && options.s_noise() > 0; }
  /// Two calls per step, one for the last step (assumed to land on sigma = 0).
  int64_t model_calls(int64_t num_steps) const override {
    return num_steps > 0 ? 2 * num_steps - 1 : 0;
  }

  DpmPP2SAncestralOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
