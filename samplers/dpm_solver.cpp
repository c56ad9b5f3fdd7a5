// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpm_solver.h>.
#include <diffuse/samplers/dpm_solver.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

DpmSolverSampler::DpmSolverSampler(DpmSolverPPOptions o) : options(std::move(o)) {
  check_dpm_solver_options(options, "dpm_solver");
}

std::unique_ptr<Sampler> DpmSolverSampler::from_config(const Config& c) {
  ConfigReader r(c, "dpm_solver");
  const DpmSolverPPOptions o = read_dpm_solver_options(r);
  r.finish();
  return std::make_unique<DpmSolverSampler>(o);
}

Config DpmSolverSampler::to_config() const { return dpm_solver_options_config(options); }

StepResult DpmSolverSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                       const History& history, SampleContext&) const {
  const TimePoint& s0 = st.now;
  const TimePoint& next = st.next;
  check(s0.alpha > 0, "dpm_solver: the noise-prediction form cannot step from alpha = 0 (zero ",
        "terminal SNR or pure noise; t=", s0.t, ", step ", st.index, "); use dpm_solver_pp");
  Prediction p = model(x, s0, st);
  const int64_t order = dpm_multistep_order(
      options.order(), options.lower_order_final(), options.lower_order_final_below(),
      options.euler_at_final(), st.index, st.num_steps, next.is_clean(), history.size());
  const double lambda0 = s0.log_snr();
  const double h = next.log_snr() - lambda0;
  if (h == 0.0) return {x, p};  // zero-length final step: every term vanishes
  const Tensor& m0 = p.eps;
  // A = sigma_next e^h, finite at sigma_next = 0.
  const double big_a = next.alpha * s0.sigma / s0.alpha;
  Tensor x_next = lincomb(x, next.alpha / s0.alpha, m0, -big_a * dpm_phi1(h));
  if (order == 1) return {x_next, p};

  const double sig = next.sigma;
  const double em = std::expm1(h) - h;  // e^h - 1 - h
  const size_t n = history.size();
  const Tensor& m1 = history.preds[n - 1].eps;
  const double h0 = lambda0 - history.times[n - 1].log_snr();
  const Tensor e0 = diff_scaled(m0, m1, 1.0 / h0);
  if (order == 2) {
    const bool midpoint = options.solver_type() == DpmSolverType::kMidpoint;
    sub_scaled_(x_next, e0, midpoint ? 0.5 * sig * std::expm1(h) * h : sig * em);
    return {x_next, p};
  }
  const Tensor& m2 = history.preds[n - 2].eps;
  const double h1 = history.times[n - 1].log_snr() - history.times[n - 2].log_snr();
  const Tensor e1 = diff_scaled(m1, m2, 1.0 / h1);
  const double w = h0 / (h0 + h1);
  const double d2_scale = options.third_order() == DpmThirdOrder::kTaylor ? 2.0 : 1.0;
  Tensor first = scaled(e0, 1.0 + w);
  sub_scaled_(first, e1, w);
  sub_scaled_(x_next, first, sig * em);
  sub_scaled_(x_next, e0 - e1, sig * (em - 0.5 * h * h) * d2_scale / (h0 + h1));
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(DpmSolverSampler, "dpm_solver",
                         "DPM-Solver multistep (Lu et al. 2022), noise prediction, order 1-3 "
                         "(diffusers algorithm_type=dpmsolver)");

}  // namespace diffuse
