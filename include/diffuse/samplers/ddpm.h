// SPDX-License-Identifier: Apache-2.0
// DDPM ancestral sampler. Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models" (2020),
// Eq. (6), (7) and Algorithm 2; respaced chains as in Nichol & Dhariwal (2021), Appendix B.
// Checked against: diffusers DDPMScheduler.step / _get_variance (58eb52c).
//
// One step goes from grid point `now` (t) to `next` (s, the previous timestep in diffusers' words).
// Skipped training steps are handled by the respaced chain: with a = alpha_t / alpha_s,
//   beta'  = sigma_t^2 - a^2 sigma_s^2              (= 1 - abar_t / abar_s on VP schedules)
//   mean   = (alpha_s beta' / sigma_t^2) x0 + (a sigma_s^2 / sigma_t^2) x_t      Eq. (7)
//   var    = beta' sigma_s^2 / sigma_t^2            ("fixed_small", beta-tilde; clamped to 1e-20)
//          | beta'                                  ("fixed_large", Ho et al.'s sigma^2 = beta)
//   x_s    = mean + sqrt(var) z
// x0 is the denoiser's (possibly clipped or thresholded) prediction, so the mean is the
// x0-parameterised posterior mean, as in diffusers. No noise is added on the step onto the clean
// point (Algorithm 2, z = 0 at t = 1) unless diffusers_final_noise is set.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>

namespace diffuse {

struct DdpmOptions {
  /// Posterior variance. "fixed_small" (default): beta-tilde, the true posterior variance, clamped
  /// below at 1e-20 as diffusers does. "fixed_small_log": the same value, which diffusers computes as
  /// exp(0.5 * log(var)); identical here because coefficients are host doubles. "fixed_large": beta'
  /// itself (Ho et al.'s sigma_t^2 = beta_t; not clamped, and unlike ADM not replaced by beta-tilde at
  /// the last step).
  TORCH_ARG(std::string, variance_type) = "fixed_small";
  /// Also draw noise on the step onto the clean point when the current t > 0, as diffusers'
  /// DDPMScheduler.step does (its test is `t > 0`, not "not the last step"). Only grids that do not
  /// end at t = 0 see a difference (trailing spacing, steps_offset > 0): fixed_small then adds
  /// 1e-10 * z, fixed_large adds sqrt(1 - abar_t) * z to the final sample. Default false.
  TORCH_ARG(bool, diffusers_final_noise) = false;
};

class DdpmSampler final : public Sampler {
 public:
  /// The smallest variance diffusers lets through (_get_variance's torch.clamp(min=1e-20)).
  static constexpr double kMinVariance = 1e-20;

  explicit DdpmSampler(DdpmOptions o = {}) : options(std::move(o)) {
    const auto& v = options.variance_type();
    check(v == "fixed_small" || v == "fixed_small_log" || v == "fixed_large",
          "DdpmOptions.variance_type must be one of fixed_small, fixed_small_log, fixed_large, got '", v, "'");
  }
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "ddpm");
    DdpmOptions o;
    o.variance_type(r.get_choice("variance_type", o.variance_type(), {"fixed_small", "fixed_small_log", "fixed_large"}));
    o.diffusers_final_noise(r.get_bool("diffusers_final_noise", o.diffusers_final_noise()));
    r.finish();
    return std::make_unique<DdpmSampler>(o);
  }
  Config to_config() const override {
    return {{"variance_type", options.variance_type()},
            {"diffusers_final_noise", options.diffusers_final_noise() ? "true" : "false"}};
  }
  std::string name() const override { return "ddpm"; }
  bool is_stochastic() const override { return true; }

  /// Respaced beta' of the step now -> next: sigma_t^2 - (alpha_t/alpha_s)^2 sigma_s^2.
  static double step_beta(const TimePoint& now, const TimePoint& next) {
    const double a = now.alpha / next.alpha;
    return now.sigma * now.sigma - a * a * next.sigma * next.sigma;
  }

  /// The variance of the step now -> next under `variance_type` (diffusers' _get_variance with
  /// previous_timestep = next).
  static double variance(const TimePoint& now, const TimePoint& next, const std::string& variance_type) {
    const double beta = step_beta(now, next);
    if (variance_type == "fixed_large") return beta;
    const double small = beta * next.sigma * next.sigma / (now.sigma * now.sigma);
    return std::max(small, kMinVariance);
  }

  DdpmOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override {
    const TimePoint& now = st.now;
    const TimePoint& next = st.next;
    check(next.alpha > 0, "ddpm: cannot step onto a point with alpha = 0 (t=", next.t, ")");
    Prediction p = model(x, now, st);
    const double s2 = now.sigma * now.sigma;
    const double beta = step_beta(now, next);
    // Eq. (7): the posterior mean in terms of the (clipped) x0 prediction.
    const double c_x0 = next.alpha * beta / s2;
    const double c_x = (now.alpha / next.alpha) * next.sigma * next.sigma / s2;
    Tensor x_next = detail::lincomb(p.x0, c_x0, x, c_x);
    const bool noisy = !next.is_clean() || (options.diffusers_final_noise() && now.t > 0);
    if (noisy) {
      const double stddev = std::sqrt(std::max(variance(now, next, options.variance_type()), 0.0));
      detail::add_scaled_(x_next, ctx.randn_like(x), stddev);
    }
    return {x_next, p};
  }
};

DIFFUSE_REGISTER_SAMPLER(DdpmSampler, "ddpm",
                         "DDPM ancestral sampling (Ho et al. 2020) on the respaced chain; fixed_small/fixed_large variance");

}  // namespace diffuse
