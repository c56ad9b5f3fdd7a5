// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/heun.h>.
#include <diffuse/samplers/heun.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/churn.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

const EnumNames<HeunSpace>& heun_space_names() {
  static const EnumNames<HeunSpace> names{
      {"auto", HeunSpace::automatic}, {"ve", HeunSpace::ve}, {"flow", HeunSpace::flow}};
  return names;
}

HeunSampler::HeunSampler(HeunOptions o) : options(o) {
  detail::check_churn_options("heun", options.s_churn(), options.s_tmin(), options.s_tmax(),
                              options.s_noise());
  check_enum(options.space(), heun_space_names(), "heun: space");
  check(options.space() != HeunSpace::flow || !is_stochastic(),
        "heun: churn (s_churn > 0) needs space=ve or auto, got space=flow");
}

std::unique_ptr<Sampler> HeunSampler::from_config(const Config& c) {
  ConfigReader r(c, "heun");
  HeunOptions o;
  detail::read_churn_options(r, o);
  o.space(r.get_enum("space", o.space(), heun_space_names()));
  r.finish();
  return std::make_unique<HeunSampler>(o);
}

Config HeunSampler::to_config() const {
  Config c;
  detail::write_churn_options(options, c);
  c["space"] = enum_name(options.space(), heun_space_names());
  return c;
}

StepResult HeunSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                  const History&, SampleContext& ctx) const {
  const TimePoint& next = st.next;
  TimePoint now = st.now;
  const bool flow = options.space() == HeunSpace::flow ||
                    (options.space() == HeunSpace::automatic && !is_stochastic() &&
                     ctx.schedule != nullptr && ctx.schedule->rectified_flow());
  if (flow) {
    // y = x / (alpha + sigma), tau = sigma / (alpha + sigma), dy/dtau = eps - x0.
    check(now.sigma > 0, "heun: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
    const double n = now.alpha + now.sigma, n_next = next.alpha + next.sigma;
    const double dtau = next.sigma / n_next - now.sigma / n;
    const Prediction p = model(x, now, st);
    Tensor v = p.eps - p.x0;
    Tensor y_euler = divided(x, n);
    add_scaled_(y_euler, v, dtau);
    Tensor x_euler = scaled(y_euler, n_next);
    if (next.is_clean()) return {x_euler, p};
    const Prediction p2 = model(x_euler, next, st);
    v.add_(p2.eps).sub_(p2.x0);
    Tensor y = divided(x, n);
    add_scaled_(y, v, 0.5 * dtau);
    return {scale_(y, n_next), p};
  }
  check(now.sigma > 0 && now.alpha > 0, "heun: step ", st.index,
        " needs 0 < sigma_ve < inf at its start, got t=", now.t, " alpha=", now.alpha,
        " sigma=", now.sigma,
        " (for zero terminal SNR set the schedule's terminal_alphas_cumprod; at pure noise use "
        "space=flow)");
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
