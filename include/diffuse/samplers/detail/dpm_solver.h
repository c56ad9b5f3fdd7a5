// SPDX-License-Identifier: Apache-2.0
// Shared pieces of the DPM-Solver++ family (samplers/dpm_solver_pp*.h): options parsing, the order
// rules of diffusers' DPMSolverMultistepScheduler, and the exponential-integrator coefficients in
// forms that stay finite at the grid's end points.
//
// Notation (methods.md §1.4): lambda = log(alpha / sigma), h = lambda_next - lambda_now >= 0.
// A step onto the clean point has h = +inf (e^{-h} = 0), a step from alpha = 0 has h = +inf too,
// and a zero-length final step (diffusers' final_sigmas_type="sigma_min" after karras / lu sigmas,
// which already end on sigma_min) has h = 0. The higher-order terms are written with the divided
// differences E = (m_a - m_b) / (lambda_a - lambda_b) of the data predictions, so no coefficient
// divides by h: at h = 0 every update term vanishes and x is returned unchanged (diffusers gets
// 0/0 = NaN there for solver_type=heun and order 3), and a previous step of infinite length simply
// contributes E = 0 (the lower-order update).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/config.h>
#include <diffuse/schedule.h>

namespace diffuse::detail {

/// phi_1(h) = 1 - e^{-h}, accurate for small h; 1 at h = +inf.
inline double dpm_phi1(double h) { return -std::expm1(-h); }

/// e^{-h} - 1 + h = h^2/2 - h^3/6 + ..., the numerator of the second-order coefficients; finite only
/// for finite h.
inline double dpm_expm1_plus(double h) { return std::expm1(-h) + h; }

/// 1 / d for a lambda difference d > 0, and 0 when d is infinite (a step from alpha = 0).
inline double dpm_inv_step(double d) { return std::isinf(d) ? 0.0 : 1.0 / d; }

/// "midpoint" | "heun" (diffusers' solver_type of the second-order update).
inline const std::vector<std::string>& dpm_solver_types() {
  static const std::vector<std::string> v{"midpoint", "heun"};
  return v;
}

/// The order diffusers' DPMSolverMultistepScheduler.step uses at this step:
///  * warm-up: the first step is first order, the second at most second order (`available` is the
///    number of earlier data predictions of this run, i.e. History::size());
///  * the last step is first order when euler_at_final, or when it lands on sigma = 0
///    (final_sigmas_type="zero": lambda = +inf), or when lower_order_final and num_steps < below;
///  * the second-to-last step is at most second order when lower_order_final and num_steps < below
///    (diffusers hard-codes below = 15: "len(self.timesteps) < 15").
/// `index` / `num_steps` are the position in the whole grid (StepContext), so a run that starts in
/// the middle of a grid (img2img) sees the same rule as diffusers' step_index.
inline int64_t dpm_multistep_order(int64_t order, bool lower_order_final, int64_t below, bool euler_at_final,
                                   int64_t index, int64_t num_steps, bool next_is_clean, size_t available) {
  const bool lof_active = lower_order_final && num_steps < below;
  const bool last = index == num_steps - 1;
  const bool second_last = index == num_steps - 2;
  if (order == 1 || available < 1 || next_is_clean || (last && (euler_at_final || lof_active))) return 1;
  if (order == 2 || available < 2 || (second_last && lof_active)) return 2;
  return 3;
}

}  // namespace diffuse::detail
