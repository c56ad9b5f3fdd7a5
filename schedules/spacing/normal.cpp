// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/normal.h>.
#include <diffuse/schedules/spacing/normal.h>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

NormalSpacing::NormalSpacing(NormalSpacingOptions o) : options(std::move(o)) {
  check_enum(options.final(), final_point_names(), "normal spacing: final");
}

std::unique_ptr<TimestepSpacing> NormalSpacing::from_config(const Config& c) {
  ConfigReader r(c, "normal spacing");
  NormalSpacingOptions o;
  o.sgm(r.get_bool("sgm", o.sgm()));
  o.round_t(r.get_bool("round_t", o.round_t()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  r.finish();
  return std::make_unique<NormalSpacing>(o);
}

Config NormalSpacing::to_config() const {
  return {{"sgm", detail::bool_str(options.sgm())},
          {"round_t", detail::bool_str(options.round_t())},
          {"final", enum_name(options.final(), final_point_names())}};
}

TimeGrid NormalSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("normal", n);
  detail::check_discrete("normal", s);
  const double last = static_cast<double>(s.num_train_timesteps() - 1);
  std::vector<double> ts = detail::np_linspace(last, 0.0, options.sgm() ? n + 1 : n);
  if (options.sgm()) ts.pop_back();
  TimeGrid g;
  g.reserve(ts.size() + 1);
  for (double t : ts) g.push_back(detail::log_sigma_point(s, t, options.round_t()));
  g.push_back(final_point(s, options.final()));
  return g;
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, NormalSpacing, "normal",
                 "A1111 / ComfyUI 'normal': times uniform from T-1 to 0, k-diffusion log-sigma "
                 "interpolation (discrete schedules)");
DIFFUSE_REGISTER_ALIAS(::diffuse::TimestepSpacing, sgm_uniform, "sgm_uniform", "normal",
                       (Config{{"sgm", "true"}}),
                       "A1111 / ComfyUI 'sgm_uniform': normal over n + 1 times without the last");

}  // namespace diffuse
