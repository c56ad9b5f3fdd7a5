// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/heun.h>.
#include <diffuse/samplers/heun.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/churn.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

HeunSampler::HeunSampler(HeunOptions o) : options(o) {
  detail::check_churn_options("heun", options.s_churn(), options.s_tmin(), options.s_tmax(),
                              options.s_noise());
}

std::unique_ptr<Sampler> HeunSampler::from_config(const Config& c) {
  ConfigReader r(c, "heun");
  HeunOptions o;
  detail::read_churn_options(r, o);
  r.finish();
  return std::make_unique<HeunSampler>(o);
}

Config HeunSampler::to_config() const {
  Config c;
  detail::write_churn_options(options, c);
  return c;
}

StepResult HeunSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                  const History&, SampleContext& ctx) const {
  const TimePoint& next = st.next;
  TimePoint now = st.now;
  check(now.sigma > 0 && now.alpha > 0, "heun: step ", st.index,
        " needs 0 < sigma_ve < inf at its start, got t=", now.t, " alpha=", now.alpha,
        " sigma=", now.sigma,
        " (for zero terminal SNR set the schedule's terminal_alphas_cumprod)");
  Tensor xc = x;
  if (is_stochastic()) {
    const Tensor z = ctx.randn_like(x);  // every step, as k-diffusion's sample_heun
    const double g = detail::churn_gamma(options.s_churn(), options.s_tmin(), options.s_tmax(), st);
    if (g > 0) {
      const TimePoint hat = detail::churn_point(ctx, now, g, "heun");
      const double sigma = now.sigma_ve(), sigma_hat = hat.sigma_ve();
      xc = divided(x, now.alpha);
      add_scaled_(xc, z, options.s_noise() * std::sqrt(sigma_hat * sigma_hat - sigma * sigma));
      scale_(xc, hat.alpha);
      now = hat;
    }
  }
  Prediction p = model(xc, now, st);
  const auto c = euler_coefficients(now, next.sigma_ve(), next.alpha);
  Tensor x_euler = lincomb(xc, c.cx, p.x0, c.cx0);
  if (next.is_clean()) return {x_euler, p};
  // Corrector: the slope at the Euler point, averaged with the first one (trapezoidal rule).
  const Prediction p2 = model(x_euler, next, st);
  const double sigma = now.sigma_ve(), sigma_next = next.sigma_ve();
  const Tensor x_ve = divided(xc, now.alpha);
  Tensor d = diff_divided(x_ve, p.x0, sigma);
  Tensor d2 = divided(x_euler, next.alpha).sub_(p2.x0);
  divide_(d2, sigma_next);
  scale_(d.add_(d2), 0.5 * (sigma_next - sigma));
  Tensor x_next = d.add_(x_ve);
  scale_(x_next, next.alpha);
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(HeunSampler, "heun",
                         "Heun 2nd order (EDM Alg. 1; optional Alg. 2 churn); Euler onto sigma=0");
DIFFUSE_REGISTER_SAMPLER_ALIAS(HeunK, "k_heun", "heun", {}, "A1111's name for heun");
DIFFUSE_REGISTER_SAMPLER_ALIAS(HeunA1111, "Heun", "heun", {}, "A1111's label for heun");

}  // namespace diffuse
