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
// which on the VP-native state is DDIM with eta = 0 (samplers/detail/ve_step.h). The network is
// fed x = alpha * x_ve, which is exactly diffusers' scale_model_input(x_ve) = x_ve / sqrt(sigma^2+1)
// for VP schedules.
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
  /// "k_diffusion" (default; EDM Alg. 2): the model is evaluated on the noised state at the raised
  ///   level sigma_hat, whose network time comes from the schedule (NoiseSchedule::at_sigma_ve); one
  ///   noise tensor is drawn on every step, also outside the [s_tmin, s_tmax] window (k-diffusion's
  ///   sample_euler draws and discards it), so the stream does not depend on the window.
  /// "diffusers" (EulerDiscreteScheduler): the model is evaluated at the grid point before the noise
  ///   is added (the pipeline calls it before step()); its eps is reused at sigma_hat,
  ///   x0 = x_hat - sigma_hat * eps; noise is drawn only on steps with gamma > 0. Matches diffusers
  ///   exactly for epsilon-prediction models (its v_prediction mixes sigma and sigma_hat).
  TORCH_ARG(std::string, churn_convention) = "k_diffusion";
};

class EulerSampler final : public Sampler {
 public:
  explicit EulerSampler(EulerOptions o = {}) : options(std::move(o)) {
    detail::check_churn_options("euler", options.s_churn(), options.s_tmin(), options.s_tmax(), options.s_noise());
    check(options.churn_convention() == "k_diffusion" || options.churn_convention() == "diffusers",
          "euler: churn_convention must be k_diffusion or diffusers, got '", options.churn_convention(), "'");
  }
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "euler");
    EulerOptions o;
    detail::read_churn_options(r, o);
    o.churn_convention(r.get_choice("churn_convention", o.churn_convention(), {"k_diffusion", "diffusers"}));
    r.finish();
    return std::make_unique<EulerSampler>(o);
  }
  Config to_config() const override {
    Config c{{"churn_convention", options.churn_convention()}};
    detail::write_churn_options(options, c);
    return c;
  }
  std::string name() const override { return "euler"; }
  bool is_stochastic() const override { return options.s_churn() > 0 && options.s_noise() > 0; }

  /// gamma of step `st` (0 where churn is off).
  double gamma(const StepContext& st) const {
    return detail::churn_gamma(options.s_churn(), options.s_tmin(), options.s_tmax(), st);
  }

  EulerOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override {
    const TimePoint& now = st.now;
    const TimePoint& next = st.next;
    check(now.sigma > 0, "euler: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
    const bool kdiff = options.churn_convention() == "k_diffusion";
    Tensor z;
    if (kdiff && is_stochastic()) z = ctx.randn_like(x);
    const double g = gamma(st);
    if (g <= 0) {
      Prediction p = model(x, now, st);
      const auto c = detail::euler_coefficients(now, next.sigma_ve(), next.alpha);
      return {detail::lincomb(x, c.cx, p.x0, c.cx0), p};
    }
    const double sigma = now.sigma_ve();
    const double sigma_hat = sigma * (g + 1.0);
    const double noise_std = options.s_noise() * std::sqrt(sigma_hat * sigma_hat - sigma * sigma);
    if (!kdiff) {
      // diffusers: model output at the grid point, noise added afterwards, eps reused at sigma_hat.
      Prediction p = model(x, now, st);
      Tensor x_hat_ve = detail::divided(x, now.alpha);
      detail::add_scaled_(x_hat_ve, ctx.randn_like(x), noise_std);
      Tensor x_next = detail::add_scaled_(x_hat_ve, p.eps, next.sigma_ve() - sigma_hat);
      detail::scale_(x_next, next.alpha);
      return {x_next, p};
    }
    const TimePoint hat = detail::churn_point(ctx, now, g, "euler");
    Tensor x_hat = detail::divided(x, now.alpha);
    detail::add_scaled_(x_hat, z, noise_std);
    detail::scale_(x_hat, hat.alpha);
    Prediction p = model(x_hat, hat, st);
    const auto c = detail::euler_coefficients(hat, next.sigma_ve(), next.alpha);
    return {detail::lincomb(x_hat, c.cx, p.x0, c.cx0), p};
  }
};

DIFFUSE_REGISTER_SAMPLER(EulerSampler, "euler", "Euler ODE solver in sigma_ve (k-diffusion), optional EDM churn");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerK, "k_euler", "euler", {}, "A1111's name for euler");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerA1111, "Euler", "euler", {}, "A1111's label for euler");

}  // namespace diffuse
