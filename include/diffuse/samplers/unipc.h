// SPDX-License-Identifier: Apache-2.0
// UniPC multistep: a unified predictor-corrector in lambda = log(alpha / sigma).
// Zhao, Bai, Rao, Zhou, Lu, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
// Diffusion Models" (NeurIPS 2023), the B(h) variants of Alg. 1 and 2.
// Checked against: diffusers UniPCMultistepScheduler (58eb52c), run in float64 and float32
// (tests/samplers/unipc_test.cpp, tests/reference/new_solvers.py).
//
// With m the converted model outputs (data predictions x0 when predict_x0, else noise
// predictions eps) at the grid points s0 (the step's start), s1, s2, ... (older), the step to t,
//   h = lambda_t - lambda_s0,  r_k = (lambda_sk - lambda_s0) / h,  D_k = (m_k - m0) / r_k,
//   hh = -h (x0) or h (eps),  B(h) = hh (bh1) or e^hh - 1 (bh2),
//   phi_1 = (e^hh - 1) / hh - 1,  phi_{k+1} = phi_k / hh - 1 / (k + 1)!,  g_k = k! phi_k,
// the order-p predictor UniP-p is
//   x0:  x_t = (sigma_t / sigma_s0) x - alpha_t (e^-h - 1) m0 - alpha_t sum_k c_k D_k
//   eps: x_t = (alpha_t / alpha_s0) x - sigma_t (e^h - 1) m0 - sigma_t sum_k c_k D_k
// with the coefficients c (k = 1 .. p-1) solving sum_k c_k r_k^(i-1) = g_i, i = 1 .. p-1, except
// at p = 2, where c_1 = B(h) / 2 (the published rule; bh1 and bh2 differ only there and in the
// corrector's p = 1). The corrector UniC-p runs at the start of the next step, with that step's
// first model output m_t at the predicted x_t (no extra network call): it redoes the step from s0
// with r_p = 1, D_p = m_t - m0 and p equations (p = 1: c_1 = B(h) / 2), and the next step
// continues from the corrected x_t. Its order p is the predictor order of the step it corrects.
//
// Order rules (diffusers): step j of a run uses order min(order, j + 1) (warm-up); with
// lower_order_final (default on), step i of n uses at most n - i (so the last step is first order,
// whatever n is: unlike DPM-Solver++ there is no "< 15 steps" test). The step onto sigma = 0 is
// first order and lands on alpha x0: diffusers' bh1 returns NaN there (B(h) = -inf times a zero
// sum) and its eps form 0 * inf; both are the x0 limit here. The corrector is skipped at the steps
// listed in disable_corrector (index of the step whose result it would correct, as diffusers' list)
// and everywhere when corrector = false (UniP alone).
// Aliases: uni_pc (ComfyUI, bh1), uni_pc_bh2 (ComfyUI), unipc (diffusers' defaults: bh2), UniPC
// (A1111's label).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

/// B(h) of UniPC: bh1 (B(h) = hh) or bh2 (B(h) = e^hh - 1, diffusers' default).
enum class UniPCVariant { bh1, bh2 };
/// Names of UniPCVariant ("bh1", "bh2").
const EnumNames<UniPCVariant>& unipc_variant_names();

struct UniPCOptions {
  /// Predictor order 1, 2 (default) or 3; the corrector then reaches order + 1.
  TORCH_ARG(int64_t, order) = 2;
  /// B(h): bh2 (default, diffusers' default and the paper's choice for guided sampling) or bh1.
  TORCH_ARG(UniPCVariant, variant) = UniPCVariant::bh2;
  /// Solve with data predictions (default true, UniPC's recommended form) or noise predictions.
  TORCH_ARG(bool, predict_x0) = true;
  /// Apply the corrector UniC (default true); false is the predictor UniP alone.
  TORCH_ARG(bool, corrector) = true;
  /// Step indices whose result is not corrected (diffusers' disable_corrector). Default none.
  TORCH_ARG(std::vector<int64_t>, disable_corrector) = {};
  /// Lower the order near the end: step i of n uses at most order n - i. Default true.
  TORCH_ARG(bool, lower_order_final) = true;
};

class UniPCSampler final : public Sampler {
 public:
  explicit UniPCSampler(UniPCOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "unipc"; }
  /// The corrector needs the outputs of the last `order` steps.
  int64_t history_size() const override { return options.order(); }

  /// The predictor order at step `st` with `available` earlier outputs (exposed for tests).
  int64_t order_at(const StepContext& st, size_t available) const;

  UniPCOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                       const History& history, SampleContext& ctx) const override;
};

}  // namespace diffuse
