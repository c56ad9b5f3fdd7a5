// SPDX-License-Identifier: Apache-2.0
// Linear multistep (LMS) in the noise level sigma_ve, the Adams-Bashforth rule on the Karras ODE
// dx/dsigma = d = (x - x0) / sigma (Karras et al. 2022), as k-diffusion's sample_lms and diffusers'
// LMSDiscreteScheduler: with the slopes d_0 (now) .. d_{k-1} at the last k grid points s_j,
//   x_ve' = x_ve + sum_j c_j d_j,   c_j = integral over [sigma_now, sigma_next] of the Lagrange
//   basis polynomial of node j on the nodes sigma_{s_0..s_{k-1}},
// k = min(order, steps taken so far + 1). The integrals are exact here (the polynomials of degree
// < 4 integrated in closed form; the references use scipy.integrate.quad, exact to rounding for
// these). Needs 0 < sigma_ve < inf at the points it steps from (alpha > 0).
// Checked against: k-diffusion sample_lms (4601bf0; tests/samplers/lms_test.cpp).
// Aliases: k_lms (A1111's internal name), LMS (A1111's label).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct LmsOptions {
  /// Order 1-4 (k-diffusion's and A1111's default 4; order 1 is Euler).
  TORCH_ARG(int64_t, order) = 4;
};

class LmsSampler final : public Sampler {
 public:
  explicit LmsSampler(LmsOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "lms"; }
  int64_t history_size() const override { return options.order() - 1; }

  /// The coefficients c_j of the step from nodes[0] to `to` (nodes: sigma_ve of the newest grid
  /// point first): integrals of the Lagrange basis polynomials (exposed for tests).
  static std::vector<double> coefficients(const std::vector<double>& nodes, double to);

  LmsOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                       const History& history, SampleContext&) const override;
};

}  // namespace diffuse
