// SPDX-License-Identifier: Apache-2.0
// EDM churn (Karras et al. 2022, Alg. 2 lines 4-6), shared by the euler, heun and dpm_2 samplers:
// option checks, config plumbing, gamma and the raised point; and off-grid points for the
// samplers with intermediate model calls (the step coefficients are public:
// <diffuse/samplers/coefficients.h>).
#pragma once

#include <algorithm>
#include <cmath>

#include <diffuse/config.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>

namespace diffuse::detail {

/// EDM churn (Karras et al. 2022, Alg. 2 lines 4-6), shared by euler and heun: option checks.
inline void check_churn_options(const char* who, double s_churn, double s_tmin, double s_tmax,
                                double s_noise) {
  check(std::isfinite(s_churn) && s_churn >= 0, who, ": s_churn must be finite and >= 0, got ",
        s_churn);
  check(std::isfinite(s_tmin) && s_tmin >= 0, who, ": s_tmin must be finite and >= 0, got ",
        s_tmin);
  check(!std::isnan(s_tmax) && s_tmax >= s_tmin, who, ": s_tmax must be >= s_tmin (", s_tmin,
        "), got ", s_tmax);
  check(std::isfinite(s_noise) && s_noise >= 0, who, ": s_noise must be finite and >= 0, got ",
        s_noise);
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

/// The point at noise level sigma_ve off the grid (a churned sigma_hat, a solver's intermediate
/// point): its model time comes from the schedule (fractional for discrete schedules, like
/// k-diffusion's sigma_to_t). `what` names the point in the error when there is no schedule.
inline TimePoint off_grid_point(const SampleContext& ctx, double sigma_ve, const char* who,
                                const char* what) {
  check(ctx.schedule != nullptr, who, ": ", what, " needs the noise schedule to find the model ",
        "time of sigma_ve=", sigma_ve, " (SampleContext.schedule is null)");
  return ctx.schedule->at_sigma_ve(sigma_ve);
}

/// The point at the raised noise level sigma_hat = sigma_ve (1 + gamma) (off_grid_point).
inline TimePoint churn_point(const SampleContext& ctx, const TimePoint& now, double gamma,
                             const char* who) {
  return off_grid_point(ctx, now.sigma_ve() * (1.0 + gamma), who, "s_churn > 0");
}

}  // namespace diffuse::detail
