// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/guidance/cfg_pp.h>.
#include <diffuse/samplers/guidance/cfg_pp.h>

#include <cmath>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>
#include <diffuse/sampler.h>

namespace diffuse {

CfgPPGuidance::CfgPPGuidance(CfgPPOptions o) : options(o) {
  check(std::isfinite(options.scale()) && options.scale() >= 0 && options.scale() <= 2,
        "cfg_pp: scale (lambda) must be in [0, 2], got ", options.scale());
}

std::unique_ptr<Guidance> CfgPPGuidance::from_config(const Config& c) {
  ConfigReader r(c, "cfg_pp");
  CfgPPOptions o;
  o.scale(r.get_double("scale", o.scale()));
  r.finish();
  return std::make_unique<CfgPPGuidance>(o);
}

Config CfgPPGuidance::to_config() const { return {{"scale", format_double(options.scale())}}; }

Tensor CfgPPGuidance::combine(const Tensor&, const Tensor&, const StepContext&) const {
  throw Error("cfg_pp combines predictions, not raw outputs (on_predictions() is true)");
}

Prediction CfgPPGuidance::combine_predictions(const Prediction& cond, const Prediction& uncond,
                                              const Tensor& x, const TimePoint& at,
                                              const StepContext& step) const {
  check(at.sigma > 0, "cfg_pp: a call at sigma = 0 (t=", at.t, ") has no noise to re-draw");
  const double h = step.next.log_snr() - step.now.log_snr();
  const double phi1 = std::isnan(h) ? 1.0 : -std::expm1(-h);  // 1 onto sigma = 0 (h = +inf)
  const double w = phi1 > 0 ? options.scale() / phi1 : options.scale();
  Prediction p;
  p.x0 = uncond.x0 + (cond.x0 - uncond.x0) * w;
  p.eps = (x - p.x0 * at.alpha) / at.sigma;
  return p;
}

DIFFUSE_REGISTER_GUIDANCE(CfgPPGuidance, "cfg_pp",
                          "CFG++ (Chung et al. 2025): guided x0, unconditional re-noising, for "
                          "every sampler");

}  // namespace diffuse
