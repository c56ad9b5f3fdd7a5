// SPDX-License-Identifier: Apache-2.0
// Adaptive projected guidance (APG): Sadat, Hilliges, Weber, "Eliminating Oversaturation and
// Artifacts of High Guidance Scales in Diffusion Models" (ICLR 2025). With c, u the two branches
// (per sample, over all non-batch dims):
//   D = c - u;  with momentum beta: D <- D + beta D_prev (a running sum, reset each run);
//   with norm_threshold r > 0: D <- D min(1, r / |D|);
//   D_par = <D, c^> c^ (c^ = c / |c|), D_orth = D - D_par;
//   out = u + scale (D_orth + eta D_par)        (original_formulation: c + scale (...))
// eta = 1 without momentum and threshold is CFG. space=output (default) applies it to the raw
// network outputs as diffusers' AdaptiveProjectedGuidance guider does; space=x0 to the denoised
// predictions as the paper does (the guided x0 with eps made consistent with x).
// Checked against: diffusers normalized_guidance / MomentumBuffer (58eb52c;
// tests/samplers/guidance_test.cpp, tests/reference/guiders.py).
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/denoiser.h>
#include <diffuse/guidance.h>

namespace diffuse {

/// What APG combines: the raw outputs (diffusers) or the x0 predictions (the paper).
enum class ApgSpace { output, x0 };
/// Names of ApgSpace ("output", "x0").
const EnumNames<ApgSpace>& apg_space_names();

struct ApgOptions {
  /// Guidance scale. Default 7.5.
  TORCH_ARG(double, scale) = 7.5;
  /// Share of the parallel component kept. Default 1 (diffusers' default; the paper uses 0).
  TORCH_ARG(double, eta) = 1.0;
  /// Norm threshold r (diffusers' adaptive_projected_guidance_rescale). Default 15; 0 = off.
  TORCH_ARG(double, norm_threshold) = 15.0;
  /// Momentum beta of the running sum of D (diffusers' adaptive_projected_guidance_momentum; the
  /// paper uses negative values, e.g. -0.5). Default 0 (off).
  TORCH_ARG(double, momentum) = 0.0;
  /// c + scale (...) instead of u + scale (...). Default false.
  TORCH_ARG(bool, original_formulation) = false;
  /// output (default) or x0.
  TORCH_ARG(ApgSpace, space) = ApgSpace::output;
};

class ApgGuidance final : public Guidance {
 public:
  explicit ApgGuidance(ApgOptions o = {});
  ApgGuidance(const ApgGuidance& other) : Guidance(other), options(other.options) {}
  static std::unique_ptr<Guidance> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "apg"; }
  /// Momentum is per-run state: each run gets a fresh copy.
  std::unique_ptr<Guidance> clone() const override {
    return options.momentum() != 0 ? std::make_unique<ApgGuidance>(*this) : nullptr;
  }
  Tensor combine(const Tensor& cond_out, const Tensor& uncond_out,
                 const StepContext& step) const override;
  bool on_predictions() const override { return options.space() == ApgSpace::x0; }
  Prediction combine_predictions(const Prediction& cond, const Prediction& uncond, const Tensor& x,
                                 const TimePoint& at, const StepContext& step) const override;

  ApgOptions options;

 private:
  mutable Tensor running_;  // the momentum's running sum of D (per run; see clone())
};

}  // namespace diffuse
