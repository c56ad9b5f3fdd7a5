// SPDX-License-Identifier: Apache-2.0
// diffusers timestep_spacing="trailing" (Lin et al. 2024, Table 2): round(T - k*T/n) - 1 for
// k = 0..n-1, so the first step is always t = T-1. Bit-compatible with diffusers' (58eb52c)
// np.round(np.arange(T, 0, -T/n)) - 1: numpy's float arange fills start + k*delta with
// delta = (T - T/n) - T, which rounds differently from T - k*T/n for some n (T=1000: n=48 gives
// 936 at k=3, not 937). numpy's length ceil(T / (T/n)) is n+1 for some n (T=1000: n=61, 103, ...);
// the extra value is always -1, which diffusers then indexes as alphas_cumprod[-1] (the noisiest
// point). We keep the first n values.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct TrailingSpacingOptions {
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
};

class TrailingSpacing final : public TimestepSpacing {
 public:
  explicit TrailingSpacing(TrailingSpacingOptions o = {}) : options(std::move(o)) {}
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "trailing"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  TrailingSpacingOptions options;
};

}  // namespace diffuse
