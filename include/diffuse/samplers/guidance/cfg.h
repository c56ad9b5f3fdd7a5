// SPDX-License-Identifier: Apache-2.0
// Classifier-free guidance. Ho, Salimans, "Classifier-Free Diffusion Guidance" (2022), Eq. (6),
// in diffusers' convention out = u + scale * (c - u) on the raw network output (eps, v or x0),
// with the guidance rescale of Lin et al., "Common Diffusion Noise Schedules and Sample Steps are
// Flawed" (WACV 2024), Sec. 3.4 / methods.md §9.2.
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
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/guidance.h>

namespace diffuse {

struct CfgOptions {
  /// Guidance scale w in u + w (c - u). Default 7.5 (diffusers' StableDiffusionPipeline default);
  /// any finite value; 1 = conditional only (no unconditional network call).
  TORCH_ARG(double, scale) = 7.5;
  /// Guidance rescale phi in [0, 1]. Default 0 (off); Lin et al. recommend 0.7 for
  /// zero-terminal-SNR models.
  TORCH_ARG(double, guidance_rescale) = 0.0;
};

class CfgGuidance final : public Guidance {
 public:
  explicit CfgGuidance(CfgOptions o = {}) : options(o) {
    check(std::isfinite(options.scale()), "CfgOptions.scale must be finite, got ", options.scale());
    check(std::isfinite(options.guidance_rescale()) && options.guidance_rescale() >= 0 &&
              options.guidance_rescale() <= 1,
          "CfgOptions.guidance_rescale must be in [0, 1], got ", options.guidance_rescale());
  }
  static std::unique_ptr<Guidance> from_config(const Config& c) {
    ConfigReader r(c, "cfg");
    CfgOptions o;
    o.scale(r.get_double("scale", o.scale()));
    o.guidance_rescale(r.get_double("guidance_rescale", o.guidance_rescale()));
    r.finish();
    return std::make_unique<CfgGuidance>(o);
  }
  Config to_config() const override {
    return {{"scale", format_double(options.scale())},
            {"guidance_rescale", format_double(options.guidance_rescale())}};
  }
  std::string name() const override { return "cfg"; }

  /// scale == 1 gives the conditional output exactly, so the unconditional call is skipped.
  bool needs_uncond(const StepContext& /*step*/) const override { return options.scale() != 1.0; }

  Tensor combine(const Tensor& cond_out, const Tensor& uncond_out,
                 const StepContext& /*step*/) const override {
    check(cond_out.sizes() == uncond_out.sizes(), "cfg: conditional output shape ",
          cond_out.sizes(), " differs from unconditional output shape ", uncond_out.sizes());
    const auto dtype = cond_out.scalar_type();
    const bool upcast = dtype != at::kFloat && dtype != at::kDouble;
    const Tensor c = upcast ? cond_out.to(at::kFloat) : cond_out;
    const Tensor u = upcast ? uncond_out.to(at::kFloat) : uncond_out;
    Tensor out = u + (c - u) * options.scale();
    const double phi = options.guidance_rescale();
    if (phi > 0) {
      check(c.dim() >= 2 && c.numel() / c.size(0) >= 2,
            "cfg: guidance_rescale needs at least 2 elements per sample to take a standard "
            "deviation, got shape ",
            c.sizes());
      std::vector<int64_t> dims;
      for (int64_t d = 1; d < c.dim(); ++d) dims.push_back(d);
      const Tensor std_c = at::std(c, dims, /*unbiased=*/true, /*keepdim=*/true);
      const Tensor std_out = at::std(out, dims, /*unbiased=*/true, /*keepdim=*/true);
      // A constant output (e.g. a zero-initialised network) has std 0: nothing to rescale, and
      // std_c / 0 would turn the whole sample into NaN/Inf (as diffusers' rescale_noise_cfg does).
      const Tensor ratio = at::where(std_out > 0, std_c / std_out, at::ones_like(std_out));
      out = out * ratio * phi + out * (1.0 - phi);
    }
    return upcast ? out.to(dtype) : out;
  }

  CfgOptions options;
};

DIFFUSE_REGISTER_GUIDANCE(CfgGuidance, "cfg",
                          "classifier-free guidance u + scale (c - u), with guidance_rescale");

}  // namespace diffuse
