// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/karras.h>.
#include <diffuse/schedules/spacing/karras.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

KarrasSpacing::KarrasSpacing(KarrasSpacingOptions o) : options(std::move(o)) {
  check(options.rho() > 0, "karras: rho must be > 0, got ", options.rho());
  detail::check_sigma_spacing_options("karras", options.sigma_min(), options.sigma_max(),
                                      options.round_t(), options.trunc_t());
  detail::check_sigma_range_source("karras", options.range(), options.range_steps_offset());
}

std::unique_ptr<TimestepSpacing> KarrasSpacing::from_config(const Config& c) {
  ConfigReader r(c, "karras spacing");
  KarrasSpacingOptions o;
  o.rho(r.get_double("rho", o.rho()));
  o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
  o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
  o.round_t(r.get_bool("round_t", o.round_t()));
  o.trunc_t(r.get_bool("trunc_t", o.trunc_t()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  o.range(r.get_string("range", o.range()));
  o.range_steps_offset(r.get_int("range_steps_offset", o.range_steps_offset()));
  r.finish();
  return std::make_unique<KarrasSpacing>(o);
}

Config KarrasSpacing::to_config() const {
  Config c{{"rho", format_double(options.rho())},
           {"sigma_min", format_double(options.sigma_min())},
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

TimeGrid KarrasSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("karras", n);
  double lo = options.sigma_min(), hi = options.sigma_max();
  detail::sigma_range_from(s, options.range(), options.range_steps_offset(), n, lo, hi, "karras");
  return detail::sigma_ramp_grid(s, detail::karras_ramp(lo, hi, options.rho(), n),
                                 options.round_t(), options.trunc_t(), options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, KarrasSpacing, "karras",
                 "Karras et al. 2022 rho-spacing of sigma (default rho=7)");

}  // namespace diffuse
