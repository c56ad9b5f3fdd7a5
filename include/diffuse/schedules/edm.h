// SPDX-License-Identifier: Apache-2.0
// EDM / variance-exploding process (Karras et al. 2022): x_t = x0 + sigma * eps, alpha = 1, and the
// network is fed t = sigma (k-diffusion's convention; EDM preconditioning is the network's job).
// Default spacing: Karras rho = 7 between sigma_min and sigma_max.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/config.h>
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
  explicit EdmSchedule(EdmScheduleOptions o = {});
  static std::unique_ptr<NoiseSchedule> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "edm"; }
  bool variance_preserving() const override { return false; }

  TimePoint at(double t) const override;
  TimePoint at_log_snr(double lambda) const override;
  TimePoint clean_point() const override { return TimePoint{0.0, 1.0, 0.0}; }
  double t_min() const override { return options.sigma_min(); }
  double t_max() const override { return options.sigma_max(); }
  Tensor alpha(const Tensor& t) const override;
  Tensor sigma(const Tensor& t) const override { return t.clone(); }

  EdmScheduleOptions options;
};

}  // namespace diffuse
