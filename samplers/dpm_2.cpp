// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpm_2.h>.
#include <diffuse/samplers/dpm_2.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/churn.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

Dpm2Sampler::Dpm2Sampler(Dpm2Options o) : options(std::move(o)) {
  detail::check_churn_options("dpm_2", options.s_churn(), options.s_tmin(), options.s_tmax(),
                              options.s_noise());
  check(std::isfinite(options.eta()) && options.eta() >= 0,
        "dpm_2: eta must be finite and >= 0, got ", options.eta());
  check(options.eta() == 0 || options.s_churn() == 0, "dpm_2: churn (s_churn=", options.s_churn(),
        ") and ancestral noise (eta=", options.eta(),
        ") do not combine (k-diffusion's sample_dpm_2 has churn, sample_dpm_2_ancestral eta)");
}

std::unique_ptr<Sampler> Dpm2Sampler::from_config(const Config& c) {
  ConfigReader r(c, "dpm_2");
  Dpm2Options o;
  o.eta(r.get_double("eta", o.eta()));
  detail::read_churn_options(r, o);
  r.finish();
  return std::make_unique<Dpm2Sampler>(o);
}

Config Dpm2Sampler::to_config() const {
  Config c{{"eta", format_double(options.eta())}};
  detail::write_churn_options(options, c);
  return c;
}

StepResult Dpm2Sampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                  const History&, SampleContext& ctx) const {
  TimePoint now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0 && now.alpha > 0, "dpm_2: step ", st.index,
        " needs 0 < sigma_ve < inf at its start (zero terminal SNR or pure noise: alpha = 0), got "
        "t=",
        now.t, " alpha=", now.alpha, " sigma=", now.sigma);
  Tensor x_ve = divided(x, now.alpha);
  if (options.eta() == 0 && is_stochastic()) {
    const Tensor z = ctx.randn_like(x);  // drawn every step, as sample_dpm_2
    const double g = detail::churn_gamma(options.s_churn(), options.s_tmin(), options.s_tmax(), st);
    if (g > 0) {
      const TimePoint hat = detail::churn_point(ctx, now, g, "dpm_2");
      const double sigma = now.sigma_ve(), sigma_hat = hat.sigma_ve();
      add_scaled_(x_ve, z, options.s_noise() * std::sqrt(sigma_hat * sigma_hat - sigma * sigma));
      now = hat;
    }
  }
  const double sigma = now.sigma_ve();
  const Prediction p = model(scaled(x_ve, now.alpha), now, st);
  const AncestralSplit split = ancestral_split(sigma, next.sigma_ve(), options.eta());
  const double target = split.sigma_down;
  if (target == 0) return {scaled(p.x0, next.alpha), p};  // Euler onto sigma = 0: x0
  const double sigma_mid = std::exp(0.5 * (std::log(sigma) + std::log(target)));
  const TimePoint mid = detail::off_grid_point(ctx, sigma_mid, "dpm_2", "the midpoint");
  Tensor x_mid = x_ve.clone();
  add_scaled_(x_mid, diff_divided(x_ve, p.x0, sigma), sigma_mid - sigma);
  const Prediction p2 = model(scaled(x_mid, mid.alpha), mid, st);
  Tensor x_next = x_ve;
  add_scaled_(x_next, diff_divided(x_mid, p2.x0, sigma_mid), target - sigma);
  if (split.sigma_up > 0 && options.s_noise() > 0)
    ctx.add_randn_(x_next, options.s_noise() * split.sigma_up);
  return {scale_(x_next, next.alpha), p};
}

DIFFUSE_REGISTER_SAMPLER(Dpm2Sampler, "dpm_2",
                         "DPM2 (k-diffusion sample_dpm_2; eta > 0: sample_dpm_2_ancestral)");
DIFFUSE_REGISTER_SAMPLER_ALIAS(Dpm2K, "k_dpm_2", "dpm_2", {}, "A1111's name for dpm_2");
DIFFUSE_REGISTER_SAMPLER_ALIAS(Dpm2A1111, "DPM2", "dpm_2", {}, "A1111's label for dpm_2");
DIFFUSE_REGISTER_SAMPLER_ALIAS(Dpm2Ancestral, "dpm_2_ancestral", "dpm_2", (Config{{"eta", "1"}}),
                               "DPM2 ancestral (k-diffusion / ComfyUI name): dpm_2 eta=1");
DIFFUSE_REGISTER_SAMPLER_ALIAS(Dpm2AncestralK, "k_dpm_2_a", "dpm_2", (Config{{"eta", "1"}}),
                               "A1111's name for dpm_2_ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(Dpm2AncestralA1111, "DPM2 a", "dpm_2", (Config{{"eta", "1"}}),
                               "A1111's label for dpm_2_ancestral");

}  // namespace diffuse
