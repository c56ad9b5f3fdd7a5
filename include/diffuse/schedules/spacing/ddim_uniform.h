// SPDX-License-Identifier: Apache-2.0
// ComfyUI's "ddim_uniform" scheduler on a discrete schedule: every ss-th training step from step
// 1, ss = max(T // n, 1), i.e. t = 1, 1 + ss, 1 + 2 ss, ... < T, noisiest first, then the final
// point. ComfyUI's list has ceil((T - 1) / ss) steps, which is n only for some n (T = 1000: n = 10,
// 20, 25, 50 give n; n = 7 gives 8, n = 30 gives 31): diffuse keeps its step count contract and
// refuses the others with an error naming the count ComfyUI would run (ask for that count). The
// times are training steps, so the network sees integers.
// Checked against: ComfyUI comfy/samplers.py ddim_scheduler (restated in
// tests/schedules/ddim_uniform_test.cpp with its closed-form counts).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct DdimUniformSpacingOptions {
  /// "zero" (default, ComfyUI's 0 sigma) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
};

class DdimUniformSpacing final : public TimestepSpacing {
 public:
  explicit DdimUniformSpacing(DdimUniformSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "ddim_uniform"; }

  /// The number of steps ComfyUI's ddim_uniform makes for n on T training steps.
  static int64_t comfy_steps(int64_t T, int64_t n);
  /// Errors when comfy_steps(T, n) != n (naming that count).
  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  DdimUniformSpacingOptions options;
};

}  // namespace diffuse
