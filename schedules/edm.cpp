// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/edm.h>.
#include <diffuse/schedules/edm.h>

#include <cmath>
#include <vector>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>

namespace diffuse {

EdmSchedule::EdmSchedule(EdmScheduleOptions o) : options(o) {
  check(o.sigma_min() > 0 && o.sigma_max() > o.sigma_min(),
        "edm schedule needs 0 < sigma_min < sigma_max, got ", o.sigma_min(), ", ", o.sigma_max());
  check(o.sigma_data() > 0, "edm schedule: sigma_data must be > 0, got ", o.sigma_data());
}

std::unique_ptr<NoiseSchedule> EdmSchedule::from_config(const Config& c) {
  ConfigReader r(c, "edm schedule");
  EdmScheduleOptions o;
  o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
  o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
  o.sigma_data(r.get_double("sigma_data", o.sigma_data()));
  r.finish();
  return std::make_unique<EdmSchedule>(o);
}

Config EdmSchedule::to_config() const {
  return {{"sigma_min", format_double(options.sigma_min())},
          {"sigma_max", format_double(options.sigma_max())},
          {"sigma_data", format_double(options.sigma_data())}};
}

TimePoint EdmSchedule::at(double t) const {
  check(std::isfinite(t) && t >= 0, "edm schedule: t (= sigma) must be finite and >= 0, got ", t);
  return TimePoint{t, 1.0, t};
}

TimePoint EdmSchedule::at_log_snr(double lambda) const {
  check_numerics(!std::isnan(lambda), "edm schedule: log-SNR is NaN");
  const double s = std::exp(-lambda);
  return TimePoint{s, 1.0, s};
}

Tensor EdmSchedule::alpha(const Tensor& t) const { return at::ones_like(t); }

DIFFUSE_REGISTER(::diffuse::NoiseSchedule, EdmSchedule, "edm",
                 "EDM / variance-exploding: alpha = 1, t = sigma (Karras et al. 2022)");

}  // namespace diffuse
