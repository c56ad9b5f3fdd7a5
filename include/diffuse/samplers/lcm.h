// SPDX-License-Identifier: Apache-2.0
// Latent Consistency Model sampling. Luo et al., "Latent Consistency Models" (2023), Algorithm 1
// (multistep consistency sampling): each step maps x at `now` straight to a clean estimate and
// re-noises it to `next` with fresh noise,
//   d      = c_skip(t) x + c_out(t) x0(x, t)                        (the boundary condition)
//   x_next = alpha_next d + sigma_next z,   z ~ N(0, I)
// with the consistency models' boundary scalings on the scaled model time s = t * timestep_scaling
// (t: the training step of a discrete schedule, as diffusers feeds it),
//   c_skip = sigma_data^2 / (s^2 + sigma_data^2),   c_out = s / sqrt(s^2 + sigma_data^2).
// The clean final point (sigma = 0) draws nothing and returns d. boundary_condition = false skips
// the scalings (d = x0: k-diffusion / ComfyUI's sample_lcm, whose LCM models apply them inside
// the model). The step's prediction is d (and the eps that goes with it). Use it with the lcm
// spacing (<diffuse/schedules/spacing/lcm.h>) at 1-8 steps on LCM-distilled networks.
// Checked against: diffusers LCMScheduler.step (58eb52c; tests/samplers/lcm_test.cpp).
// Aliases: LCM (A1111's label).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct LcmOptions {
  /// Apply c_skip / c_out (default true, as diffusers' LCMScheduler).
  TORCH_ARG(bool, boundary_condition) = true;
  /// s = t * timestep_scaling (default 10, diffusers' timestep_scaling); finite and > 0.
  TORCH_ARG(double, timestep_scaling) = 10.0;
  /// sigma_data of the scalings (default 0.5); finite and > 0.
  TORCH_ARG(double, sigma_data) = 0.5;
};

class LcmSampler final : public Sampler {
 public:
  explicit LcmSampler(LcmOptions o = {});
  /// Keys: boundary_condition, timestep_scaling, sigma_data.
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "lcm"; }
  bool is_stochastic() const override { return true; }

  /// (c_skip, c_out) at model time t.
  std::pair<double, double> boundary_scalings(double t) const;

  LcmOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
