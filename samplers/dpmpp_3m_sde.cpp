// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpmpp_3m_sde.h>.
#include <diffuse/samplers/dpmpp_3m_sde.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

DpmPP3MSdeSampler::DpmPP3MSdeSampler(DpmPP3MSdeOptions o) : options(std::move(o)) {
  check(std::isfinite(options.eta()) && options.eta() >= 0,
        "dpmpp_3m_sde: eta must be finite and >= 0, got ", options.eta());
  check(std::isfinite(options.s_noise()) && options.s_noise() >= 0,
        "dpmpp_3m_sde: s_noise must be finite and >= 0, got ", options.s_noise());
  check_enum(options.noise(), sde_noise_names(), "dpmpp_3m_sde: noise");
}

std::unique_ptr<Sampler> DpmPP3MSdeSampler::from_config(const Config& c) {
  ConfigReader r(c, "dpmpp_3m_sde");
  DpmPP3MSdeOptions o;
  o.eta(r.get_double("eta", o.eta()));
  o.s_noise(r.get_double("s_noise", o.s_noise()));
  o.noise(r.get_enum("noise", o.noise(), sde_noise_names()));
  r.finish();
  return std::make_unique<DpmPP3MSdeSampler>(o);
}

Config DpmPP3MSdeSampler::to_config() const {
  return {{"eta", format_double(options.eta())},
          {"s_noise", format_double(options.s_noise())},
          {"noise", enum_name(options.noise(), sde_noise_names())}};
}

StepResult DpmPP3MSdeSampler::step_impl(const ModelFn& model, const Tensor& x,
                                        const StepContext& st, const History& history,
                                        SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0 && now.alpha > 0, "dpmpp_3m_sde: step ", st.index,
        " needs 0 < sigma_ve < inf at its start (zero terminal SNR or pure noise: alpha = 0), got "
        "t=",
        now.t, " alpha=", now.alpha, " sigma=", now.sigma);
  const Prediction p = model(x, now, st);
  if (next.is_clean()) return {scaled(p.x0, next.alpha), p};  // the denoising step
  const double sigma = now.sigma_ve(), sigma_next = next.sigma_ve();
  if (sigma_next == sigma) return {x, p};  // zero-length final step (final=min): nothing to do
  const double h = std::log(sigma) - std::log(sigma_next);
  const double h_eta = h * (options.eta() + 1.0);
  Tensor x_next = lincomb(divided(x, now.alpha), std::exp(-h_eta), p.x0, -std::expm1(-h_eta));
  const size_t n = history.size();
  const double phi_2 = std::expm1(-h_eta) / h_eta + 1.0;
  if (n >= 1) {
    const Tensor& m1 = history.preds[n - 1].x0;
    const double h_1 = std::log(history.times[n - 1].sigma_ve()) - std::log(sigma);
    const double r0 = h_1 / h;
    const Tensor d1_0 = diff_divided(p.x0, m1, r0);
    if (n >= 2) {
      const Tensor& m2 = history.preds[n - 2].x0;
      const double h_2 =
          std::log(history.times[n - 2].sigma_ve()) - std::log(history.times[n - 1].sigma_ve());
      const double r1 = h_2 / h;
      const Tensor d1_1 = diff_divided(m1, m2, r1);
      const Tensor dd = diff_scaled(d1_0, d1_1, 1.0);
      const double phi_3 = phi_2 / h_eta - 0.5;
      // phi_2 (d1_0 + dd r0 / (r0 + r1)) - phi_3 dd / (r0 + r1)
      add_scaled_(x_next, d1_0, phi_2);
      add_scaled_(x_next, dd, (phi_2 * r0 - phi_3) / (r0 + r1));
    } else {
      add_scaled_(x_next, d1_0, phi_2);
    }
  }
  if (is_stochastic())
    add_scaled_(x_next,
                detail::sde_noise(ctx, st, x, options.noise(), sigma, sigma_next, "dpmpp_3m_sde"),
                sigma_next * std::sqrt(-std::expm1(-2.0 * h * options.eta())) * options.s_noise());
  return {scale_(x_next, next.alpha), p};
}

DIFFUSE_REGISTER_SAMPLER(DpmPP3MSdeSampler, "dpmpp_3m_sde",
                         "DPM++ 3M SDE (k-diffusion sample_dpmpp_3m_sde), Brownian-tree noise");

}  // namespace diffuse
