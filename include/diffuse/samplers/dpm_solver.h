// SPDX-License-Identifier: Apache-2.0
// DPM-Solver multistep in its noise-prediction form (Lu et al., "DPM-Solver: A Fast ODE Solver for
// Diffusion Probabilistic Model Sampling in Around 10 Steps", NeurIPS 2022; the multistep variant
// of DPM-Solver++'s paper): diffusers' algorithm_type="dpmsolver".
// Checked against: diffusers DPMSolverMultistepScheduler (algorithm_type="dpmsolver", 58eb52c),
// float64 and float32 (tests/samplers/dpm_solver_test.cpp, tests/reference/new_solvers.py).
//
// With eps_k the noise predictions at the grid points s0 (now), s1, s2, h = lambda_next -
// lambda_s0, r0 = h_0 / h, r1 = h_1 / h (h_0 = lambda_s0 - lambda_s1, h_1 = lambda_s1 - lambda_s2)
// and A = sigma_next e^h = alpha_next sigma_s0 / alpha_s0:
//   order 1:            x' = (alpha_next / alpha_s0) x - A (1 - e^-h) eps0
//   order 2, midpoint:  ... - A (1 - e^-h) D1 / 2,          D1 = (eps0 - eps1) / r0
//           heun:       ... - sigma_next ((e^h - 1) / h - 1) D1
//   order 3:            ... - sigma_next ((e^h - 1) / h - 1) D1' - sigma_next ((e^h - 1 - h) / h^2
//                       - 1/2) D2,  D1' = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1) /
//                       (r0 + r1)  (D1_k = divided differences as in diffusers)
// The order rules and options of dpm_solver_pp apply unchanged (DpmSolverPPOptions; the
// order-3 term's "taylor" doubles D2's coefficient as there). The noise form needs alpha > 0 at
// every point it steps from, and diffusers refuses final_sigmas_type="zero" for it (sigma_next
// (e^h - 1) is 0 * inf); here the step onto sigma = 0 is first order, written with A, and lands
// on alpha x0 (the limit).
#pragma once

#include <memory>
#include <string>

#include <diffuse/samplers/dpm_solver_pp.h>

namespace diffuse {

class DpmSolverSampler final : public Sampler {
 public:
  explicit DpmSolverSampler(DpmSolverPPOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dpm_solver"; }
  int64_t history_size() const override { return options.order() - 1; }

  DpmSolverPPOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                       const History& history, SampleContext&) const override;
};

}  // namespace diffuse
