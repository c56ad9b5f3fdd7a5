// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpmpp_2s_ancestral.h>.
#include <diffuse/samplers/dpmpp_2s_ancestral.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/churn.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

DpmPP2SAncestralSampler::DpmPP2SAncestralSampler(DpmPP2SAncestralOptions o)
    : options(std::move(o)) {
  check(std::isfinite(options.eta()) && options.eta() >= 0,
        "dpmpp_2s_ancestral: eta must be finite and >= 0, got ", options.eta());
  check(std::isfinite(options.s_noise()) && options.s_noise() >= 0,
        "dpmpp_2s_ancestral: s_noise must be finite and >= 0, got ", options.s_noise());
}

std::unique_ptr<Sampler> DpmPP2SAncestralSampler::from_config(const Config& c) {
  ConfigReader r(c, "dpmpp_2s_ancestral");
  DpmPP2SAncestralOptions o;
  o.eta(r.get_double("eta", o.eta()));
  o.s_noise(r.get_double("s_noise", o.s_noise()));
  r.finish();
  return std::make_unique<DpmPP2SAncestralSampler>(o);
}

Config DpmPP2SAncestralSampler::to_config() const {
  return {{"eta", format_double(options.eta())}, {"s_noise", format_double(options.s_noise())}};
}

StepResult DpmPP2SAncestralSampler::step_impl(const ModelFn& model, const Tensor& x,
                                              const StepContext& st, const History&,
                                              SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0 && now.alpha > 0, "dpmpp_2s_ancestral: step ", st.index,
        " needs 0 < sigma_ve < inf at its start (zero terminal SNR or pure noise: alpha = 0), got "
        "t=",
        now.t, " alpha=", now.alpha, " sigma=", now.sigma);
  const Prediction p = model(x, now, st);
  const double sigma = now.sigma_ve();
  const AncestralSplit split = ancestral_split(sigma, next.sigma_ve(), options.eta());
  Tensor x_next;
  if (split.sigma_down == 0) {
    x_next = p.x0.clone();  // Euler onto sigma_down = 0
  } else {
    const double h = std::log(sigma) - std::log(split.sigma_down);
    const double sigma_s = std::exp(std::log(sigma) - 0.5 * h);
    const TimePoint mid =
        detail::off_grid_point(ctx, sigma_s, "dpmpp_2s_ancestral", "the midpoint");
    const Tensor x_ve = divided(x, now.alpha);
    const Tensor x_s = lincomb(x_ve, sigma_s / sigma, p.x0, -std::expm1(-0.5 * h));
    const Prediction p2 = model(scaled(x_s, mid.alpha), mid, st);
    x_next = lincomb(x_ve, split.sigma_down / sigma, p2.x0, -std::expm1(-h));
  }
  if (!next.is_clean() && split.sigma_up > 0 && options.s_noise() > 0)
    ctx.add_randn_(x_next, options.s_noise() * split.sigma_up);
  return {scale_(x_next, next.alpha), p};
}

DIFFUSE_REGISTER_SAMPLER(DpmPP2SAncestralSampler, "dpmpp_2s_ancestral",
                         "DPM++ 2S ancestral (k-diffusion sample_dpmpp_2s_ancestral); eta=0: "
                         "deterministic DPM-Solver++(2S) with log-midpoints");
DIFFUSE_REGISTER_SAMPLER_ALIAS(DpmPP2SAK, "k_dpmpp_2s_a", "dpmpp_2s_ancestral", {},
                               "A1111's name for dpmpp_2s_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(DpmPP2SAA1111, "DPM++ 2S a", "dpmpp_2s_ancestral", {},
                               "A1111's label for dpmpp_2s_ancestral");

}  // namespace diffuse
