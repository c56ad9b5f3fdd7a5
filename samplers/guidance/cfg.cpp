// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/guidance/cfg.h>.
#include <diffuse/samplers/guidance/cfg.h>

#include <cmath>
#include <vector>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>

namespace diffuse {

CfgGuidance::CfgGuidance(CfgOptions o) : options(o) {
  check(std::isfinite(options.scale()), "CfgOptions.scale must be finite, got ", options.scale());
  check(std::isfinite(options.guidance_rescale()) && options.guidance_rescale() >= 0 &&
            options.guidance_rescale() <= 1,
        "CfgOptions.guidance_rescale must be in [0, 1], got ", options.guidance_rescale());
  check(std::isfinite(options.sigma_lo()) && options.sigma_lo() >= 0,
        "CfgOptions.sigma_lo must be finite and >= 0, got ", options.sigma_lo());
  check(!std::isnan(options.sigma_hi()) && options.sigma_hi() > options.sigma_lo(),
        "CfgOptions.sigma_hi must be above sigma_lo (", options.sigma_lo(), "), got ",
        options.sigma_hi());
}

bool CfgGuidance::needs_uncond(const StepContext& step) const {
  return options.scale() != 1.0 && in_interval(step.call.sigma_ve());
}

std::unique_ptr<Guidance> CfgGuidance::from_config(const Config& c) {
  ConfigReader r(c, "cfg");
  CfgOptions o;
  o.scale(r.get_double("scale", o.scale()));
  o.guidance_rescale(r.get_double("guidance_rescale", o.guidance_rescale()));
  o.sigma_lo(r.get_double("sigma_lo", o.sigma_lo()));
  o.sigma_hi(r.get_double("sigma_hi", o.sigma_hi()));  // omitted for +inf
  r.finish();
  return std::make_unique<CfgGuidance>(o);
}

Config CfgGuidance::to_config() const {
  Config c{{"scale", format_double(options.scale())},
           {"guidance_rescale", format_double(options.guidance_rescale())}};
  if (options.sigma_lo() > 0) c["sigma_lo"] = format_double(options.sigma_lo());
  if (std::isfinite(options.sigma_hi())) c["sigma_hi"] = format_double(options.sigma_hi());
  return c;
}

Tensor CfgGuidance::combine(const Tensor& cond_out, const Tensor& uncond_out,
                            const StepContext& step) const {
  if (!in_interval(step.call.sigma_ve())) return cond_out;
  check(cond_out.sizes() == uncond_out.sizes(), "cfg: conditional output shape ", cond_out.sizes(),
        " differs from unconditional output shape ", uncond_out.sizes());
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

DIFFUSE_REGISTER_GUIDANCE(CfgGuidance, "cfg",
                          "classifier-free guidance u + scale (c - u), with guidance_rescale");

}  // namespace diffuse
