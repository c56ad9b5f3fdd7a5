// SPDX-License-Identifier: Apache-2.0
// CFG-Zero*: Fan, Zheng, Yeh, Liu, "CFG-Zero*: Improved Classifier-Free Guidance for Flow Matching
// Models" (2025). On the raw network outputs c, u (per sample):
//   s* = <c, u> / (|u|^2 + 1e-8)      (the optimised scale; in float32, as diffusers computes it)
//   out = s* u + scale (c - s* u)                       (original_formulation: c + scale (c - s*
//   u))
// and zero-init: the first zero_init_steps steps output zeros (for flow prediction a zero velocity:
// the state does not move). s* = 1 is CFG.
// Checked against: diffusers ClassifierFreeZeroStarGuidance (58eb52c;
// tests/samplers/guidance_test.cpp, tests/reference/guiders.py).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/guidance.h>

namespace diffuse {

struct CfgZeroStarOptions {
  /// Guidance scale. Default 7.5 (diffusers' guider default).
  TORCH_ARG(double, scale) = 7.5;
  /// Steps (by index in the grid) whose output is zeroed. Default 1 (diffusers' default); >= 0.
  TORCH_ARG(int64_t, zero_init_steps) = 1;
  /// c + scale (c - s* u) instead of s* u + scale (c - s* u). Default false.
  TORCH_ARG(bool, original_formulation) = false;
};

class CfgZeroStarGuidance final : public Guidance {
 public:
  explicit CfgZeroStarGuidance(CfgZeroStarOptions o = {});
  static std::unique_ptr<Guidance> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "cfg_zero_star"; }
  /// The zero-init steps need no unconditional call.
  bool needs_uncond(const StepContext& step) const override;
  Tensor combine(const Tensor& cond_out, const Tensor& uncond_out,
                 const StepContext& step) const override;

  CfgZeroStarOptions options;
};

}  // namespace diffuse
