// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/euler_ancestral.h>.
#include <diffuse/samplers/euler_ancestral.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

EulerAncestralSampler::EulerAncestralSampler(EulerAncestralOptions o) : options(std::move(o)) {
  check(std::isfinite(options.eta()) && options.eta() >= 0,
        "EulerAncestralOptions.eta must be finite and >= 0, got ", options.eta());
  check(std::isfinite(options.s_noise()) && options.s_noise() >= 0,
        "EulerAncestralOptions.s_noise must be finite and >= 0, got ", options.s_noise());
}

std::unique_ptr<Sampler> EulerAncestralSampler::from_config(const Config& c) {
  ConfigReader r(c, "euler_ancestral");
  EulerAncestralOptions o;
  o.eta(r.get_double("eta", o.eta()));
  o.s_noise(r.get_double("s_noise", o.s_noise()));
  r.finish();
  return std::make_unique<EulerAncestralSampler>(o);
}

Config EulerAncestralSampler::to_config() const {
  return {{"eta", format_double(options.eta())}, {"s_noise", format_double(options.s_noise())}};
}

StepResult EulerAncestralSampler::step_impl(const ModelFn& model, const Tensor& x,
                                            const StepContext& st, const History&,
                                            SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0, "euler_ancestral: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
  Prediction p = model(x, now, st);
  const auto split = ancestral_split(now.sigma_ve(), next.sigma_ve(), options.eta());
  // Deterministic part down to sigma_down, expressed in the next point's scaling alpha_next.
  const auto c = euler_coefficients(now, split.sigma_down, next.alpha);
  Tensor x_next = lincomb(x, c.cx, p.x0, c.cx0);
  const double noise_std = options.s_noise() * split.sigma_up * next.alpha;
  if (noise_std > 0) add_scaled_(x_next, ctx.randn_like(x), noise_std);
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(
    EulerAncestralSampler, "euler_ancestral",
    "Euler ancestral (k-diffusion / A1111 'Euler a'); eta=1 default, eta=0 is euler");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralA, "euler_a", "euler_ancestral", {},
                               "A1111/ComfyUI name for euler_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralKA, "k_euler_a", "euler_ancestral", {},
                               "A1111's name for euler_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralA1111, "Euler a", "euler_ancestral", {},
                               "A1111's label for euler_ancestral");

}  // namespace diffuse
