// SPDX-License-Identifier: Apache-2.0
// A user-supplied list of noise levels sigma_ve (k-diffusion's `sigmas`): num_steps + 1 values,
// strictly descending, the last one may be 0 (the clean point). Model times come from the
// schedule's inverse (optionally rounded).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/schedule.h>

namespace diffuse {

struct SigmasSpacingOptions {
  /// Noise levels, noisiest first, including the final one (required).
  TORCH_ARG(std::vector<double>, sigmas) = {};
  /// Round discrete model times. Default false.
  TORCH_ARG(bool, round_t) = false;
};

class SigmasSpacing final : public TimestepSpacing {
 public:
  explicit SigmasSpacing(SigmasSpacingOptions o);
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "sigmas"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  SigmasSpacingOptions options;
};

}  // namespace diffuse
