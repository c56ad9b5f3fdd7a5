// SPDX-License-Identifier: Apache-2.0
// CFG++: Chung, Kim, Park, Nam, Ye, "CFG++: Manifold-constrained Classifier Free Guidance for
// Diffusion Models" (ICLR 2025). Its DDIM step guides the data prediction with a small scale
// lambda in [0, 1] and re-noises with the unconditional noise:
//   x' = alpha' x0_g + sigma' eps_u,   x0_g = x0_u + lambda (x0_c - x0_u)
// (k-diffusion's / ComfyUI's euler_cfg_pp is the same update in sigma_ve). To make it a guidance
// that every sampler can use, the driver hands the sampler the consistent prediction whose
// first-order (DDIM / Euler / DPM-Solver-1) step from the step's start to its end lands exactly
// there: solving alpha x0 + sigma eps = x and alpha' x0 + sigma' eps = x' gives
//   x0 = x0_u + (lambda / phi_1(h)) (x0_c - x0_u),   phi_1(h) = 1 - e^{-h},
// h = lambda_next - lambda_now of the step (phi_1 = 1 onto sigma = 0, where x' = x0_g), and
// eps = (x - alpha x0) / sigma. First-order samplers then take the CFG++ step exactly; higher-order
// ones integrate with these data predictions. A zero-length step keeps lambda.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/denoiser.h>
#include <diffuse/guidance.h>

namespace diffuse {

struct CfgPPOptions {
  /// lambda, the guidance of the data prediction, in [0, 2]. Default 0.6 (the paper's
  /// text-to-image setting is 0.6 to 0.8; 0 is unconditional, 1 the conditional x0).
  TORCH_ARG(double, scale) = 0.6;
};

class CfgPPGuidance final : public Guidance {
 public:
  explicit CfgPPGuidance(CfgPPOptions o = {});
  static std::unique_ptr<Guidance> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "cfg_pp"; }
  /// The raw-output form is not defined for CFG++; combine() throws.
  Tensor combine(const Tensor& cond_out, const Tensor& uncond_out,
                 const StepContext& step) const override;
  bool on_predictions() const override { return true; }
  Prediction combine_predictions(const Prediction& cond, const Prediction& uncond, const Tensor& x,
                                 const TimePoint& at, const StepContext& step) const override;

  CfgPPOptions options;
};

}  // namespace diffuse
