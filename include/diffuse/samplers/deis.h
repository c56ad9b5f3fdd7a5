// SPDX-License-Identifier: Apache-2.0
// DEIS multistep, the log-rho variant: Zhang, Chen, "Fast Sampling of Diffusion Models with
// Exponential Integrator" (ICLR 2023), as diffusers' DEISMultistepScheduler (algorithm_type="deis",
// solver_type="logrho"). With rho = sigma / alpha (= sigma_ve) the probability-flow ODE is
// d(x / alpha) / d rho = eps; DEIS interpolates the last p noise predictions by a polynomial in
// log rho and integrates it exactly:
//   x' / alpha' = x / alpha + sum_j c_j eps_j,   c_j = integral over [rho, rho'] of L_j(log r) dr,
// L_j the Lagrange basis on the nodes log rho_{s_j} (p = 1: DDIM). The integrals are closed forms
// (integral of u^k e^u), the same as diffusers' ind_fn. Order rules: dpm_multistep_order (the
// DPM-Solver++ rules: warm-up, lower_order_final below 15 steps, first order onto sigma = 0, where
// the step lands on alpha x0). Needs alpha > 0 where it steps from.
// Checked against: diffusers DEISMultistepScheduler (58eb52c; tests/samplers/deis_test.cpp,
// tests/reference/new_solvers.py deis).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct DeisOptions {
  /// Order 1-3 (default 2, diffusers' default).
  TORCH_ARG(int64_t, order) = 2;
  /// Lower the order on the last two steps of runs shorter than 15 steps. Default true.
  TORCH_ARG(bool, lower_order_final) = true;
};

class DeisSampler final : public Sampler {
 public:
  explicit DeisSampler(DeisOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "deis"; }
  int64_t history_size() const override { return options.order() - 1; }

  /// The coefficients c_j of the step from rho = nodes[0] to `to`, nodes the rho of the newest
  /// grid points first (exposed for tests).
  static std::vector<double> coefficients(const std::vector<double>& nodes, double to);

  DeisOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                       const History& history, SampleContext&) const override;
};

}  // namespace diffuse
