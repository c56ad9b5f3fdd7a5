// SPDX-License-Identifier: Apache-2.0
// Euler ancestral sampler ("Euler a"): an Euler step in sigma_ve down to sigma_down, then fresh
// noise of standard deviation s_noise * sigma_up, with the ancestral split of k-diffusion's
// get_ancestral_step (methods.md §1.4):
//   sigma_up   = min(sigma_next, eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))
//   sigma_down = sqrt(sigma_next^2 - sigma_up^2)
// eta = 1 (default) has the DDPM posterior's noise level, eta = 0 is plain Euler. The step onto
// sigma = 0 adds no noise and draws none.
// Checked against: k-diffusion sample_euler_ancestral (4601bf0), diffusers
// EulerAncestralDiscreteScheduler.step (58eb52c, which is eta = s_noise = 1; numbers in
// tests/samplers/euler_ancestral_test.cpp).
#pragma once

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>
#include <diffuse/samplers/detail/ve_step.h>
#include <torch/arg.h>

#include <cmath>
#include <memory>
#include <string>

namespace diffuse {

struct EulerAncestralOptions {
  /// Share of the step's noise that is re-drawn. Default 1 (diffusers / A1111 "Euler a");
  /// 0 is deterministic Euler; must be >= 0 (values above 1 are capped by sigma_up <= sigma_next).
  TORCH_ARG(double, eta) = 1.0;
  /// Scale of the added noise. Default 1; must be >= 0.
  TORCH_ARG(double, s_noise) = 1.0;
};

class EulerAncestralSampler final : public Sampler {
 public:
  explicit EulerAncestralSampler(EulerAncestralOptions o = {}) : options(std::move(o)) {
    check(std::isfinite(options.eta()) && options.eta() >= 0, "EulerAncestralOptions.eta must be finite and >= 0, got ",
          options.eta());
    check(std::isfinite(options.s_noise()) && options.s_noise() >= 0,
          "EulerAncestralOptions.s_noise must be finite and >= 0, got ", options.s_noise());
  }
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "euler_ancestral");
    EulerAncestralOptions o;
    o.eta(r.get_double("eta", o.eta()));
    o.s_noise(r.get_double("s_noise", o.s_noise()));
    r.finish();
    return std::make_unique<EulerAncestralSampler>(o);
  }
  Config to_config() const override {
    return {{"eta", format_double(options.eta())}, {"s_noise", format_double(options.s_noise())}};
  }
  std::string name() const override { return "euler_ancestral"; }
  bool is_stochastic() const override { return options.eta() > 0 && options.s_noise() > 0; }

  EulerAncestralOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override {
    const TimePoint& now = st.now;
    const TimePoint& next = st.next;
    check(now.sigma > 0, "euler_ancestral: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
    Prediction p = model(x, now, st);
    const auto split = detail::ancestral_split(now.sigma_ve(), next.sigma_ve(), options.eta());
    // Deterministic part down to sigma_down, expressed in the next point's scaling alpha_next.
    const auto c = detail::euler_coefficients(now, split.sigma_down, next.alpha);
    Tensor x_next = detail::lincomb(x, c.cx, p.x0, c.cx0);
    const double noise_std = options.s_noise() * split.sigma_up * next.alpha;
    if (noise_std > 0) detail::add_scaled_(x_next, ctx.randn_like(x), noise_std);
    return {x_next, p};
  }
};

DIFFUSE_REGISTER_SAMPLER(EulerAncestralSampler, "euler_ancestral",
                         "Euler ancestral (k-diffusion / A1111 'Euler a'); eta=1 default, eta=0 is euler");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralA, "euler_a", "euler_ancestral", {},
                               "A1111/ComfyUI name for euler_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralKA, "k_euler_a", "euler_ancestral", {},
                               "A1111's name for euler_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralA1111, "Euler a", "euler_ancestral", {}, "A1111's label for euler_ancestral");

}  // namespace diffuse
