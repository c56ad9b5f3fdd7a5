// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/guidance/apg.h>.
#include <diffuse/samplers/guidance/apg.h>

#include <cmath>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>
#include <diffuse/schedule.h>

namespace diffuse {

const EnumNames<ApgSpace>& apg_space_names() {
  static const EnumNames<ApgSpace> names{{"output", ApgSpace::output}, {"x0", ApgSpace::x0}};
  return names;
}

ApgGuidance::ApgGuidance(ApgOptions o) : options(o) {
  check(std::isfinite(options.scale()), "apg: scale must be finite, got ", options.scale());
  check(std::isfinite(options.eta()), "apg: eta must be finite, got ", options.eta());
  check(std::isfinite(options.norm_threshold()) && options.norm_threshold() >= 0,
        "apg: norm_threshold must be finite and >= 0, got ", options.norm_threshold());
  check(std::isfinite(options.momentum()), "apg: momentum must be finite, got ",
        options.momentum());
  check_enum(options.space(), apg_space_names(), "apg: space");
}

std::unique_ptr<Guidance> ApgGuidance::from_config(const Config& c) {
  ConfigReader r(c, "apg");
  ApgOptions o;
  o.scale(r.get_double("scale", o.scale()));
  o.eta(r.get_double("eta", o.eta()));
  o.norm_threshold(r.get_double("norm_threshold", o.norm_threshold()));
  o.momentum(r.get_double("momentum", o.momentum()));
  o.original_formulation(r.get_bool("original_formulation", o.original_formulation()));
  o.space(r.get_enum("space", o.space(), apg_space_names()));
  r.finish();
  return std::make_unique<ApgGuidance>(o);
}

Config ApgGuidance::to_config() const {
  return {{"scale", format_double(options.scale())},
          {"eta", format_double(options.eta())},
          {"norm_threshold", format_double(options.norm_threshold())},
          {"momentum", format_double(options.momentum())},
          {"original_formulation", options.original_formulation() ? "true" : "false"},
          {"space", enum_name(options.space(), apg_space_names())}};
}

Tensor ApgGuidance::combine(const Tensor& cond_out, const Tensor& uncond_out,
                            const StepContext&) const {
  check(cond_out.sizes() == uncond_out.sizes(), "apg: conditional output shape ", cond_out.sizes(),
        " differs from unconditional output shape ", uncond_out.sizes());
  check(cond_out.dim() >= 1 && cond_out.size(0) > 0, "apg: needs a batch dimension, got shape ",
        cond_out.sizes());
  // Per sample over every non-batch element ([B] alone: one element each); half types in float32.
  const auto dtype = cond_out.scalar_type();
  const auto work = dtype == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t b = cond_out.size(0);
  const Tensor c = cond_out.to(work).reshape({b, -1});
  const Tensor u = uncond_out.to(work).reshape({b, -1});
  Tensor diff = c - u;
  if (options.momentum() != 0) {
    running_ = running_.defined() && running_.sizes() == diff.sizes()
                   ? diff + running_ * options.momentum()
                   : diff;
    diff = running_;
  }
  if (options.norm_threshold() > 0) {
    const Tensor norm = diff.norm(2, {1}, /*keepdim=*/true);
    diff = diff * at::clamp_max(options.norm_threshold() / norm, 1.0);
  }
  // The projection in double, as diffusers does.
  const Tensor v0 = diff.to(at::kDouble);
  const Tensor cd = c.to(at::kDouble);
  const Tensor unit = cd / at::clamp_min(cd.norm(2, {1}, true), 1e-12);  // F.normalize's eps
  const Tensor par = (v0 * unit).sum({1}, true) * unit;
  const Tensor update = (v0 - par + par * options.eta()).to(work);
  const Tensor& base = options.original_formulation() ? c : u;
  return (base + update * options.scale()).reshape(cond_out.sizes()).to(dtype);
}

Prediction ApgGuidance::combine_predictions(const Prediction& cond, const Prediction& uncond,
                                            const Tensor& x, const TimePoint& at,
                                            const StepContext& step) const {
  Prediction p;
  p.x0 = combine(cond.x0, uncond.x0, step);
  check(at.sigma > 0, "apg: space=x0 needs sigma > 0 at the call (t=", at.t, ")");
  p.eps = (x - p.x0 * at.alpha) / at.sigma;
  return p;
}

DIFFUSE_REGISTER_GUIDANCE(ApgGuidance, "apg",
                          "adaptive projected guidance (Sadat et al. 2025): momentum, norm "
                          "threshold, parallel component scaled by eta");

}  // namespace diffuse
