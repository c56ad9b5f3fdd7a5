// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/euler.h>.
#include <diffuse/samplers/euler.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/churn.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

namespace {

const std::vector<std::pair<std::string, EulerChurnConvention>>& churn_convention_names() {
  static const std::vector<std::pair<std::string, EulerChurnConvention>> names{
      {"k_diffusion", EulerChurnConvention::kKDiffusion},
      {"diffusers", EulerChurnConvention::kDiffusers}};
  return names;
}

}  // namespace

EulerSampler::EulerSampler(EulerOptions o) : options(std::move(o)) {
  detail::check_churn_options("euler", options.s_churn(), options.s_tmin(), options.s_tmax(),
                              options.s_noise());
  check(options.churn_convention() == EulerChurnConvention::kKDiffusion ||
            options.churn_convention() == EulerChurnConvention::kDiffusers,
        "euler: churn_convention must be kKDiffusion or kDiffusers, got ",
        static_cast<int>(options.churn_convention()));
}

std::unique_ptr<Sampler> EulerSampler::from_config(const Config& c) {
  ConfigReader r(c, "euler");
  EulerOptions o;
  detail::read_churn_options(r, o);
  o.churn_convention(
      r.get_enum("churn_convention", o.churn_convention(), churn_convention_names()));
  r.finish();
  return std::make_unique<EulerSampler>(o);
}

Config EulerSampler::to_config() const {
  Config c{{"churn_convention", enum_name(options.churn_convention(), churn_convention_names())}};
  detail::write_churn_options(options, c);
  return c;
}

double EulerSampler::gamma(const StepContext& st) const {
  return detail::churn_gamma(options.s_churn(), options.s_tmin(), options.s_tmax(), st);
}

StepResult EulerSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                   const History&, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0, "euler: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
  const bool kdiff = options.churn_convention() == EulerChurnConvention::kKDiffusion;
  Tensor z;
  if (kdiff && is_stochastic()) z = ctx.randn_like(x);
  const double g = gamma(st);
  if (g <= 0) {
    // The update, computed by the model function in its conversion pass where it can.
    const auto c = euler_coefficients(now, next.sigma_ve(), next.alpha);
    const LinearUpdate update{LinearUpdate::Form::kXX0, c.cx, c.cx0};
    UpdatedPrediction r = predict_with_update(model, x, st, &update);
    return {std::move(r.x_next), std::move(r.pred)};
  }
  const double sigma = now.sigma_ve();
  const double sigma_hat = sigma * (g + 1.0);
  const double noise_std = options.s_noise() * std::sqrt(sigma_hat * sigma_hat - sigma * sigma);
  if (!kdiff) {
    // diffusers: model output at the grid point, noise added afterwards, eps reused at sigma_hat.
    Prediction p = model(x, now, st);
    Tensor x_hat_ve = divided(x, now.alpha);
    ctx.add_randn_(x_hat_ve, noise_std);
    Tensor x_next = add_scaled_(x_hat_ve, p.eps, next.sigma_ve() - sigma_hat);
    scale_(x_next, next.alpha);
    return {x_next, p};
  }
  const TimePoint hat = detail::churn_point(ctx, now, g, "euler");
  Tensor x_hat = divided(x, now.alpha);
  add_scaled_(x_hat, z, noise_std);
  scale_(x_hat, hat.alpha);
  Prediction p = model(x_hat, hat, st);
  const auto c = euler_coefficients(hat, next.sigma_ve(), next.alpha);
  return {lincomb(x_hat, c.cx, p.x0, c.cx0), p};
}

DIFFUSE_REGISTER_SAMPLER(EulerSampler, "euler",
                         "Euler ODE solver in sigma_ve (k-diffusion), optional EDM churn");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerK, "k_euler", "euler", {}, "A1111's name for euler");
DIFFUSE_REGISTER_SAMPLER_ALIAS(EulerA1111, "Euler", "euler", {}, "A1111's label for euler");

}  // namespace diffuse
