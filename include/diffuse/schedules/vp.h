// SPDX-License-Identifier: Apache-2.0
// Continuous variance-preserving process (Song et al. 2021, VP-SDE): beta(t) = beta_min + t
// (beta_max - beta_min), log alpha_t = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2, sigma_t =
// sqrt(1 - alpha_t^2), t in [t_min, 1]. The network is fed t itself. Inverse in closed form
// (DPM-Solver's NoiseScheduleVP.inverse_lambda).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/schedule.h>

namespace diffuse {

struct VpScheduleOptions {
  /// beta(0) and beta(1). Defaults 0.1 and 20 (Song et al. 2021). 0 <= beta_min < beta_max.
  TORCH_ARG(double, beta_min) = 0.1;
  TORCH_ARG(double, beta_max) = 20.0;
  /// Smallest time visited (sampling stops there or at sigma = 0). Default 1e-3; in (0, 1).
  TORCH_ARG(double, t_min) = 1e-3;
};

class VpSchedule final : public NoiseSchedule {
 public:
  explicit VpSchedule(VpScheduleOptions o = {});
  static std::unique_ptr<NoiseSchedule> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "vp"; }

  double log_alpha(double t) const;
  TimePoint at(double t) const override;
  TimePoint at_log_snr(double lambda) const override;
  TimePoint clean_point() const override { return TimePoint{0.0, 1.0, 0.0}; }
  double t_min() const override { return options.t_min(); }
  double t_max() const override { return 1.0; }
  Tensor alpha(const Tensor& t) const override;
  Tensor sigma(const Tensor& t) const override;

  VpScheduleOptions options;
};

}  // namespace diffuse
