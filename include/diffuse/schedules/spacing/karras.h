// SPDX-License-Identifier: Apache-2.0
// Karras et al. 2022, Eq. (5): sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
// i = 0..n-1, then the final point. sigma_min / sigma_max default to the schedule's own range.
// Checked against: k-diffusion get_sigmas_karras (4601bf0), diffusers _convert_to_karras (58eb52c).
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

struct KarrasSpacingOptions {
  /// Curvature. Default 7 (EDM); > 0.
  TORCH_ARG(double, rho) = 7.0;
  /// Noise range in sigma_ve; 0 (default) takes the schedule's sigma at t_min / t_max.
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Round discrete model times (diffusers' DPM-Solver does, Euler does not). Default false.
  TORCH_ARG(bool, round_t) = false;
  /// "zero" (default) or "min" (lands on sigma_min, diffusers' final_sigmas_type="sigma_min").
  TORCH_ARG(std::string, final) = "zero";
};

namespace detail {
inline void sigma_range(const NoiseSchedule& s, double& lo, double& hi, const char* who) {
  if (lo == 0.0) lo = s.at(s.t_min()).sigma_ve();
  if (hi == 0.0) hi = s.at(s.t_max()).sigma_ve();
  check(lo > 0 && std::isfinite(hi) && hi > lo, who, ": needs 0 < sigma_min < sigma_max < inf, got sigma_min=", lo,
        " sigma_max=", hi, " (for zero terminal SNR set terminal_alphas_cumprod or sigma_max)");
}
}  // namespace detail

class KarrasSpacing final : public TimestepSpacing {
 public:
  explicit KarrasSpacing(KarrasSpacingOptions o = {}) : options(std::move(o)) {
    check(options.rho() > 0, "karras: rho must be > 0, got ", options.rho());
    check(options.sigma_min() >= 0 && options.sigma_max() >= 0,
          "karras: sigma_min/sigma_max must be >= 0 (0: the schedule's own), got sigma_min=",
          options.sigma_min(), " sigma_max=", options.sigma_max());
  }
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "karras spacing");
    KarrasSpacingOptions o;
    o.rho(r.get_double("rho", o.rho()));
    o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
    o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
    o.round_t(r.get_bool("round_t", o.round_t()));
    o.final(r.get_choice("final", o.final(), detail::final_choices()));
    r.finish();
    return std::make_unique<KarrasSpacing>(o);
  }
  Config to_config() const override {
    return {{"rho", format_double(options.rho())},
            {"sigma_min", format_double(options.sigma_min())},
            {"sigma_max", format_double(options.sigma_max())},
            {"round_t", detail::bool_str(options.round_t())},
            {"final", options.final()}};
  }
  std::string name() const override { return "karras"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    detail::check_steps("karras", n);
    double lo = options.sigma_min(), hi = options.sigma_max();
    detail::sigma_range(s, lo, hi, "karras");
    const double rho = options.rho();
    const double min_inv = std::pow(lo, 1.0 / rho), max_inv = std::pow(hi, 1.0 / rho);
    const std::vector<double> ramp = detail::np_linspace(0.0, 1.0, n);
    std::vector<double> sig;
    for (double r : ramp) sig.push_back(std::pow(max_inv + r * (min_inv - max_inv), rho));
    TimeGrid g = detail::grid_from_sigmas(s, sig, options.round_t());
    g.push_back(options.final() == "min" ? g.back() : s.clean_point());
    return g;
  }

  KarrasSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, KarrasSpacing, "karras", "Karras et al. 2022 rho-spacing of sigma (default rho=7)");

}  // namespace diffuse
