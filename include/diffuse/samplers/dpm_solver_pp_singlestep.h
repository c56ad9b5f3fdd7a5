// SPDX-License-Identifier: Apache-2.0
// DPM-Solver++ singlestep with grid points as intermediate points, data prediction, in lambda.
// Lu et al., "DPM-Solver++" (2022), Alg. 1 (2S) and DPM-Solver-3 (Lu et al. 2022, Alg. 2), in the
// form of diffusers' DPMSolverSinglestepScheduler (58eb52c), checked against it in float64
// (tests/samplers/dpm_solver_pp_singlestep_test.cpp).
//
// The grid steps are taken in groups following an order list (diffusers' get_order_list):
//   lower_order_final=false: [1, 2, 3] repeated (order 3), [1, 2] repeated (order 2), [1] * n;
//   lower_order_final=true:  the same, with the tail shortened so the run ends on a complete
//     group: order 3: n % 3 == 0 -> ... + [1, 2] + [1], n % 3 == 1 -> ... + [1], else ... + [1, 2];
//     order 2: n even -> ... + [1, 1], n odd -> ... + [1];
//   a final step onto sigma = 0 is first order.
// lower_order_final is switched on (as diffusers does, with a warning) when n % order != 0 or the
// grid ends on sigma = 0. A step of order k (k-th entry of a group) restarts from the sample x_g at
// the group's first point g (History::xs) and uses the data predictions at the group's k points;
// steps at the start of a run lower their order until enough predictions exist (img2img).
//
// With g the group start, s1, s0 the later points of the group (s0 = now), h = lambda_next -
// lambda_g, h_0 = lambda_s0 - lambda_g, h_1 = lambda_s1 - lambda_g, a = alpha_next,
//   order 1: x_next = (sigma_next / sigma_g) x_g + a (1 - e^{-h}) m_g
//   order 2: E0 = (m0 - m_g) / h_0;  midpoint: ... + a (1 - e^{-h}) h E0 / 2;  heun: ... + a
//   (e^{-h} - 1 + h) E0 order 3: E0 = (m0 - m_g) / h_0, E1 = (m1 - m_g) / h_1;
//            midpoint: ... + a (e^{-h} - 1 + h) E0
//            heun:     ... + a (e^{-h} - 1 + h) (h_0 E1 - h_1 E0) / (h_0 - h_1)
//                          - 2 a (e^{-h} - 1 + h - h^2 / 2) (E0 - E1) / (h_0 - h_1)
// (diffusers' D1 = h E, r = h_k / h expanded, so nothing divides by h; at h = 0 x_g is returned.)
// predict_x0=false is DPM-Solver's noise-prediction form (diffusers' algorithm_type="dpmsolver"):
// m = eps, x_g scaled by alpha_next / alpha_g, the first-order weight -(sigma_next e^h -
// sigma_next)
// (= -(alpha_next sigma_g / alpha_g - sigma_next), alpha_next x0 onto sigma = 0), and
// -sigma_next (e^h - 1 - h) in place of a (e^{-h} - 1 + h) (midpoint order 2: -sigma_next
// (e^h - 1) h E0 / 2). It needs alpha_g > 0.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>
#include <diffuse/samplers/coefficients.h>

namespace diffuse {

struct DpmSolverPPSinglestepOptions {
  /// Solver order: 1, 2 (default) or 3. history_size() = order - 1.
  TORCH_ARG(int64_t, order) = 2;
  /// "midpoint" (default) or "heun".
  TORCH_ARG(DpmSolverType, solver_type) = DpmSolverType::kMidpoint;
  /// End on a complete group (see the file comment). Default false (diffusers' class default);
  /// forced on when num_steps % order != 0 or the grid ends on sigma = 0.
  TORCH_ARG(bool, lower_order_final) = false;
  /// Data prediction, DPM-Solver++ (default true); false: the noise-prediction DPM-Solver.
  TORCH_ARG(bool, predict_x0) = true;
};

class DpmSolverPPSinglestepSampler final : public Sampler {
 public:
  explicit DpmSolverPPSinglestepSampler(DpmSolverPPSinglestepOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dpm_solver_pp_singlestep"; }
  int64_t history_size() const override { return options.order() - 1; }

  /// The order list for a grid of num_steps steps (diffusers' get_order_list, with its two
  /// automatic switches to lower_order_final).
  std::vector<int64_t> order_list(int64_t num_steps, bool final_is_clean) const;

  /// The order used at step `st` with `available` earlier predictions.
  int64_t order_at(const StepContext& st, size_t available) const;

  DpmSolverPPSinglestepOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                       const History& history, SampleContext&) const override;
};

}  // namespace diffuse
