// SPDX-License-Identifier: Apache-2.0
// EDM / variance-exploding process (Karras et al. 2022): x_t = x0 + sigma * eps, alpha = 1, and the
// network is fed t = sigma (k-diffusion's convention; EDM preconditioning is the network's job).
// Default spacing: Karras rho = 7 between sigma_min and sigma_max.
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

struct EdmScheduleOptions {
  /// Noise range. Defaults 0.002 and 80 (EDM); 0 < sigma_min < sigma_max.
  TORCH_ARG(double, sigma_min) = 0.002;
  TORCH_ARG(double, sigma_max) = 80.0;
  /// Data standard deviation, for preconditioned networks. Default 0.5.
  TORCH_ARG(double, sigma_data) = 0.5;
};

class EdmSchedule final : public NoiseSchedule {
 public:
  explicit EdmSchedule(EdmScheduleOptions o = {}) : options(o) {
    check(o.sigma_min() > 0 && o.sigma_max() > o.sigma_min(), "edm schedule needs 0 < sigma_min < sigma_max, got ",
          o.sigma_min(), ", ", o.sigma_max());
    check(o.sigma_data() > 0, "edm schedule: sigma_data must be > 0, got ", o.sigma_data());
  }
  static std::unique_ptr<NoiseSchedule> from_config(const Config& c) {
    ConfigReader r(c, "edm schedule");
    EdmScheduleOptions o;
    o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
    o.sigma_max(r.get_double("sigma_max", o.sigma_max()));
    o.sigma_data(r.get_double("sigma_data", o.sigma_data()));
    r.finish();
    return std::make_unique<EdmSchedule>(o);
  }
  Config to_config() const override {
    return {{"sigma_min", format_double(options.sigma_min())},
            {"sigma_max", format_double(options.sigma_max())},
            {"sigma_data", format_double(options.sigma_data())}};
  }
  std::string name() const override { return "edm"; }
  bool variance_preserving() const override { return false; }

  TimePoint at(double t) const override {
    check(std::isfinite(t) && t >= 0, "edm schedule: t (= sigma) must be finite and >= 0, got ", t);
    return TimePoint{t, 1.0, t};
  }
  TimePoint at_log_snr(double lambda) const override {
    check(!std::isnan(lambda), "edm schedule: log-SNR is NaN");
    const double s = std::exp(-lambda);
    return TimePoint{s, 1.0, s};
  }
  TimePoint clean_point() const override { return TimePoint{0.0, 1.0, 0.0}; }
  double t_min() const override { return options.sigma_min(); }
  double t_max() const override { return options.sigma_max(); }
  Tensor alpha(const Tensor& t) const override { return at::ones_like(t); }
  Tensor sigma(const Tensor& t) const override { return t.clone(); }

  EdmScheduleOptions options;
};

DIFFUSE_REGISTER(::diffuse::NoiseSchedule, EdmSchedule, "edm", "EDM / variance-exploding: alpha = 1, t = sigma (Karras et al. 2022)");

}  // namespace diffuse
