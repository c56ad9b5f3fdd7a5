// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpmpp_sde.h>.
#include <diffuse/samplers/dpmpp_sde.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/churn.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

DpmPPSdeSampler::DpmPPSdeSampler(DpmPPSdeOptions o) : options(std::move(o)) {
  check(std::isfinite(options.eta()) && options.eta() >= 0,
        "dpmpp_sde: eta must be finite and >= 0, got ", options.eta());
  check(std::isfinite(options.s_noise()) && options.s_noise() >= 0,
        "dpmpp_sde: s_noise must be finite and >= 0, got ", options.s_noise());
  check(options.r() > 0 && options.r() <= 1, "dpmpp_sde: r must be in (0, 1], got ", options.r());
  check_enum(options.noise(), sde_noise_names(), "dpmpp_sde: noise");
}

std::unique_ptr<Sampler> DpmPPSdeSampler::from_config(const Config& c) {
  ConfigReader r(c, "dpmpp_sde");
  DpmPPSdeOptions o;
  o.eta(r.get_double("eta", o.eta()));
  o.s_noise(r.get_double("s_noise", o.s_noise()));
  o.r(r.get_double("r", o.r()));
  o.noise(r.get_enum("noise", o.noise(), sde_noise_names()));
  r.finish();
  return std::make_unique<DpmPPSdeSampler>(o);
}

Config DpmPPSdeSampler::to_config() const {
  return {{"eta", format_double(options.eta())},
          {"s_noise", format_double(options.s_noise())},
          {"r", format_double(options.r())},
          {"noise", enum_name(options.noise(), sde_noise_names())}};
}

StepResult DpmPPSdeSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                      const History&, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0 && now.alpha > 0, "dpmpp_sde: step ", st.index,
        " needs 0 < sigma_ve < inf at its start (zero terminal SNR or pure noise: alpha = 0), got "
        "t=",
        now.t, " alpha=", now.alpha, " sigma=", now.sigma);
  const Prediction p = model(x, now, st);
  if (next.is_clean()) return {scaled(p.x0, next.alpha), p};  // Euler onto sigma = 0: x0
  const double sigma = now.sigma_ve(), sigma_next = next.sigma_ve();
  if (sigma_next == sigma) return {x, p};  // zero-length final step (final=min): nothing to do
  const double t = -std::log(sigma);
  const double h = -std::log(sigma_next) - t;
  const double sigma_s = std::exp(-(t + h * options.r()));
  const bool noisy = is_stochastic();
  const Tensor x_ve = divided(x, now.alpha);

  // Step 1: to the intermediate point.
  const AncestralSplit a1 = ancestral_split(sigma, sigma_s, options.eta());
  Tensor x2 = lincomb(x_ve, a1.sigma_down / sigma, p.x0,
                      -std::expm1(std::log(a1.sigma_down) - std::log(sigma)));
  if (noisy)
    add_scaled_(x2, detail::sde_noise(ctx, st, x, options.noise(), sigma, sigma_s, "dpmpp_sde"),
                options.s_noise() * a1.sigma_up);
  const TimePoint mid = detail::off_grid_point(ctx, sigma_s, "dpmpp_sde", "the intermediate point");
  const Prediction p2 = model(scaled(x2, mid.alpha), mid, st);

  // Step 2: to the next grid point with the blended data prediction.
  const AncestralSplit a2 = ancestral_split(sigma, sigma_next, options.eta());
  const double fac = 1.0 / (2.0 * options.r());
  const Tensor blend = lincomb(p.x0, 1.0 - fac, p2.x0, fac);
  Tensor x_next = lincomb(x_ve, a2.sigma_down / sigma, blend,
                          -std::expm1(std::log(a2.sigma_down) - std::log(sigma)));
  if (noisy)
    add_scaled_(x_next,
                detail::sde_noise(ctx, st, x, options.noise(), sigma, sigma_next, "dpmpp_sde"),
                options.s_noise() * a2.sigma_up);
  return {scale_(x_next, next.alpha), p};
}

DIFFUSE_REGISTER_SAMPLER(DpmPPSdeSampler, "dpmpp_sde",
                         "DPM++ SDE (k-diffusion sample_dpmpp_sde), Brownian-tree noise");
DIFFUSE_REGISTER_SAMPLER_ALIAS(DpmPPSdeK, "k_dpmpp_sde", "dpmpp_sde", {},
                               "A1111's name for dpmpp_sde");
DIFFUSE_REGISTER_SAMPLER_ALIAS(DpmPPSdeA1111, "DPM++ SDE", "dpmpp_sde", {},
                               "A1111's label for dpmpp_sde");

}  // namespace diffuse
