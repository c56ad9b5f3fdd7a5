// SPDX-License-Identifier: Apache-2.0
// Heun's second-order method for the probability-flow ODE in sigma_ve (Karras et al. 2022,
// "Elucidating the Design Space of Diffusion-Based Generative Models", Alg. 1): an Euler
// predictor to sigma_next, then the trapezoidal corrector with the slope at the predicted point,
//   d = (x_ve - x0) / sigma,  x_tmp = x_ve + d h,  d' = (x_tmp - x0(x_tmp)) / sigma_next,
//   x_ve_next = x_ve + (d + d') h / 2,   h = sigma_next - sigma.
// The step onto sigma = 0 is a plain Euler step (one model call), as in EDM and k-diffusion.
// Optional churn (s_churn > 0) first raises the noise level to sigma_hat as in EDM Alg. 2 and
// k-diffusion's sample_heun (see <diffuse/samplers/euler.h>); diffusers' Heun has none.
// space=flow takes the same predictor-corrector in the flow variables y = x / (alpha + sigma),
// tau = sigma / (alpha + sigma), where dy/dtau = eps - x0 = v (on the flow schedule y = x, tau =
// sigma): diffusers' FlowMatchHeunDiscreteScheduler, and the only form that can start at pure
// noise (alpha = 0, sigma_ve = inf). space=auto (default) is flow on the flow schedule, ve
// elsewhere. Both are second order; they differ at O(h^3).
// Checked against: k-diffusion sample_heun (4601bf0), diffusers
// HeunDiscreteScheduler (58eb52c), whose interleaved timesteps [t0, t1, t1, t2, t2, ...] are the
// two model calls of our steps on the grid t0, t1, ... (numbers in tests/samplers/heun_test.cpp).
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

/// The variables Heun's trapezoidal rule is taken in.
enum class HeunSpace { automatic, ve, flow };
/// Names of HeunSpace ("auto", "ve", "flow").
const EnumNames<HeunSpace>& heun_space_names();

struct HeunOptions {
  /// EDM churn, as in k-diffusion's sample_heun (see EulerOptions; k_diffusion convention): raise
  /// the noise level by gamma = min(s_churn / num_steps, sqrt(2) - 1) while s_tmin <= sigma_ve <=
  /// s_tmax, drawing one noise tensor per step. Defaults 0, 0, +inf, 1: deterministic Heun (EDM
  /// Alg. 1).
  TORCH_ARG(double, s_churn) = 0.0;
  TORCH_ARG(double, s_tmin) = 0.0;
  TORCH_ARG(double, s_tmax) = std::numeric_limits<double>::infinity();
  TORCH_ARG(double, s_noise) = 1.0;
  /// ve: x / alpha against sigma_ve (EDM, k-diffusion, diffusers' HeunDiscreteScheduler); flow:
  /// x / (alpha + sigma) against sigma / (alpha + sigma) (FlowMatchHeunDiscreteScheduler); auto
  /// (default): flow on the flow schedule, ve otherwise. Churn needs ve.
  TORCH_ARG(HeunSpace, space) = HeunSpace::automatic;
};

class HeunSampler final : public Sampler {
 public:
  explicit HeunSampler(HeunOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "heun"; }
  bool is_stochastic() const override { return options.s_churn() > 0 && options.s_noise() > 0; }
  /// Two calls per step, except one for the last step, which is assumed to land on sigma = 0 (the
  /// default final point); a grid ending at sigma_min > 0 makes 2 * num_steps calls.
  int64_t model_calls(int64_t num_steps) const override {
    return num_steps > 0 ? 2 * num_steps - 1 : 0;
  }

  HeunOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
