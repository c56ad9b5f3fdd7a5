// SPDX-License-Identifier: Apache-2.0
// DPM-Solver++ multistep, data prediction, in lambda = log(alpha / sigma).
// Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
// Probabilistic Models" (2022), Alg. 2 (2M) and the third-order multistep update.
// Checked against: diffusers DPMSolverMultistepScheduler (algorithm_type="dpmsolver++", 58eb52c),
// run in float64 (tests/samplers/dpm_solver_pp_test.cpp).
//
// With m_k the data predictions x0 at the last grid points s0 (now), s1, s2 and
//   h = lambda_next - lambda_s0,  h_0 = lambda_s0 - lambda_s1,  h_1 = lambda_s1 - lambda_s2,
//   E0 = (m0 - m1) / h_0,  E1 = (m1 - m2) / h_1   (divided differences in lambda),
// the updates are (a = alpha_next, the diffusers formulas with D1 = h E0, r = h_0 / h expanded):
//   order 1:            x_next = (sigma_next / sigma_s0) x + a (1 - e^{-h}) m0        (= DDIM, eta
//   0) order 2, midpoint:  ... + a (1 - e^{-h}) h E0 / 2 order 2, heun:      ... + a (e^{-h} - 1 +
//   h) E0 order 3:            ... + a (e^{-h} - 1 + h) ((1 + w) E0 - w E1)
//                           - a (e^{-h} - 1 + h - h^2/2) (E0 - E1) / (h_0 + h_1),   w = h_0 / (h_0
//                           + h_1)
// (diffusers' 3M uses no solver_type.) Order rules: see dpm_multistep_order
// (<diffuse/samplers/coefficients.h>). The last term is only half the Taylor term: (E0 - E1) / (h_0
// + h_1) estimates x0''/2, and the exact data-prediction update needs a (h^2/2 - h + 1 - e^{-h})
// x0'' (the DPM-Solver++ reference code, diffusers and k-diffusion all carry the factor 1/2), so
// their "3M" converges at order 2 (measured 2.2 on the Gaussian-mixture testbed,
// tests/samplers/convergence_test.cpp). third_order="taylor" doubles that term and measures 3.0;
// the default "diffusers" reproduces diffusers bit for bit. Aliases: "dpmpp_2m" = order 2,
// "dpmpp_3m" = order 3, both with diffusers' defaults (lower_order_final below 15 steps, midpoint);
// a 3M run of >= 15 steps keeps third order up to the last step, and a run onto sigma = 0 always
// ends with one first-order step. Runs that start in the middle of a grid (img2img) should keep the
// whole grid and pass first_step to Sampler::sample, so step indices and num_steps are those of the
// whole grid (diffusers' step_index); cutting the grid instead changes lower_order_final's "< 15
// steps" test where the counts straddle 15.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>
#include <diffuse/samplers/coefficients.h>

namespace diffuse {

/// The order-3 second-derivative term of DpmSolverPPSampler (see the file comment).
enum class DpmThirdOrder {
  kDiffusers,  ///< "diffusers" (default): the published code's term (effectively second order)
  kTaylor      ///< "taylor": twice that term (third order)
};

struct DpmSolverPPOptions {
  /// Solver order: 1, 2 (default) or 3. history_size() = order - 1.
  TORCH_ARG(int64_t, order) = 2;
  /// Second-order update: kMidpoint (default, "midpoint") or kHeun ("heun"; diffusers'
  /// solver_type).
  TORCH_ARG(DpmSolverType, solver_type) = DpmSolverType::kMidpoint;
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
  TORCH_ARG(DpmThirdOrder, third_order) = DpmThirdOrder::kDiffusers;
};

/// Reads the DpmSolverPPOptions keys (order, solver_type, lower_order_final,
/// lower_order_final_below, euler_at_final, third_order) from `r`, defaults from `o`.
DpmSolverPPOptions read_dpm_solver_options(ConfigReader& r, DpmSolverPPOptions o = {});
/// The config of `o` (the keys read_dpm_solver_options reads).
Config dpm_solver_options_config(const DpmSolverPPOptions& o);
/// Throws ConfigError naming `owner` unless `o` is valid (order 1-3, known enums, below >= 1).
void check_dpm_solver_options(const DpmSolverPPOptions& o, const char* owner);

class DpmSolverPPSampler final : public Sampler {
 public:
  explicit DpmSolverPPSampler(DpmSolverPPOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dpm_solver_pp"; }
  int64_t history_size() const override { return options.order() - 1; }

  /// The order used at step `st` with `available` earlier predictions (exposed for tests).
  int64_t order_at(const StepContext& st, size_t available) const;

  DpmSolverPPOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                       const History& history, SampleContext&) const override;
};

}  // namespace diffuse
