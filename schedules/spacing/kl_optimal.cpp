// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/kl_optimal.h>.
#include <diffuse/schedules/spacing/kl_optimal.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

KlOptimalSpacing::KlOptimalSpacing(KlOptimalSpacingOptions o) : options(std::move(o)) {
  detail::check_sigma_spacing_options("kl_optimal", options.sigma_min(), options.sigma_max(),
                                      options.round_t(), false);
  check_enum(options.final(), final_point_names(), "kl_optimal spacing: final");
}

std::unique_ptr<TimestepSpacing> KlOptimalSpacing::from_config(const Config& c) {
  ConfigReader r(c, "kl_optimal spacing");
  KlOptimalSpacingOptions o;
  o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
  o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
  o.round_t(r.get_bool("round_t", o.round_t()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  r.finish();
  return std::make_unique<KlOptimalSpacing>(o);
}

Config KlOptimalSpacing::to_config() const {
  return {{"sigma_min", format_double(options.sigma_min())},
          {"sigma_max", format_double(options.sigma_max())},
          {"round_t", detail::bool_str(options.round_t())},
          {"final", enum_name(options.final(), final_point_names())}};
}

TimeGrid KlOptimalSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("kl_optimal", n);
  double lo = options.sigma_min(), hi = options.sigma_max();
  detail::sigma_range(s, lo, hi, "kl_optimal");
  const double a_lo = std::atan(lo), a_hi = std::atan(hi);
  std::vector<double> sigmas;
  sigmas.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double u = n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1);
    sigmas.push_back(std::tan(u * a_lo + (1 - u) * a_hi));
  }
  return detail::sigma_ramp_grid(s, sigmas, options.round_t(), false, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, KlOptimalSpacing, "kl_optimal",
                 "sigma uniform in arctan (AYS Thm. 3.1; ComfyUI's kl_optimal)");

}  // namespace diffuse
