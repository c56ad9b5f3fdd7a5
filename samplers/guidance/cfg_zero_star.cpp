// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/guidance/cfg_zero_star.h>.
#include <diffuse/samplers/guidance/cfg_zero_star.h>

#include <cmath>
#include <vector>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>
#include <diffuse/sampler.h>

namespace diffuse {

CfgZeroStarGuidance::CfgZeroStarGuidance(CfgZeroStarOptions o) : options(o) {
  check(std::isfinite(options.scale()), "cfg_zero_star: scale must be finite, got ",
        options.scale());
  check(options.zero_init_steps() >= 0, "cfg_zero_star: zero_init_steps must be >= 0, got ",
        options.zero_init_steps());
}

std::unique_ptr<Guidance> CfgZeroStarGuidance::from_config(const Config& c) {
  ConfigReader r(c, "cfg_zero_star");
  CfgZeroStarOptions o;
  o.scale(r.get_double("scale", o.scale()));
  o.zero_init_steps(r.get_int("zero_init_steps", o.zero_init_steps()));
  o.original_formulation(r.get_bool("original_formulation", o.original_formulation()));
  r.finish();
  return std::make_unique<CfgZeroStarGuidance>(o);
}

Config CfgZeroStarGuidance::to_config() const {
  return {{"scale", format_double(options.scale())},
          {"zero_init_steps", std::to_string(options.zero_init_steps())},
          {"original_formulation", options.original_formulation() ? "true" : "false"}};
}

bool CfgZeroStarGuidance::needs_uncond(const StepContext& step) const {
  return step.index >= options.zero_init_steps();
}

Tensor CfgZeroStarGuidance::combine(const Tensor& cond_out, const Tensor& uncond_out,
                                    const StepContext& step) const {
  if (step.index < options.zero_init_steps()) return at::zeros_like(cond_out);
  check(cond_out.sizes() == uncond_out.sizes(), "cfg_zero_star: conditional output shape ",
        cond_out.sizes(), " differs from unconditional output shape ", uncond_out.sizes());
  const auto dtype = cond_out.scalar_type();
  const Tensor c = cond_out.to(at::kFloat == dtype || at::kDouble == dtype ? dtype : at::kFloat);
  const Tensor u = uncond_out.to(c.scalar_type());
  const int64_t b = c.size(0);
  // s* in float32 whatever the dtype, as diffusers' cfg_zero_star_scale computes it.
  const Tensor cf = c.reshape({b, -1}).to(at::kFloat), uf = u.reshape({b, -1}).to(at::kFloat);
  std::vector<int64_t> shape(static_cast<size_t>(c.dim()), 1);
  shape[0] = b;
  const Tensor s_star =
      ((cf * uf).sum(1, true) / (uf.pow(2).sum(1, true) + 1e-8)).to(c.scalar_type()).reshape(shape);
  const Tensor su = u * s_star;
  Tensor out = (options.original_formulation() ? c : su) + (c - su) * options.scale();
  return out.to(dtype);
}

DIFFUSE_REGISTER_GUIDANCE(CfgZeroStarGuidance, "cfg_zero_star",
                          "CFG-Zero* (Fan et al. 2025): optimised scale s* and zero-init steps");

}  // namespace diffuse
