// SPDX-License-Identifier: Apache-2.0
// The timestep schedule of Latent Consistency Models and Trajectory Consistency Distillation
// (diffusers' LCMScheduler / TCDScheduler set_timesteps) on a discrete schedule. The distillation
// ran on `original_steps` training steps, k = T / original_steps apart (integer division):
// origin = k - 1, 2k - 1, ..., original_steps * k - 1; n of them are picked, noisiest first, at the
// indices floor(i * original_steps / n), i = 0 .. n - 1 of the reversed list, then the final
// point. original_steps = 0 picks from every training step 0 .. T - 1 instead (TCDScheduler's
// original_inference_steps=None). With T = 1000 and the default 50, 4 steps visit 999, 759, 499,
// 259. The times are training steps, so the network sees integers.
// Checked against: diffusers LCMScheduler / TCDScheduler.set_timesteps (58eb52c;
// tests/samplers/lcm_test.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct LcmSpacingOptions {
  /// The distillation's step count (diffusers' original_inference_steps, default 50); 0: every
  /// training step. At most the schedule's training steps.
  TORCH_ARG(int64_t, original_steps) = 50;
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
  /// img2img (set_timesteps' strength, the LCM / TCD img2img pipelines): only the first
  /// floor(original_steps * strength) distillation steps (of the training steps when
  /// original_steps = 0) are candidates, so the n steps start part-way down; the run then starts
  /// from the init image noised to the grid's first point (sample() with init_image and strength
  /// 1). In (0, 1]; default 1.
  TORCH_ARG(double, strength) = 1.0;
};

class LcmSpacing final : public TimestepSpacing {
 public:
  explicit LcmSpacing(LcmSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "lcm"; }

  /// Errors when n exceeds original_steps (or the training steps when it is 0), or when
  /// original_steps exceeds the training steps.
  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  LcmSpacingOptions options;
};

}  // namespace diffuse
