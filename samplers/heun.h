// SPDX-License-Identifier: Apache-2.0
// Heun's second-order method for the probability-flow ODE in sigma_ve (Karras et al. 2022,
// "Elucidating the Design Space of Diffusion-Based Generative Models", Alg. 1): an Euler
// predictor to sigma_next, then the trapezoidal corrector with the slope at the predicted point,
//   d = (x_ve - x0) / sigma,  x_tmp = x_ve + d h,  d' = (x_tmp - x0(x_tmp)) / sigma_next,
//   x_ve_next = x_ve + (d + d') h / 2,   h = sigma_next - sigma.
// The step onto sigma = 0 is a plain Euler step (one model call), as in EDM and k-diffusion.
// Checked against: k-diffusion sample_heun without churn (4601bf0), diffusers
// HeunDiscreteScheduler (58eb52c), whose interleaved timesteps [t0, t1, t1, t2, t2, ...] are the
// two model calls of our steps on the grid t0, t1, ... (numbers in tests/samplers/heun_test.cpp).
#pragma once

#include <memory>
#include <string>

#include <diffuse/sampler.h>
#include <diffuse/samplers/detail/ve_step.h>

namespace diffuse {

/// Heun has no options yet (EDM's churn lives in the euler sampler).
struct HeunOptions {};

class HeunSampler final : public Sampler {
 public:
  explicit HeunSampler(HeunOptions o = {}) : options(o) {}
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "heun");
    r.finish();
    return std::make_unique<HeunSampler>();
  }
  Config to_config() const override { return {}; }
  std::string name() const override { return "heun"; }
  /// Two calls per step, except one for the last step, which is assumed to land on sigma = 0 (the
  /// default final point); a grid ending at sigma_min > 0 makes 2 * num_steps calls.
  int64_t model_calls(int64_t num_steps) const override { return num_steps > 0 ? 2 * num_steps - 1 : 0; }

  HeunOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext&) const override {
    const TimePoint& now = st.now;
    const TimePoint& next = st.next;
    check(now.sigma > 0 && now.alpha > 0, "heun: step ", st.index, " needs 0 < sigma_ve < inf at its start, got t=",
          now.t, " alpha=", now.alpha, " sigma=", now.sigma,
          " (for zero terminal SNR set the schedule's terminal_alphas_cumprod)");
    Prediction p = model(x, now, st);
    const auto c = detail::euler_coefficients(now, next.sigma_ve(), next.alpha);
    Tensor x_euler = x * c.cx + p.x0 * c.cx0;
    if (next.is_clean()) return {x_euler, p};
    // Corrector: the slope at the Euler point, averaged with the first one (trapezoidal rule).
    const Prediction p2 = model(x_euler, next, st);
    const double sigma = now.sigma_ve(), sigma_next = next.sigma_ve();
    const Tensor x_ve = x / now.alpha;
    const Tensor d = (x_ve - p.x0) / sigma;
    const Tensor d2 = (x_euler / next.alpha - p2.x0) / sigma_next;
    Tensor x_next = (x_ve + (d + d2) * (0.5 * (sigma_next - sigma))) * next.alpha;
    return {x_next, p};
  }
};

DIFFUSE_REGISTER_SAMPLER(HeunSampler, "heun", "Heun 2nd order (EDM Alg. 1, no churn); Euler onto sigma=0");
DIFFUSE_REGISTER_SAMPLER_ALIAS(HeunK, "k_heun", "heun", {}, "A1111's name for heun");

}  // namespace diffuse
