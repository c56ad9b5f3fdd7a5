// SPDX-License-Identifier: Apache-2.0
// Euler-Maruyama for the reverse-time SDE of the linear interpolant, SiT's SDE sampler (Ma et al.
// 2024, "SiT: Exploring Flow and Diffusion-based Generative Models with Scalable Interpolant
// Transformers", sec. 3; willisma/SiT transport.Sampler.sample_sde, sampling_method "Euler").
//
// In the flow variables y = x / (alpha + sigma), tau = sigma / (alpha + sigma) every schedule is
// the straight path y = (1 - tau) x0 + tau eps (on the flow schedule y = x, tau = sigma). With
// SiT's time s = 1 - tau (s = 0 noise, s = 1 data), its velocity v = dy/ds = x0 - eps and score
// -eps / tau, the SDE that keeps the path's marginals for any diffusion coefficient w(s) >= 0 is
//   dy = [v + w score] ds + sqrt(2 w) dW,
// and one step of size h = tau_now - tau_next is
//   y' = y + h (x0 - eps - (w / tau) eps) + sqrt(2 w h) z,     z ~ N(0, I) from the run's noise
// with x0, eps predicted at the step's start (one model call per step; SiT calls the network
// twice, for the drift and the score, with the same result). w = norm * form(s), SiT's
// diffusion forms (transport/path.py compute_diffusion):
//   sigma (SiT's CLI default), linear   norm (1 - s) = norm tau   (equal on the linear path)
//   sbdm                                norm (1 - s) / s          (infinite at pure noise)
//   constant                            norm                      (SiT's own fails: th.sqrt of a
//                                                                  float)
//   decreasing                          0.25 (norm cos(pi s) + 1)^2
//   increasing_decreasing               norm sin(pi s)^2          (SiT: "inccreasing-decreasing")
// The step onto sigma = 0 (the last grid interval) is SiT's last step:
//   mean (default)   y + h (x0 - eps - (w / tau) eps), the drift without the noise ("Mean")
//   x0               the predicted x0 ("Euler" and "Tweedie", which equal x0 on this path)
//   euler_maruyama   an ordinary step, noise included (last_step None, grid to s = 1)
// SiT's grid is linspace(0, 1 - last_step_size, N) in s and one last step of last_step_size: the
// flow schedule with t_scale=1 and sigma_min = last_step_size (0.04) under the flow_match spacing
// with N steps gives exactly those points.
// Checked against: SiT 947f95b (tests/samplers/sit_test.cpp, generator
// tests/reference/sit_samplers.py): the same results to 1e-12 in float64 with SiT's noise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

/// SiT's diffusion forms w(s) / norm (see the file comment).
enum class SdeDiffusion { sigma, linear, sbdm, constant, decreasing, increasing_decreasing };
/// Names of SdeDiffusion ("sigma", "linear", "sbdm", "constant", "decreasing",
/// "increasing_decreasing").
const EnumNames<SdeDiffusion>& sde_diffusion_names();

/// What the step onto sigma = 0 does.
enum class SdeLastStep { mean, x0, euler_maruyama };
/// Names of SdeLastStep ("mean", "x0", "euler_maruyama").
const EnumNames<SdeLastStep>& sde_last_step_names();

struct EulerMaruyamaOptions {
  /// The form of the diffusion coefficient. Default sigma (SiT's sample.py / sample_ddp.py).
  TORCH_ARG(SdeDiffusion, diffusion) = SdeDiffusion::sigma;
  /// Its scale. Default 1; finite and >= 0 (0 with any form but decreasing is the ODE's Euler).
  TORCH_ARG(double, norm) = 1.0;
  /// The step onto sigma = 0. Default mean (SiT).
  TORCH_ARG(SdeLastStep, last_step) = SdeLastStep::mean;
};

class EulerMaruyamaSampler final : public Sampler {
 public:
  explicit EulerMaruyamaSampler(EulerMaruyamaOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "euler_maruyama"; }
  bool is_stochastic() const override {
    return options.norm() > 0 || options.diffusion() == SdeDiffusion::decreasing;
  }
  /// The diffusion coefficient w at flow level tau (SiT time 1 - tau).
  double diffusion(double tau) const;

  EulerMaruyamaOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
