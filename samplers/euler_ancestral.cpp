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
  check_enum(options.split(), ancestral_rule_names(), "euler_ancestral: split");
  check(
      options.split() != AncestralRule::renoise || options.eta() == 1.0,
      "euler_ancestral: split=renoise redraws all of the noise at every step, so eta must stay 1, "
      "got eta=",
      options.eta());
}

std::unique_ptr<Sampler> EulerAncestralSampler::from_config(const Config& c) {
  ConfigReader r(c, "euler_ancestral");
  EulerAncestralOptions o;
  o.eta(r.get_double("eta", o.eta()));
  o.s_noise(r.get_double("s_noise", o.s_noise()));
  o.split(r.get_enum("split", o.split(), ancestral_rule_names()));
  r.finish();
  return std::make_unique<EulerAncestralSampler>(o);
}

Config EulerAncestralSampler::to_config() const {
  return {{"eta", format_double(options.eta())},
          {"s_noise", format_double(options.s_noise())},
          {"split", enum_name(options.split(), ancestral_rule_names())}};
}

StepResult EulerAncestralSampler::step_impl(const ModelFn& model, const Tensor& x,
                                            const StepContext& st, const History&,
                                            SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0, "euler_ancestral: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
  double noise_std = 0;
  const auto c = ancestral_coefficients(resolve_ancestral_rule(options.split(), ctx.schedule), now,
                                        next, options.eta(), options.s_noise(), &noise_std);
  // The deterministic part, computed by the model function in its conversion pass where it can.
  const LinearUpdate update{LinearUpdate::Form::kXX0, c.cx, c.cx0};
  UpdatedPrediction r = predict_with_update(model, x, st, &update);
  if (noise_std > 0) ctx.add_randn_(r.x_next, noise_std);
  return {std::move(r.x_next), std::move(r.pred)};
}

DIFFUSE_REGISTER_SAMPLER(
    EulerAncestralSampler, "euler_ancestral",
    "Euler ancestral (k-diffusion / A1111 'Euler a'; ComfyUI's rule on flow); eta=1 default, "
    "eta=0 is euler");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralA, "euler_a", "euler_ancestral", {},
                               "A1111/ComfyUI name for euler_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralKA, "k_euler_a", "euler_ancestral", {},
                               "A1111's name for euler_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerAncestralA1111, "Euler a", "euler_ancestral", {},
                               "A1111's label for euler_ancestral");

}  // namespace diffuse
