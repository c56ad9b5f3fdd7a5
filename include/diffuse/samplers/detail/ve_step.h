// SPDX-License-Identifier: Apache-2.0
// Shared maths of the k-diffusion-style samplers (Euler, Euler ancestral, Heun), written on the
// VP-native state x = alpha * x0 + sigma * eps. k-diffusion works on x_ve = x / alpha with noise
// level sigma_ve = sigma / alpha; its Euler step x_ve' = x_ve + d (sigma_ve' - sigma_ve), with
// d = (x_ve - x0) / sigma_ve, becomes after multiplying by alpha':
//   x' = (alpha' sigma_ve' / sigma) x + alpha' (1 - sigma_ve' / sigma_ve) x0,
// where alpha * sigma_ve = sigma was used on the first coefficient. The ratio sigma_ve'/sigma_ve is 0
// when alpha = 0 (sigma_ve = inf), so the step stays finite at zero terminal SNR, and it lands
// exactly on x0 when sigma' = 0.
#pragma once

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/config.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace diffuse::detail {

/// sigma_ve' / sigma_ve, with inf / inf excluded: 0 when the current point has alpha = 0.
inline double ve_ratio(double sigma_ve_next, double sigma_ve_now) {
  if (std::isinf(sigma_ve_now)) return 0.0;
  return sigma_ve_next / sigma_ve_now;
}

/// Coefficients (cx, cx0) of x' = cx * x + cx0 * x0 for a k-diffusion Euler step from `now`
/// (noise level sigma_ve of `now`) to noise level sigma_ve_to, then scaled by alpha_to.
/// `now.sigma` must be > 0.
struct EulerCoefficients {
  double cx, cx0;
};
inline EulerCoefficients euler_coefficients(const TimePoint& now, double sigma_ve_to, double alpha_to) {
  const double r = ve_ratio(sigma_ve_to, now.sigma_ve());
  return {alpha_to * sigma_ve_to / now.sigma, alpha_to * (1.0 - r)};
}

/// k-diffusion get_ancestral_step (VE units): the deterministic part steps to sigma_down, then
/// noise of standard deviation sigma_up is added, so that sigma_down^2 + sigma_up^2 = sigma_next^2.
///   sigma_up = min(sigma_next, eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))
/// eta = 0 gives sigma_up = 0 (plain Euler); sigma = inf is allowed (ratio 0).
struct AncestralSplit {
  double sigma_down, sigma_up;
};
inline AncestralSplit ancestral_split(double sigma_ve, double sigma_ve_next, double eta) {
  if (eta == 0.0 || sigma_ve_next == 0.0) return {sigma_ve_next, 0.0};
  const double r = ve_ratio(sigma_ve_next, sigma_ve);
  const double up = std::min(sigma_ve_next, eta * sigma_ve_next * std::sqrt(std::max(0.0, 1.0 - r * r)));
  return {std::sqrt(std::max(0.0, sigma_ve_next * sigma_ve_next - up * up)), up};
}

/// EDM churn (Karras et al. 2022, Alg. 2 lines 4-6), shared by euler and heun: option checks.
inline void check_churn_options(const char* who, double s_churn, double s_tmin, double s_tmax, double s_noise) {
  check(std::isfinite(s_churn) && s_churn >= 0, who, ": s_churn must be finite and >= 0, got ", s_churn);
  check(std::isfinite(s_tmin) && s_tmin >= 0, who, ": s_tmin must be finite and >= 0, got ", s_tmin);
  check(!std::isnan(s_tmax) && s_tmax >= s_tmin, who, ": s_tmax must be >= s_tmin (", s_tmin, "), got ", s_tmax);
  check(std::isfinite(s_noise) && s_noise >= 0, who, ": s_noise must be finite and >= 0, got ", s_noise);
}

/// Reads the four churn options (s_churn, s_tmin, s_tmax, s_noise) of an options struct `O`.
template <class O>
void read_churn_options(ConfigReader& r, O& o) {
  o.s_churn(r.get_double("s_churn", o.s_churn()));
  o.s_tmin(r.get_double("s_tmin", o.s_tmin()));
  o.s_tmax(r.get_double("s_tmax", o.s_tmax()));  // omitted for +inf (config values must be finite)
  o.s_noise(r.get_double("s_noise", o.s_noise()));
}

/// Writes them back (s_tmax only when finite).
template <class O>
void write_churn_options(const O& o, Config& c) {
  c["s_churn"] = format_double(o.s_churn());
  c["s_tmin"] = format_double(o.s_tmin());
  c["s_noise"] = format_double(o.s_noise());
  if (std::isfinite(o.s_tmax())) c["s_tmax"] = format_double(o.s_tmax());
}

/// gamma = min(s_churn / num_steps, sqrt(2) - 1) while s_tmin <= sigma_ve <= s_tmax, else 0. A
/// point with alpha = 0 (sigma_ve = inf) cannot be raised further and gets 0.
inline double churn_gamma(double s_churn, double s_tmin, double s_tmax, const StepContext& st) {
  const double sigma = st.now.sigma_ve();
  if (s_churn <= 0 || !std::isfinite(sigma) || sigma < s_tmin || sigma > s_tmax) return 0.0;
  return std::min(s_churn / static_cast<double>(st.num_steps), std::sqrt(2.0) - 1.0);
}

/// The point at the raised noise level sigma_hat = sigma_ve (1 + gamma); its model time comes from
/// the schedule (fractional for discrete schedules, like k-diffusion's sigma_to_t).
inline TimePoint churn_point(const SampleContext& ctx, const TimePoint& now, double gamma, const char* who) {
  const double sigma_hat = now.sigma_ve() * (1.0 + gamma);
  check(ctx.schedule != nullptr, who,
        ": s_churn > 0 needs the noise schedule to find the model time of sigma_hat=", sigma_hat,
        " (SampleContext.schedule is null)");
  return ctx.schedule->at_sigma_ve(sigma_hat);
}

}  // namespace diffuse::detail
