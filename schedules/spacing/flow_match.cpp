// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/flow_match.h>.
#include <diffuse/schedules/spacing/flow_match.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>
#include <diffuse/schedules/flow.h>

namespace diffuse {

const EnumNames<FlowMatchRule>& flow_match_rule_names() {
  static const EnumNames<FlowMatchRule> names{{"euler", FlowMatchRule::euler},
                                              {"dpm_solver", FlowMatchRule::dpm_solver},
                                              {"unipc", FlowMatchRule::unipc}};
  return names;
}

const EnumNames<FlowSigmas>& flow_sigmas_names() {
  static const EnumNames<FlowSigmas> names{{"shifted", FlowSigmas::shifted},
                                           {"karras", FlowSigmas::karras},
                                           {"exponential", FlowSigmas::exponential},
                                           {"beta", FlowSigmas::beta}};
  return names;
}

FlowMatchSpacing::FlowMatchSpacing(FlowMatchSpacingOptions o) : options(o) {
  check_enum(o.rule(), flow_match_rule_names(), "flow_match: rule");
  check_enum(o.sigmas(), flow_sigmas_names(), "flow_match: sigmas");
  check(std::isfinite(o.rho()) && o.rho() > 0, "flow_match: rho must be > 0, got ", o.rho());
  for (const double v : {o.beta_alpha(), o.beta_beta()})
    check(std::isfinite(v) && v > 0, "flow_match: beta_alpha and beta_beta must be > 0, got ", v);
  check(o.rule() == FlowMatchRule::euler || o.sigmas() == FlowSigmas::shifted,
        "flow_match: sigmas=", enum_name(o.sigmas(), flow_sigmas_names()),
        " needs rule=euler (diffusers' DPM-Solver has no Karras/exponential/beta flow sigmas)");
}

std::unique_ptr<TimestepSpacing> FlowMatchSpacing::from_config(const Config& c) {
  ConfigReader r(c, "flow_match spacing");
  FlowMatchSpacingOptions o;
  o.rule(r.get_enum("rule", o.rule(), flow_match_rule_names()));
  o.sigmas(r.get_enum("sigmas", o.sigmas(), flow_sigmas_names()));
  o.rho(r.get_double("rho", o.rho()));
  o.beta_alpha(r.get_double("beta_alpha", o.beta_alpha()));
  o.beta_beta(r.get_double("beta_beta", o.beta_beta()));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  r.finish();
  return std::make_unique<FlowMatchSpacing>(o);
}

Config FlowMatchSpacing::to_config() const {
  Config c{{"rule", enum_name(options.rule(), flow_match_rule_names())},
           {"sigmas", enum_name(options.sigmas(), flow_sigmas_names())},
           {"rho", format_double(options.rho())}};
  if (options.final() != FinalPoint::kZero)  // written only when used
    c["final"] = enum_name(options.final(), final_point_names());
  if (options.sigmas() == FlowSigmas::beta) {  // written only when used
    c["beta_alpha"] = format_double(options.beta_alpha());
    c["beta_beta"] = format_double(options.beta_beta());
  }
  return c;
}

namespace {

/// LTX-Video's stretch (diffusers' stretch_shift_to_terminal): 1 - sigma scaled so that the last
/// sigma is shift_terminal (when > 0). One step has only sigma = 1 (diffusers divides by zero).
void stretch_to_terminal(const FlowScheduleOptions& so, std::vector<double>& sig, int64_t n) {
  if (so.shift_terminal() <= 0) return;
  check(n >= 2, "flow_match: shift_terminal=", so.shift_terminal(),
        " needs at least 2 steps, got num_steps=", n);
  const double factor = (1.0 - sig.back()) / (1.0 - so.shift_terminal());
  for (double& v : sig) v = 1.0 - (1.0 - v) / factor;
}

/// FlowMatchEuler's set_timesteps: the noise levels, noisiest first, without the final 0.
std::vector<double> euler_rule(const FlowSchedule& fs, const FlowMatchSpacingOptions& o,
                               int64_t n) {
  const auto& so = fs.options;
  const double scale = so.t_scale();
  const double u_min = so.use_dynamic_shifting() ? so.sigma_min() : fs.shifted(so.sigma_min());
  std::vector<double> sig = detail::np_linspace(1.0 * scale, u_min * scale, n);
  for (double& v : sig) v = fs.shifted(v / scale);
  stretch_to_terminal(so, sig, n);
  if (o.sigmas() == FlowSigmas::karras) {
    sig = detail::karras_ramp(sig.back(), sig.front(), o.rho(), n);
  } else if (o.sigmas() == FlowSigmas::exponential) {
    check(sig.back() > 0, "flow_match: exponential sigmas need a last sigma > 0");
    sig = detail::exponential_ramp(sig.back(), sig.front(), n);
  } else if (o.sigmas() == FlowSigmas::beta) {
    sig = detail::beta_ramp(sig.back(), sig.front(), o.beta_alpha(), o.beta_beta(), n);
  }
  return sig;
}

/// DPMSolverMultistep's use_flow_sigmas: noisiest first, without the final 0.
std::vector<double> dpm_rule(const FlowSchedule& fs, int64_t n) {
  const auto& so = fs.options;
  check(!so.use_dynamic_shifting() || so.time_shift_type() == FlowTimeShift::exponential,
        "flow_match: rule=dpm_solver supports the exponential dynamic shift only (diffusers sets "
        "flow_shift = exp(mu)), got time_shift_type=linear");
  check(so.shift_terminal() == 0, "flow_match: rule=dpm_solver has no shift_terminal, got ",
        so.shift_terminal());
  const double s = so.use_dynamic_shifting() ? std::exp(so.mu()) : so.shift();
  const std::vector<double> alphas = detail::np_linspace(1.0, so.sigma_min(), n + 1);
  std::vector<double> sig;
  sig.reserve(n);
  for (int64_t i = n; i >= 1; --i) {  // flipped; alphas[0] = 1 gives sigma 0, dropped
    sig.push_back(flow_static_shift(s, 1.0 - alphas[i]));
  }
  return sig;
}

/// UniPCMultistep's use_flow_sigmas: n of linspace(1, sigma_min, n + 1), shifted, stretched to
/// shift_terminal, the first nudged 1e-6 below 1; noisiest first, without the final 0.
std::vector<double> unipc_rule(const FlowSchedule& fs, int64_t n) {
  const auto& so = fs.options;
  const std::vector<double> lin = detail::np_linspace(1.0, so.sigma_min(), n + 1);
  std::vector<double> sig(lin.begin(), lin.end() - 1);
  for (double& v : sig) v = fs.shifted(v);
  stretch_to_terminal(so, sig, n);
  if (std::fabs(sig[0] - 1.0) < 1e-6) sig[0] -= 1e-6;
  return sig;
}

}  // namespace

TimeGrid FlowMatchSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("flow_match", n);
  const auto* fs = dynamic_cast<const FlowSchedule*>(&s);
  check(fs != nullptr, "flow_match spacing needs the flow schedule, got '", s.name(), "'");
  // DPM-Solver and UniPC cast their model times to int64.
  const bool dpm = options.rule() != FlowMatchRule::euler;
  const std::vector<double> sig = options.rule() == FlowMatchRule::dpm_solver ? dpm_rule(*fs, n)
                                  : options.rule() == FlowMatchRule::unipc
                                      ? unipc_rule(*fs, n)
                                      : euler_rule(*fs, options, n);
  TimeGrid g;
  g.reserve(sig.size() + 1);
  for (double v : sig) {
    check_numerics(std::isfinite(v) && v > 0 && v <= 1, "flow_match: noise level ", v,
                   " outside (0, 1] at step ", g.size());
    TimePoint p = fs->at_sigma(v);
    if (dpm) {
      p.t = std::trunc(p.t);  // diffusers casts its float timesteps to int64
      // Integer model times are only meaningful on a fine time scale (diffusers: 1000).
      check(p.t >= 1 && (g.empty() || p.t < g.back().t),
            "flow_match: rule=", enum_name(options.rule(), flow_match_rule_names()), " feeds ",
            "truncated integer model times, which must be >= 1 and strictly decreasing; with ",
            "t_scale=", fs->options.t_scale(), " and ", n, " steps step ", g.size(),
            " gets t=", p.t, " (use rule=euler or a larger t_scale)");
    }
    g.push_back(p);
  }
  g.push_back(options.final() == FinalPoint::kMin ? g.back() : s.clean_point());
  return g;
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, FlowMatchSpacing, "flow_match",
                 "diffusers' flow-matching grids on the flow schedule, shift applied "
                 "(rule=euler: FlowMatchEuler/Heun; rule=dpm_solver: DPM-Solver flow sigmas; "
                 "rule=unipc: UniPC flow sigmas)");

}  // namespace diffuse
