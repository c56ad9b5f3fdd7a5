// SPDX-License-Identifier: Apache-2.0
// Classifier-free guidance. Ho, Salimans, "Classifier-Free Diffusion Guidance" (2022), Eq. (6),
// in diffusers' convention out = u + scale * (c - u) on the raw network output (eps, v or x0),
// with the guidance rescale of Lin et al., "Common Diffusion Noise Schedules and Sample Steps are
// Flawed" (WACV 2024), Sec. 3.4.
// Checked against: diffusers StableDiffusionPipeline.__call__ and rescale_noise_cfg (58eb52c).
//   out_cfg = u + scale * (c - u)
//   out_res = out_cfg * std(c) / std(out_cfg)          std per sample over all non-batch dims,
//                                                      unbiased (torch.std's default)
//   out     = phi * out_res + (1 - phi) * out_cfg      phi = guidance_rescale
// A sample whose out_cfg is constant (std 0) is left unrescaled (diffusers divides by 0 there).
// Ho & Salimans write (1 + w) c - w u; their w is scale - 1 here.
// Unlike diffusers' pipelines, which switch guidance off for every guidance_scale <= 1, only
// scale == 1 skips the unconditional branch (the result is then exactly the conditional output);
// scale in [0, 1) interpolates towards the unconditional output (scale 0 = unconditional).
// sigma_lo / sigma_hi restrict the guidance to an interval of noise levels (Kynkaanniemi et al.
// 2024); outside it the call is conditional only.
#pragma once

#include <limits>

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/guidance.h>

namespace diffuse {

struct CfgOptions {
  /// Guidance scale w in u + w (c - u). Default 7.5 (diffusers' StableDiffusionPipeline default);
  /// any finite value; 1 = conditional only (no unconditional network call).
  TORCH_ARG(double, scale) = 7.5;
  /// Guidance rescale phi in [0, 1]. Default 0 (off); Lin et al. recommend 0.7 for
  /// zero-terminal-SNR models.
  TORCH_ARG(double, guidance_rescale) = 0.0;
  /// Guidance interval (Kynkaanniemi et al., "Applying Guidance in a Limited Interval Improves
  /// Sample and Distribution Quality in Diffusion Models", NeurIPS 2024): guide only the calls at
  /// noise levels sigma_lo < sigma_ve <= sigma_hi; elsewhere the conditional output alone, without
  /// the unconditional call. Defaults 0 and +inf (everywhere). EDM2-XXL: (0.28, 2.9].
  TORCH_ARG(double, sigma_lo) = 0.0;
  TORCH_ARG(double, sigma_hi) = std::numeric_limits<double>::infinity();
};

class CfgGuidance final : public Guidance {
 public:
  explicit CfgGuidance(CfgOptions o = {});
  static std::unique_ptr<Guidance> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "cfg"; }

  /// scale == 1 gives the conditional output exactly, so the unconditional call is skipped; so does
  /// a call outside the guidance interval.
  bool needs_uncond(const StepContext& step) const override;
  /// True when the call at noise level sigma_ve is inside (sigma_lo, sigma_hi].
  bool in_interval(double sigma_ve) const {
    if (options.sigma_lo() <= 0 && options.sigma_hi() == std::numeric_limits<double>::infinity())
      return true;  // no interval (also for a bare StepContext without a call point)
    return sigma_ve > options.sigma_lo() && sigma_ve <= options.sigma_hi();
  }

  Tensor combine(const Tensor& cond_out, const Tensor& uncond_out,
                 const StepContext& /*step*/) const override;

  CfgOptions options;
};

}  // namespace diffuse
