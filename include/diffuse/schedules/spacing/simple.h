// SPDX-License-Identifier: Apache-2.0
// The "simple" scheduler of A1111 and ComfyUI on a discrete schedule: n training steps picked from
// the table at even strides from the noisiest, t_i = T - 1 - floor(i T / n), i = 0 .. n - 1, then
// the final point. The times are training steps, so the network sees integers.
// Checked against: A1111 simple_scheduler (02b0092; ComfyUI's simple_scheduler is the same code)
// with k-diffusion's discrete schedule (tests/schedules/a1111_spacing_test.cpp).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct SimpleSpacingOptions {
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
};

class SimpleSpacing final : public TimestepSpacing {
 public:
  explicit SimpleSpacing(SimpleSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "simple"; }

  /// Errors when n exceeds the training steps (the strides would repeat a step).
  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  SimpleSpacingOptions options;
};

}  // namespace diffuse
