// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/beta.h>.
#include <diffuse/schedules/spacing/beta.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

BetaSpacing::BetaSpacing(BetaSpacingOptions o) : options(std::move(o)) {
  check(std::isfinite(options.alpha()) && options.alpha() > 0 && std::isfinite(options.beta()) &&
            options.beta() > 0,
        "beta spacing: alpha and beta must be finite and > 0, got alpha=", options.alpha(),
        " beta=", options.beta());
  detail::check_sigma_spacing_options("beta spacing", options.sigma_min(), options.sigma_max(),
                                      options.round_t(), options.trunc_t());
  detail::check_sigma_range_source("beta spacing", options.range(), options.range_steps_offset());
}

std::unique_ptr<TimestepSpacing> BetaSpacing::from_config(const Config& c) {
  ConfigReader r(c, "beta spacing");
  BetaSpacingOptions o;
  o.alpha(r.get_double("alpha", o.alpha()));
  o.beta(r.get_double("beta", o.beta()));
  o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
  o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
  o.round_t(r.get_bool("round_t", o.round_t()));
  o.trunc_t(r.get_bool("trunc_t", o.trunc_t()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  o.range(r.get_string("range", o.range()));
  o.range_steps_offset(r.get_int("range_steps_offset", o.range_steps_offset()));
  r.finish();
  return std::make_unique<BetaSpacing>(o);
}

Config BetaSpacing::to_config() const {
  Config c{{"alpha", format_double(options.alpha())},
           {"beta", format_double(options.beta())},
           {"sigma_min", format_double(options.sigma_min())},
           {"sigma_max", format_double(options.sigma_max())},
           {"round_t", detail::bool_str(options.round_t())},
           {"trunc_t", detail::bool_str(options.trunc_t())},
           {"final", enum_name(options.final(), final_point_names())}};
  if (options.range() != "schedule") {  // written only when used
    c["range"] = options.range();
    c["range_steps_offset"] = std::to_string(options.range_steps_offset());
  }
  return c;
}

TimeGrid BetaSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("beta spacing", n);
  double lo = options.sigma_min(), hi = options.sigma_max();
  detail::sigma_range_from(s, options.range(), options.range_steps_offset(), n, lo, hi,
                           "beta spacing");
  return detail::sigma_ramp_grid(s, detail::beta_ramp(lo, hi, options.alpha(), options.beta(), n),
                                 options.round_t(), options.trunc_t(), options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, BetaSpacing, "beta",
                 "Beta(0.6, 0.6) quantiles of sigma (Lee et al. 2024; diffusers use_beta_sigmas)");

}  // namespace diffuse
