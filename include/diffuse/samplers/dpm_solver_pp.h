// SPDX-License-Identifier: Apache-2.0
// DPM-Solver++ multistep, data prediction, in lambda = log(alpha / sigma).
// Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models" (2022), Alg. 2 (2M) and the third-order multistep update (methods.md §1.4).
// Checked against: diffusers DPMSolverMultistepScheduler (algorithm_type="dpmsolver++", 58eb52c),
// run in float64 (tests/samplers/dpm_solver_pp_test.cpp).
//
// With m_k the data predictions x0 at the last grid points s0 (now), s1, s2 and
//   h = lambda_next - lambda_s0,  h_0 = lambda_s0 - lambda_s1,  h_1 = lambda_s1 - lambda_s2,
//   E0 = (m0 - m1) / h_0,  E1 = (m1 - m2) / h_1   (divided differences in lambda),
// the updates are (a = alpha_next, the diffusers formulas with D1 = h E0, r = h_0 / h expanded):
//   order 1:            x_next = (sigma_next / sigma_s0) x + a (1 - e^{-h}) m0        (= DDIM, eta 0)
//   order 2, midpoint:  ... + a (1 - e^{-h}) h E0 / 2
//   order 2, heun:      ... + a (e^{-h} - 1 + h) E0
//   order 3:            ... + a (e^{-h} - 1 + h) ((1 + w) E0 - w E1)
//                           - a (e^{-h} - 1 + h - h^2/2) (E0 - E1) / (h_0 + h_1),   w = h_0 / (h_0 + h_1)
// (diffusers' 3M uses no solver_type.) Order rules: see detail::dpm_multistep_order.
// The last term is only half the Taylor term: (E0 - E1) / (h_0 + h_1) estimates x0''/2, and the
// exact data-prediction update needs a (h^2/2 - h + 1 - e^{-h}) x0'' (the DPM-Solver++ reference code,
// diffusers and k-diffusion all carry the factor 1/2), so their "3M" converges at order 2 (measured
// 2.2 on the Gaussian-mixture testbed, tests/samplers/convergence_test.cpp). third_order="taylor"
// doubles that term and measures 3.0; the default "diffusers" reproduces diffusers bit for bit.
// Aliases: "dpmpp_2m" = order 2, "dpmpp_3m" = order 3, both with diffusers' defaults
// (lower_order_final below 15 steps, midpoint); a 3M run of >= 15 steps keeps third order up to the
// last step, and a run onto sigma = 0 always ends with one first-order step.
// Runs that start in the middle of a grid (img2img) should keep the whole grid and pass first_step to
// Sampler::sample, so step indices and num_steps are those of the whole grid (diffusers' step_index);
// cutting the grid instead changes lower_order_final's "< 15 steps" test where the counts straddle 15.
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>
#include <diffuse/samplers/detail/dpm_solver.h>

namespace diffuse {

struct DpmSolverPPOptions {
  /// Solver order: 1, 2 (default) or 3. history_size() = order - 1.
  TORCH_ARG(int64_t, order) = 2;
  /// Second-order update: "midpoint" (default) or "heun" (diffusers' solver_type).
  TORCH_ARG(std::string, solver_type) = "midpoint";
  /// Lower the order near the end for short runs: last step first order, second-to-last at most
  /// second order, but only when num_steps < lower_order_final_below. Default true (diffusers).
  TORCH_ARG(bool, lower_order_final) = true;
  /// The step count below which lower_order_final applies. Default 15, the constant diffusers
  /// hard-codes; >= 1.
  TORCH_ARG(int64_t, lower_order_final_below) = 15;
  /// Take the last step with first order whatever num_steps is. Default false.
  TORCH_ARG(bool, euler_at_final) = false;
  /// Order-3 second-derivative term: "diffusers" (default; the published code, which is
  /// effectively second order) or "taylor" (twice that term; third order). Order 3 only.
  TORCH_ARG(std::string, third_order) = "diffusers";
};

class DpmSolverPPSampler final : public Sampler {
 public:
  explicit DpmSolverPPSampler(DpmSolverPPOptions o = {}) : options(std::move(o)) {
    check(options.order() >= 1 && options.order() <= 3, "DpmSolverPPOptions.order must be 1, 2 or 3, got ",
          options.order());
    check(options.solver_type() == "midpoint" || options.solver_type() == "heun",
          "DpmSolverPPOptions.solver_type must be midpoint or heun, got '", options.solver_type(), "'");
    check(options.third_order() == "diffusers" || options.third_order() == "taylor",
          "DpmSolverPPOptions.third_order must be diffusers or taylor, got '", options.third_order(), "'");
    check(options.lower_order_final_below() >= 1, "DpmSolverPPOptions.lower_order_final_below must be >= 1, got ",
          options.lower_order_final_below());
  }
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "dpm_solver_pp");
    DpmSolverPPOptions o;
    o.order(r.get_int("order", o.order()));
    o.solver_type(r.get_choice("solver_type", o.solver_type(), detail::dpm_solver_types()));
    o.lower_order_final(r.get_bool("lower_order_final", o.lower_order_final()));
    o.lower_order_final_below(r.get_int("lower_order_final_below", o.lower_order_final_below()));
    o.euler_at_final(r.get_bool("euler_at_final", o.euler_at_final()));
    o.third_order(r.get_choice("third_order", o.third_order(), {"diffusers", "taylor"}));
    r.finish();
    return std::make_unique<DpmSolverPPSampler>(o);
  }
  Config to_config() const override {
    return {{"order", std::to_string(options.order())},
            {"solver_type", options.solver_type()},
            {"lower_order_final", options.lower_order_final() ? "true" : "false"},
            {"lower_order_final_below", std::to_string(options.lower_order_final_below())},
            {"euler_at_final", options.euler_at_final() ? "true" : "false"},
            {"third_order", options.third_order()}};
  }
  std::string name() const override { return "dpm_solver_pp"; }
  int64_t history_size() const override { return options.order() - 1; }

  /// The order used at step `st` with `available` earlier predictions (exposed for tests).
  int64_t order_at(const StepContext& st, size_t available) const {
    return detail::dpm_multistep_order(options.order(), options.lower_order_final(),
                                       options.lower_order_final_below(), options.euler_at_final(), st.index,
                                       st.num_steps, st.next.is_clean(), available);
  }

  DpmSolverPPOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History& history,
                       SampleContext&) const override {
    const TimePoint& s0 = st.now;
    const TimePoint& next = st.next;
    Prediction p = model(x, s0, st);
    const int64_t order = order_at(st, history.size());
    const double lambda0 = s0.log_snr();
    const double h = next.log_snr() - lambda0;  // +inf onto the clean point or from alpha = 0
    const double a = next.alpha;
    if (h == 0.0) return {x, p};  // zero-length final step: every term vanishes
    const Tensor& m0 = p.x0;
    // Order 1 (DPM-Solver++ Eq. (9) / DDIM): exact for h = +inf too, where it returns alpha_next * x0.
    Tensor x_next = detail::lincomb(x, next.sigma / s0.sigma, m0, a * detail::dpm_phi1(h));
    if (order == 1) return {x_next, p};

    const size_t n = history.size();
    const Tensor& m1 = history.preds[n - 1].x0;
    const double inv_h0 = detail::dpm_inv_step(lambda0 - history.times[n - 1].log_snr());
    const Tensor e0 = detail::diff_scaled(m0, m1, inv_h0);
    const double em = detail::dpm_expm1_plus(h);  // e^{-h} - 1 + h
    if (order == 2) {
      const bool midpoint = options.solver_type() == "midpoint";
      detail::add_scaled_(x_next, e0, midpoint ? 0.5 * a * detail::dpm_phi1(h) * h : a * em);
      return {x_next, p};
    }
    const Tensor& m2 = history.preds[n - 2].x0;
    const double h0 = lambda0 - history.times[n - 1].log_snr();
    const double h1 = history.times[n - 1].log_snr() - history.times[n - 2].log_snr();
    const Tensor e1 = detail::diff_scaled(m1, m2, detail::dpm_inv_step(h1));
    const double w = std::isinf(h1) ? 0.0 : h0 / (h0 + h1);
    const double d2_scale = options.third_order() == "taylor" ? 2.0 : 1.0;
    const double inv_sum = std::isinf(h1) ? 0.0 : d2_scale / (h0 + h1);
    Tensor first = detail::scaled(e0, 1.0 + w);
    detail::sub_scaled_(first, e1, w);
    detail::add_scaled_(x_next, first, a * em);
    detail::sub_scaled_(x_next, e0 - e1, a * (em - 0.5 * h * h) * inv_sum);
    return {x_next, p};
  }
};

DIFFUSE_REGISTER_SAMPLER(DpmSolverPPSampler, "dpm_solver_pp",
                         "DPM-Solver++ multistep (Lu et al. 2022), data prediction, order 1-3");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2m, "dpmpp_2m", "dpm_solver_pp", (Config{{"order", "2"}}),
                               "DPM++ 2M (A1111/ComfyUI name): dpm_solver_pp order=2");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2m_k, "k_dpmpp_2m", "dpm_solver_pp", (Config{{"order", "2"}}),
                               "A1111's internal name for DPM++ 2M");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2m_a1111, "DPM++ 2M", "dpm_solver_pp", (Config{{"order", "2"}}),
                               "A1111's label for DPM++ 2M (pair it with the karras spacing for 'DPM++ 2M Karras')");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_3m, "dpmpp_3m", "dpm_solver_pp", (Config{{"order", "3"}}),
                               "DPM++ 3M: dpm_solver_pp order=3 (diffusers solver_order=3 defaults)");

}  // namespace diffuse
