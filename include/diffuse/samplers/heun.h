// SPDX-License-Identifier: Apache-2.0
// Heun's second-order method for the probability-flow ODE in sigma_ve (Karras et al. 2022,
// "Elucidating the Design Space of Diffusion-Based Generative Models", Alg. 1): an Euler
// predictor to sigma_next, then the trapezoidal corrector with the slope at the predicted point,
//   d = (x_ve - x0) / sigma,  x_tmp = x_ve + d h,  d' = (x_tmp - x0(x_tmp)) / sigma_next,
//   x_ve_next = x_ve + (d + d') h / 2,   h = sigma_next - sigma.
// The step onto sigma = 0 is a plain Euler step (one model call), as in EDM and k-diffusion.
// Optional churn (s_churn > 0) first raises the noise level to sigma_hat as in EDM Alg. 2 and
// k-diffusion's sample_heun (see samplers/euler.h); diffusers' Heun has none.
// Checked against: k-diffusion sample_heun (4601bf0), diffusers
// HeunDiscreteScheduler (58eb52c), whose interleaved timesteps [t0, t1, t1, t2, t2, ...] are the
// two model calls of our steps on the grid t0, t1, ... (numbers in tests/samplers/heun_test.cpp).
#pragma once

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>
#include <diffuse/samplers/detail/ve_step.h>
#include <torch/arg.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

namespace diffuse {

struct HeunOptions {
  /// EDM churn, as in k-diffusion's sample_heun (see EulerOptions; k_diffusion convention): raise the
  /// noise level by gamma = min(s_churn / num_steps, sqrt(2) - 1) while s_tmin <= sigma_ve <= s_tmax,
  /// drawing one noise tensor per step. Defaults 0, 0, +inf, 1: deterministic Heun (EDM Alg. 1).
  TORCH_ARG(double, s_churn) = 0.0;
  TORCH_ARG(double, s_tmin) = 0.0;
  TORCH_ARG(double, s_tmax) = std::numeric_limits<double>::infinity();
  TORCH_ARG(double, s_noise) = 1.0;
};

class HeunSampler final : public Sampler {
 public:
  explicit HeunSampler(HeunOptions o = {}) : options(o) {
    detail::check_churn_options("heun", options.s_churn(), options.s_tmin(), options.s_tmax(), options.s_noise());
  }
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "heun");
    HeunOptions o;
    detail::read_churn_options(r, o);
    r.finish();
    return std::make_unique<HeunSampler>(o);
  }
  Config to_config() const override {
    Config c;
    detail::write_churn_options(options, c);
    return c;
  }
  std::string name() const override { return "heun"; }
  bool is_stochastic() const override { return options.s_churn() > 0 && options.s_noise() > 0; }
  /// Two calls per step, except one for the last step, which is assumed to land on sigma = 0 (the
  /// default final point); a grid ending at sigma_min > 0 makes 2 * num_steps calls.
  int64_t model_calls(int64_t num_steps) const override { return num_steps > 0 ? 2 * num_steps - 1 : 0; }

  HeunOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override {
    const TimePoint& next = st.next;
    TimePoint now = st.now;
    check(now.sigma > 0 && now.alpha > 0, "heun: step ", st.index,
          " needs 0 < sigma_ve < inf at its start, got t=", now.t, " alpha=", now.alpha, " sigma=", now.sigma,
          " (for zero terminal SNR set the schedule's terminal_alphas_cumprod)");
    Tensor xc = x;
    if (is_stochastic()) {
      const Tensor z = ctx.randn_like(x);  // every step, as k-diffusion's sample_heun
      const double g = detail::churn_gamma(options.s_churn(), options.s_tmin(), options.s_tmax(), st);
      if (g > 0) {
        const TimePoint hat = detail::churn_point(ctx, now, g, "heun");
        const double sigma = now.sigma_ve(), sigma_hat = hat.sigma_ve();
        xc = detail::divided(x, now.alpha);
        detail::add_scaled_(xc, z,
                            options.s_noise() * std::sqrt(sigma_hat * sigma_hat - sigma * sigma));
        detail::scale_(xc, hat.alpha);
        now = hat;
      }
    }
    Prediction p = model(xc, now, st);
    const auto c = detail::euler_coefficients(now, next.sigma_ve(), next.alpha);
    Tensor x_euler = detail::lincomb(xc, c.cx, p.x0, c.cx0);
    if (next.is_clean()) return {x_euler, p};
    // Corrector: the slope at the Euler point, averaged with the first one (trapezoidal rule).
    const Prediction p2 = model(x_euler, next, st);
    const double sigma = now.sigma_ve(), sigma_next = next.sigma_ve();
    const Tensor x_ve = detail::divided(xc, now.alpha);
    Tensor d = detail::diff_divided(x_ve, p.x0, sigma);
    Tensor d2 = detail::divided(x_euler, next.alpha).sub_(p2.x0);
    detail::divide_(d2, sigma_next);
    detail::scale_(d.add_(d2), 0.5 * (sigma_next - sigma));
    Tensor x_next = d.add_(x_ve);
    detail::scale_(x_next, next.alpha);
    return {x_next, p};
  }
};

DIFFUSE_REGISTER_SAMPLER(HeunSampler, "heun", "Heun 2nd order (EDM Alg. 1; optional Alg. 2 churn); Euler onto sigma=0");
DIFFUSE_REGISTER_SAMPLER_ALIAS(HeunK, "k_heun", "heun", {}, "A1111's name for heun");
DIFFUSE_REGISTER_SAMPLER_ALIAS(HeunA1111, "Heun", "heun", {}, "A1111's label for heun");

}  // namespace diffuse
