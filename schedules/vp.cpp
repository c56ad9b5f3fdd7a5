// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/vp.h>.
#include <diffuse/schedules/vp.h>

#include <cmath>
#include <vector>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>

namespace diffuse {

VpSchedule::VpSchedule(VpScheduleOptions o) : options(o) {
  check(o.beta_min() >= 0 && o.beta_max() > o.beta_min(),
        "vp schedule needs 0 <= beta_min < beta_max, got beta_min=", o.beta_min(),
        " beta_max=", o.beta_max());
  check(o.t_min() > 0 && o.t_min() < 1, "vp schedule: t_min must be in (0, 1), got ", o.t_min());
}

std::unique_ptr<NoiseSchedule> VpSchedule::from_config(const Config& c) {
  ConfigReader r(c, "vp schedule");
  VpScheduleOptions o;
  o.beta_min(r.get_double("beta_min", o.beta_min()));
  o.beta_max(r.get_double("beta_max", o.beta_max()));
  o.t_min(r.get_double("t_min", o.t_min()));
  r.finish();
  return std::make_unique<VpSchedule>(o);
}

Config VpSchedule::to_config() const {
  return {{"beta_min", format_double(options.beta_min())},
          {"beta_max", format_double(options.beta_max())},
          {"t_min", format_double(options.t_min())}};
}

double VpSchedule::log_alpha(double t) const {
  const double d = options.beta_max() - options.beta_min();
  return -0.25 * t * t * d - 0.5 * t * options.beta_min();
}

TimePoint VpSchedule::at(double t) const {
  check(std::isfinite(t) && t >= 0 && t <= 1, "vp schedule: t=", t, " is outside [0, 1]");
  const double la = log_alpha(t);
  return TimePoint{t, std::exp(la), std::sqrt(-std::expm1(2 * la))};
}

TimePoint VpSchedule::at_log_snr(double lambda) const {
  check_numerics(!std::isnan(lambda), "vp schedule: log-SNR is NaN");
  // log(1 + e^{-2 lambda}) = -2 log alpha
  const double two_neg_log_alpha = std::log1p(std::exp(-2 * lambda));
  const double bmin = options.beta_min(), d = options.beta_max() - options.beta_min();
  const double t =
      2 * two_neg_log_alpha / (std::sqrt(bmin * bmin + 2 * d * two_neg_log_alpha) + bmin);
  const double alpha = std::exp(-0.5 * two_neg_log_alpha);
  const double sigma = std::sqrt(-std::expm1(-two_neg_log_alpha));
  return TimePoint{t, alpha, sigma};
}

Tensor VpSchedule::alpha(const Tensor& t) const {
  const double d = options.beta_max() - options.beta_min();
  return at::exp(-0.25 * t * t * d - 0.5 * t * options.beta_min());
}

Tensor VpSchedule::sigma(const Tensor& t) const {
  const Tensor a = alpha(t);
  return at::sqrt(1 - a * a);
}

DIFFUSE_REGISTER(::diffuse::NoiseSchedule, VpSchedule, "vp",
                 "continuous VP-SDE, linear beta(t) (Song et al. 2021)");

}  // namespace diffuse
