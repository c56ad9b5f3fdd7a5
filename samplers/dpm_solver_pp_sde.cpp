// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpm_solver_pp_sde.h>.
#include <diffuse/samplers/dpm_solver_pp_sde.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

DpmSolverPPSdeSampler::DpmSolverPPSdeSampler(DpmSolverPPSdeOptions o) : options(std::move(o)) {
  check(options.order() == 1 || options.order() == 2,
        "DpmSolverPPSdeOptions.order must be 1 or 2, got ", options.order());
  check(options.solver_type() == DpmSolverType::kMidpoint ||
            options.solver_type() == DpmSolverType::kHeun,
        "DpmSolverPPSdeOptions.solver_type must be kMidpoint or kHeun, got ",
        static_cast<int>(options.solver_type()));
  check(options.lower_order_final_below() >= 1,
        "DpmSolverPPSdeOptions.lower_order_final_below must be >= 1, got ",
        options.lower_order_final_below());
}

std::unique_ptr<Sampler> DpmSolverPPSdeSampler::from_config(const Config& c) {
  ConfigReader r(c, "dpm_solver_pp_sde");
  DpmSolverPPSdeOptions o;
  o.order(r.get_int("order", o.order()));
  o.solver_type(r.get_enum("solver_type", o.solver_type(), dpm_solver_type_names()));
  o.lower_order_final(r.get_bool("lower_order_final", o.lower_order_final()));
  o.lower_order_final_below(r.get_int("lower_order_final_below", o.lower_order_final_below()));
  o.euler_at_final(r.get_bool("euler_at_final", o.euler_at_final()));
  r.finish();
  return std::make_unique<DpmSolverPPSdeSampler>(o);
}

Config DpmSolverPPSdeSampler::to_config() const {
  return {{"order", std::to_string(options.order())},
          {"solver_type", enum_name(options.solver_type(), dpm_solver_type_names())},
          {"lower_order_final", options.lower_order_final() ? "true" : "false"},
          {"lower_order_final_below", std::to_string(options.lower_order_final_below())},
          {"euler_at_final", options.euler_at_final() ? "true" : "false"}};
}

int64_t DpmSolverPPSdeSampler::order_at(const StepContext& st, size_t available) const {
  return dpm_multistep_order(options.order(), options.lower_order_final(),
                             options.lower_order_final_below(), options.euler_at_final(), st.index,
                             st.num_steps, st.next.is_clean(), available);
}

StepResult DpmSolverPPSdeSampler::step_impl(const ModelFn& model, const Tensor& x,
                                            const StepContext& st, const History& history,
                                            SampleContext& ctx) const {
  const TimePoint& s0 = st.now;
  const TimePoint& next = st.next;
  Prediction p = model(x, s0, st);
  const Tensor z = ctx.randn_like(x);  // drawn every step, as diffusers does
  const int64_t order = order_at(st, history.size());
  const double lambda0 = s0.log_snr();
  const double h = next.log_snr() - lambda0;
  if (h == 0.0) return {x, p};  // zero-length final step: every term vanishes
  const double a = next.alpha;
  const double phi = -std::expm1(-2.0 * h);  // 1 - e^{-2h}, 1 at h = +inf
  // sigma_next / sigma_s0 * e^{-h}; 0 onto the clean point (sigma_next = 0, h = inf).
  const double decay = next.sigma == 0.0 ? 0.0 : (next.sigma / s0.sigma) * std::exp(-h);
  Tensor x_next = lincomb(x, decay, p.x0, a * phi);
  if (next.sigma > 0) add_scaled_(x_next, z, next.sigma * std::sqrt(phi));
  if (order == 1) return {x_next, p};

  const size_t n = history.size();
  const Tensor e0 = diff_scaled(p.x0, history.preds[n - 1].x0,
                                dpm_inv_step(lambda0 - history.times[n - 1].log_snr()));
  const bool midpoint = options.solver_type() == DpmSolverType::kMidpoint;
  add_scaled_(x_next, e0,
              midpoint ? 0.5 * a * phi * h : 0.5 * a * (std::expm1(-2.0 * h) + 2.0 * h));
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(
    DpmSolverPPSdeSampler, "dpm_solver_pp_sde",
    "SDE-DPM-Solver++ multistep (diffusers sde-dpmsolver++), order 1-2, stochastic");
DIFFUSE_REGISTER_SAMPLER_ALIAS(
    dpmpp_2m_sde, "dpmpp_2m_sde", "dpm_solver_pp_sde", (Config{{"order", "2"}}),
    "DPM++ 2M SDE (eta=1, midpoint; noise per step, not a Brownian tree)");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2m_sde_k, "k_dpmpp_2m_sde", "dpm_solver_pp_sde",
                               (Config{{"order", "2"}}), "A1111's internal name for DPM++ 2M SDE");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2m_sde_a1111, "DPM++ 2M SDE", "dpm_solver_pp_sde",
                               (Config{{"order", "2"}}), "A1111's label for DPM++ 2M SDE");

}  // namespace diffuse
