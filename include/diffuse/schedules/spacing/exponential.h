// SPDX-License-Identifier: Apache-2.0
// Noise levels uniform in log sigma (= uniform in log-SNR): sigma_i = exp(linspace(log sigma_max,
// log sigma_min, n)), then the final point. This is k-diffusion's get_sigmas_exponential and
// diffusers' use_exponential_sigmas / use_lu_lambdas (DPM-Solver's "logSNR" skip type).
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>
#include <diffuse/schedules/spacing/karras.h>

namespace diffuse {

struct ExponentialSpacingOptions {
  /// Noise range in sigma_ve; 0 (default) takes the schedule's own range.
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Round discrete model times. Default false.
  TORCH_ARG(bool, round_t) = false;
  /// "zero" (default) or "min".
  TORCH_ARG(std::string, final) = "zero";
};

class ExponentialSpacing final : public TimestepSpacing {
 public:
  explicit ExponentialSpacing(ExponentialSpacingOptions o = {}) : options(std::move(o)) {
    check(options.sigma_min() >= 0 && options.sigma_max() >= 0,
          "exponential: sigma_min/sigma_max must be >= 0 (0: the schedule's own), got sigma_min=",
          options.sigma_min(), " sigma_max=", options.sigma_max());
  }
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "exponential spacing");
    ExponentialSpacingOptions o;
    o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
    o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
    o.round_t(r.get_bool("round_t", o.round_t()));
    o.final(r.get_choice("final", o.final(), detail::final_choices()));
    r.finish();
    return std::make_unique<ExponentialSpacing>(o);
  }
  Config to_config() const override {
    return {{"sigma_min", format_double(options.sigma_min())},
            {"sigma_max", format_double(options.sigma_max())},
            {"round_t", detail::bool_str(options.round_t())},
            {"final", options.final()}};
  }
  std::string name() const override { return "exponential"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    detail::check_steps("exponential", n);
    double lo = options.sigma_min(), hi = options.sigma_max();
    detail::sigma_range(s, lo, hi, "exponential");
    std::vector<double> sig;
    for (double l : detail::np_linspace(std::log(hi), std::log(lo), n)) sig.push_back(std::exp(l));
    TimeGrid g = detail::grid_from_sigmas(s, sig, options.round_t());
    g.push_back(options.final() == "min" ? g.back() : s.clean_point());
    return g;
  }

  ExponentialSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, ExponentialSpacing, "exponential",
                 "sigma uniform in log (= uniform log-SNR; diffusers use_lu_lambdas)");
DIFFUSE_REGISTER_ALIAS(::diffuse::TimestepSpacing, log_snr_uniform, "log_snr_uniform", "exponential", {},
                       "alias of exponential: uniform in log-SNR");

}  // namespace diffuse
