// SPDX-License-Identifier: Apache-2.0
// Continuous variance-preserving process (Song et al. 2021, VP-SDE): beta(t) = beta_min + t (beta_max - beta_min),
// log alpha_t = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2, sigma_t = sqrt(1 - alpha_t^2), t in [t_min, 1].
// The network is fed t itself. Inverse in closed form (DPM-Solver's NoiseScheduleVP.inverse_lambda).
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>
#include <diffuse/schedule.h>

namespace diffuse {

struct VpScheduleOptions {
  /// beta(0) and beta(1). Defaults 0.1 and 20 (Song et al. 2021). 0 <= beta_min < beta_max.
  TORCH_ARG(double, beta_min) = 0.1;
  TORCH_ARG(double, beta_max) = 20.0;
  /// Smallest time visited (sampling stops there or at sigma = 0). Default 1e-3; in (0, 1).
  TORCH_ARG(double, t_min) = 1e-3;
};

class VpSchedule final : public NoiseSchedule {
 public:
  explicit VpSchedule(VpScheduleOptions o = {}) : options(o) {
    check(o.beta_min() >= 0 && o.beta_max() > o.beta_min(), "vp schedule needs 0 <= beta_min < beta_max, got beta_min=",
          o.beta_min(), " beta_max=", o.beta_max());
    check(o.t_min() > 0 && o.t_min() < 1, "vp schedule: t_min must be in (0, 1), got ", o.t_min());
  }
  static std::unique_ptr<NoiseSchedule> from_config(const Config& c) {
    ConfigReader r(c, "vp schedule");
    VpScheduleOptions o;
    o.beta_min(r.get_double("beta_min", o.beta_min()));
    o.beta_max(r.get_double("beta_max", o.beta_max()));
    o.t_min(r.get_double("t_min", o.t_min()));
    r.finish();
    return std::make_unique<VpSchedule>(o);
  }
  Config to_config() const override {
    return {{"beta_min", format_double(options.beta_min())},
            {"beta_max", format_double(options.beta_max())},
            {"t_min", format_double(options.t_min())}};
  }
  std::string name() const override { return "vp"; }

  double log_alpha(double t) const {
    const double d = options.beta_max() - options.beta_min();
    return -0.25 * t * t * d - 0.5 * t * options.beta_min();
  }
  TimePoint at(double t) const override {
    check(std::isfinite(t) && t >= 0 && t <= 1, "vp schedule: t=", t, " is outside [0, 1]");
    const double la = log_alpha(t);
    return TimePoint{t, std::exp(la), std::sqrt(-std::expm1(2 * la))};
  }
  TimePoint at_log_snr(double lambda) const override {
    check(!std::isnan(lambda), "vp schedule: log-SNR is NaN");
    // log(1 + e^{-2 lambda}) = -2 log alpha
    const double two_neg_log_alpha = std::log1p(std::exp(-2 * lambda));
    const double bmin = options.beta_min(), d = options.beta_max() - options.beta_min();
    const double t = 2 * two_neg_log_alpha / (std::sqrt(bmin * bmin + 2 * d * two_neg_log_alpha) + bmin);
    const double alpha = std::exp(-0.5 * two_neg_log_alpha);
    const double sigma = std::sqrt(-std::expm1(-two_neg_log_alpha));
    return TimePoint{t, alpha, sigma};
  }
  TimePoint clean_point() const override { return TimePoint{0.0, 1.0, 0.0}; }
  double t_min() const override { return options.t_min(); }
  double t_max() const override { return 1.0; }
  Tensor alpha(const Tensor& t) const override {
    const double d = options.beta_max() - options.beta_min();
    return at::exp(-0.25 * t * t * d - 0.5 * t * options.beta_min());
  }
  Tensor sigma(const Tensor& t) const override {
    const Tensor a = alpha(t);
    return at::sqrt(1 - a * a);
  }

  VpScheduleOptions options;
};

DIFFUSE_REGISTER(::diffuse::NoiseSchedule, VpSchedule, "vp", "continuous VP-SDE, linear beta(t) (Song et al. 2021)");

}  // namespace diffuse
