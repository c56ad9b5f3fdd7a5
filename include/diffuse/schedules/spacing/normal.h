// SPDX-License-Identifier: Apache-2.0
// The "normal" and "sgm_uniform" schedulers of A1111 and ComfyUI on a discrete schedule: model
// times uniform between the noisiest and the cleanest training step, T - 1 .. 0, n of them (normal)
// or n of n + 1 without the last (sgm_uniform, SGM/SDXL's "uniform"), each at k-diffusion's
// t_to_sigma noise level (log sigma_ve interpolated between table neighbours), then the final
// point. A1111 feeds the network the fractional time (k-diffusion's sigma_to_t); ComfyUI the
// nearest training step (round_t=true).
// Checked against: A1111 normal_scheduler / sgm_uniform (02b0092) with k-diffusion's discrete
// schedule (tests/schedules/a1111_spacing_test.cpp, tests/reference/kdiffusion.py a1111_spacings).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse {

struct NormalSpacingOptions {
  /// sgm_uniform: linspace over n + 1 times without the last. Default false (normal).
  TORCH_ARG(bool, sgm) = false;
  /// Feed the nearest training step (ComfyUI). Default false (A1111: fractional).
  TORCH_ARG(bool, round_t) = false;
  /// "zero" (default) or "min".
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
};

class NormalSpacing final : public TimestepSpacing {
 public:
  explicit NormalSpacing(NormalSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "normal"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  NormalSpacingOptions options;
};

}  // namespace diffuse
