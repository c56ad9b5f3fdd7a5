// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/ddim_uniform.h>.
#include <diffuse/schedules/spacing/ddim_uniform.h>

#include <algorithm>
#include <vector>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

DdimUniformSpacing::DdimUniformSpacing(DdimUniformSpacingOptions o) : options(std::move(o)) {
  check_enum(options.final(), final_point_names(), "ddim_uniform spacing: final");
}

std::unique_ptr<TimestepSpacing> DdimUniformSpacing::from_config(const Config& c) {
  ConfigReader r(c, "ddim_uniform spacing");
  DdimUniformSpacingOptions o;
  o.final(r.get_enum("final", o.final(), final_point_names()));
  r.finish();
  return std::make_unique<DdimUniformSpacing>(o);
}

Config DdimUniformSpacing::to_config() const {
  return {{"final", enum_name(options.final(), final_point_names())}};
}

int64_t DdimUniformSpacing::comfy_steps(int64_t T, int64_t n) {
  const int64_t ss = std::max<int64_t>(T / n, 1);
  return (T - 1 + ss - 1) / ss;  // x = 1, 1 + ss, ... < T
}

TimeGrid DdimUniformSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("ddim_uniform", n);
  detail::check_discrete("ddim_uniform", s);
  const int64_t T = s.num_train_timesteps();
  const int64_t got = comfy_steps(T, n);
  check(got == n, "ddim_uniform spacing: num_steps=", n, " on ", T,
        " training steps makes ComfyUI's ddim_uniform run ", got, " steps (stride ",
        std::max<int64_t>(T / n, 1), " from step 1); ask for ", got,
        " steps or use another spacing");
  const int64_t ss = std::max<int64_t>(T / n, 1);
  std::vector<double> ts;
  for (int64_t x = 1; x < T; x += ss) ts.push_back(static_cast<double>(x));
  std::reverse(ts.begin(), ts.end());
  return detail::grid_from_times(s, ts, options.final());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, DdimUniformSpacing, "ddim_uniform",
                 "ComfyUI 'ddim_uniform': every (T // n)-th training step from step 1 (discrete "
                 "schedules)");

}  // namespace diffuse
