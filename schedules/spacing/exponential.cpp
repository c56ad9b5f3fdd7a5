// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/exponential.h>.
#include <diffuse/schedules/spacing/exponential.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

ExponentialSpacing::ExponentialSpacing(ExponentialSpacingOptions o) : options(std::move(o)) {
  detail::check_sigma_spacing_options("exponential", options.sigma_min(), options.sigma_max(),
                                      options.round_t(), options.trunc_t());
  detail::check_sigma_range_source("exponential", options.range(), options.range_steps_offset());
}

std::unique_ptr<TimestepSpacing> ExponentialSpacing::from_config(const Config& c) {
  ConfigReader r(c, "exponential spacing");
  ExponentialSpacingOptions o;
  o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
  o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
  o.round_t(r.get_bool("round_t", o.round_t()));
  o.trunc_t(r.get_bool("trunc_t", o.trunc_t()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  o.range(r.get_string("range", o.range()));
  o.range_steps_offset(r.get_int("range_steps_offset", o.range_steps_offset()));
  r.finish();
  return std::make_unique<ExponentialSpacing>(o);
}

Config ExponentialSpacing::to_config() const {
  Config c{{"sigma_min", format_double(options.sigma_min())},
           {"sigma_max", format_double(options.sigma_max())},
           {"round_t", detail::bool_str(options.round_t())},
           {"final", enum_name(options.final(), final_point_names())}};
  if (options.trunc_t()) c["trunc_t"] = "true";  // written only when used
  if (options.range() != "schedule") {           // written only when used
    c["range"] = options.range();
    c["range_steps_offset"] = std::to_string(options.range_steps_offset());
  }
  return c;
}

TimeGrid ExponentialSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("exponential", n);
  double lo = options.sigma_min(), hi = options.sigma_max();
  detail::sigma_range_from(s, options.range(), options.range_steps_offset(), n, lo, hi,
                           "exponential");
  return detail::sigma_ramp_grid(s, detail::exponential_ramp(lo, hi, n), options.round_t(),
                                 options.trunc_t(), options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, ExponentialSpacing, "exponential",
                 "sigma uniform in log (= uniform log-SNR; diffusers use_lu_lambdas)");
DIFFUSE_REGISTER_ALIAS(::diffuse::TimestepSpacing, log_snr_uniform, "log_snr_uniform",
                       "exponential", {}, "alias of exponential: uniform in log-SNR");

}  // namespace diffuse
