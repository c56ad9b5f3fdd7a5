// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/euler_maruyama.h>.
#include <diffuse/samplers/euler_maruyama.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

namespace {
constexpr double kPi = 3.14159265358979323846;
}  // namespace

const EnumNames<SdeDiffusion>& sde_diffusion_names() {
  static const EnumNames<SdeDiffusion> names{
      {"sigma", SdeDiffusion::sigma},
      {"linear", SdeDiffusion::linear},
      {"sbdm", SdeDiffusion::sbdm},
      {"constant", SdeDiffusion::constant},
      {"decreasing", SdeDiffusion::decreasing},
      {"increasing_decreasing", SdeDiffusion::increasing_decreasing}};
  return names;
}

const EnumNames<SdeLastStep>& sde_last_step_names() {
  static const EnumNames<SdeLastStep> names{{"mean", SdeLastStep::mean},
                                            {"x0", SdeLastStep::x0},
                                            {"euler_maruyama", SdeLastStep::euler_maruyama}};
  return names;
}

EulerMaruyamaSampler::EulerMaruyamaSampler(EulerMaruyamaOptions o) : options(o) {
  check_enum(options.diffusion(), sde_diffusion_names(), "euler_maruyama: diffusion");
  check_enum(options.last_step(), sde_last_step_names(), "euler_maruyama: last_step");
  check(std::isfinite(options.norm()) && options.norm() >= 0,
        "euler_maruyama: norm must be finite and >= 0, got ", options.norm());
}

std::unique_ptr<Sampler> EulerMaruyamaSampler::from_config(const Config& c) {
  ConfigReader r(c, "euler_maruyama");
  EulerMaruyamaOptions o;
  o.diffusion(r.get_enum("diffusion", o.diffusion(), sde_diffusion_names()));
  o.norm(r.get_double("norm", o.norm()));
  o.last_step(r.get_enum("last_step", o.last_step(), sde_last_step_names()));
  r.finish();
  return std::make_unique<EulerMaruyamaSampler>(o);
}

Config EulerMaruyamaSampler::to_config() const {
  return {{"diffusion", enum_name(options.diffusion(), sde_diffusion_names())},
          {"norm", format_double(options.norm())},
          {"last_step", enum_name(options.last_step(), sde_last_step_names())}};
}

double EulerMaruyamaSampler::diffusion(double tau) const {
  const double norm = options.norm();
  const double s = 1.0 - tau;  // SiT's time
  switch (options.diffusion()) {
    case SdeDiffusion::sigma:
    case SdeDiffusion::linear:
      return norm * tau;
    case SdeDiffusion::sbdm:
      return norm * tau / s;
    case SdeDiffusion::constant:
      return norm;
    case SdeDiffusion::decreasing: {
      const double c = norm * std::cos(kPi * s) + 1.0;
      return 0.25 * c * c;
    }
    case SdeDiffusion::increasing_decreasing: {
      const double sn = std::sin(kPi * s);
      return norm * sn * sn;
    }
  }
  return 0.0;
}

StepResult EulerMaruyamaSampler::step_impl(const ModelFn& model, const Tensor& x,
                                           const StepContext& st, const History&,
                                           SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0, "euler_maruyama: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
  const double n = now.alpha + now.sigma, n_next = next.alpha + next.sigma;
  const double tau = now.sigma / n, h = tau - next.sigma / n_next;
  const double w = diffusion(tau);
  check(std::isfinite(w),
        "euler_maruyama: diffusion=", enum_name(options.diffusion(), sde_diffusion_names()),
        " is infinite at step ", st.index, " (t=", now.t,
        ", pure noise); start the grid below sigma = 1 or take another form");
  const bool last = next.is_clean() && options.last_step() != SdeLastStep::euler_maruyama;
  Tensor z;
  if (!last && is_stochastic()) z = ctx.randn_like(x);  // drawn first, as SiT's step
  const Prediction p = model(x, now, st);
  if (next.is_clean() && options.last_step() == SdeLastStep::x0) return {scaled(p.x0, n_next), p};
  // y' = y + h (x0 - eps (1 + w / tau)) [+ sqrt(2 w h) z]
  Tensor y = divided(x, n);
  add_scaled_(y, p.x0, h);
  add_scaled_(y, p.eps, -h * (1.0 + w / tau));
  if (z.defined()) add_scaled_(y, z, std::sqrt(2.0 * w * h));
  return {scale_(y, n_next), p};
}

DIFFUSE_REGISTER_SAMPLER(EulerMaruyamaSampler, "euler_maruyama",
                         "Euler-Maruyama on SiT's reverse SDE (diffusion form, norm, last step)");

}  // namespace diffuse
