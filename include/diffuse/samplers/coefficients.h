// SPDX-License-Identifier: Apache-2.0
// Coefficient helpers for sampler authors: the k-diffusion Euler / ancestral step written on the
// VP-native state, and the exponential-integrator (DPM-Solver++) coefficients in forms that stay
// finite at the grid's end points. Our samplers (euler, euler_ancestral, heun, dpm_solver_pp*) use
// exactly these.
//
// k-diffusion works on x_ve = x / alpha with noise level sigma_ve = sigma / alpha; its Euler step
// x_ve' = x_ve + d (sigma_ve' - sigma_ve), with d = (x_ve - x0) / sigma_ve, becomes after
// multiplying by alpha':
//   x' = (alpha' sigma_ve' / sigma) x + alpha' (1 - sigma_ve' / sigma_ve) x0,
// where alpha * sigma_ve = sigma was used on the first coefficient. The ratio sigma_ve'/sigma_ve is
// 0 when alpha = 0 (sigma_ve = inf), so the step stays finite at zero terminal SNR, and it lands
// exactly on x0 when sigma' = 0.
//
// DPM-Solver++ notation: lambda = log(alpha / sigma), h = lambda_next -
// lambda_now >= 0. A step onto the clean point has h = +inf (e^{-h} = 0), a step from alpha = 0 has
// h = +inf too, and a zero-length final step (diffusers' final_sigmas_type="sigma_min" after karras
// / lu sigmas, which already end on sigma_min) has h = 0. The higher-order terms are written with
// the divided differences E = (m_a - m_b) / (lambda_a - lambda_b) of the data predictions, so no
// coefficient divides by h: at h = 0 every update term vanishes and x is returned unchanged
// (diffusers gets 0/0 = NaN there for solver_type=heun and order 3), and a previous step of
// infinite length simply contributes E = 0 (the lower-order update).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <diffuse/schedule.h>

namespace diffuse {

/// sigma_ve' / sigma_ve, with inf / inf excluded: 0 when the current point has alpha = 0.
inline double ve_ratio(double sigma_ve_next, double sigma_ve_now) {
  return std::isinf(sigma_ve_now) ? 0.0 : sigma_ve_next / sigma_ve_now;
}

/// Coefficients of x' = cx * x + cx0 * x0 (see euler_coefficients).
struct EulerCoefficients {
  double cx = 0, cx0 = 0;
};

/// (cx, cx0) of a k-diffusion Euler step from `now` (noise level sigma_ve of `now`) to noise level
/// sigma_ve_to, then scaled by alpha_to. `now.sigma` must be > 0.
EulerCoefficients euler_coefficients(const TimePoint& now, double sigma_ve_to, double alpha_to);

/// The forward process from `from` to the noisier point `to`: q(x_to | x_from) = N(scale x_from,
/// std^2 I) with scale = alpha_to / alpha_from and std^2 = sigma_to^2 - scale^2 sigma_from^2
/// (clamped at 0 against round-off). Needs alpha_from > 0. TCD's re-noising, Restart's restarts
/// and RePaint's resampling jumps take it.
struct ForwardTransition {
  double scale = 1, std = 0;
};
ForwardTransition forward_transition(const TimePoint& from, const TimePoint& to);

/// The two parts of an ancestral step (see ancestral_split).
struct AncestralSplit {
  double sigma_down = 0, sigma_up = 0;
};

/// k-diffusion get_ancestral_step (VE units): the deterministic part steps to sigma_down, then
/// noise of standard deviation sigma_up is added, so that sigma_down^2 + sigma_up^2 = sigma_next^2.
///   sigma_up = min(sigma_next, eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))
/// eta = 0 gives sigma_up = 0 (plain Euler); sigma = inf is allowed (ratio 0).
AncestralSplit ancestral_split(double sigma_ve, double sigma_ve_next, double eta);

/// The rule an ancestral step splits its noise level by (euler_ancestral's `split`).
enum class AncestralRule {
  automatic,  ///< "auto": flow on rectified-flow schedules (NoiseSchedule::rectified_flow), else ve
  ve,         ///< "ve": k-diffusion's get_ancestral_step in sigma_ve (A1111 / diffusers "Euler a")
  flow,       ///< "flow": ComfyUI's rule for rectified-flow models (sample_euler_ancestral_RF)
  renoise     ///< "renoise": x' = alpha' x0 + sigma' z (diffusers' FlowMatchEuler
              ///< stochastic_sampling)
};
/// Names of AncestralRule ("auto", "ve", "flow", "renoise").
const EnumNames<AncestralRule>& ancestral_rule_names();

/// `automatic` resolved for `schedule` (null: ve); the other rules are returned as they are.
AncestralRule resolve_ancestral_rule(AncestralRule rule, const NoiseSchedule* schedule);

/// One ancestral step, x' = cx * x + cx0 * x0 + noise_std * z with z ~ N(0, I). `now.sigma` > 0;
/// `rule` must be resolved (not automatic). The rules, with n = alpha + sigma, tau = sigma / n
/// (on the flow schedule n = 1 and tau = sigma; on any schedule y = x / n is a rectified flow in
/// tau):
///   ve:      ancestral_split in sigma_ve, the Euler step to sigma_down scaled by alpha', and
///            noise_std = s_noise sigma_up alpha'.
///   flow:    tau_down = tau' (1 + (tau' / tau - 1) eta), floored at 0 (full renoise: ComfyUI's
///            formula turns negative for eta > tau / (tau - tau')); the flow step to tau_down,
///            y_down = (tau_down / tau) y + (1 - tau_down / tau) x0, then
///            y' = r y_down + s_noise sqrt(tau'^2 - tau_down^2 r^2) z with r = (1 - tau') /
///            (1 - tau_down), and x' = n' y'. eta = 1 gives tau_down = tau'^2 / tau.
///   renoise: x' = alpha' x0 + s_noise sigma' z (eta is not used).
/// All three land on alpha' x0 with no noise when `next` is clean, and are the deterministic
/// Euler / DDIM step for eta = 0 (ve, flow).
EulerCoefficients ancestral_coefficients(AncestralRule rule, const TimePoint& now,
                                         const TimePoint& next, double eta, double s_noise,
                                         double* noise_std);

/// The Lagrange basis polynomial of node j on `nodes`, in powers of v = (variable - origin):
/// coefficients a_m of v^m (m = 0 .. nodes.size() - 1) of prod_{m != j} (v - (nodes[m] - origin))
/// / prod_{m != j} (nodes[j] - nodes[m]). LMS integrates it in sigma, DEIS in log sigma.
std::vector<double> lagrange_basis(const std::vector<double>& nodes, size_t j, double origin);

/// phi_1(h) = 1 - e^{-h}, accurate for small h; 1 at h = +inf.
inline double dpm_phi1(double h) { return -std::expm1(-h); }

/// e^{-h} - 1 + h = h^2/2 - h^3/6 + ..., the numerator of the second-order coefficients; finite
/// only for finite h.
inline double dpm_expm1_plus(double h) { return std::expm1(-h) + h; }

/// 1 / d for a lambda difference d > 0, and 0 when d is infinite (a step from alpha = 0).
inline double dpm_inv_step(double d) { return std::isinf(d) ? 0.0 : 1.0 / d; }

/// The second-order update of the DPM-Solver++ samplers (diffusers' solver_type).
enum class DpmSolverType {
  kMidpoint,  ///< "midpoint" (diffusers' default)
  kHeun       ///< "heun"
};

/// Config names of DpmSolverType ("midpoint", "heun"), for ConfigReader::get_enum / enum_name.
const std::vector<std::pair<std::string, DpmSolverType>>& dpm_solver_type_names();

/// The order diffusers' DPMSolverMultistepScheduler.step uses at this step:
///  * warm-up: the first step is first order, the second at most second order (`available` is the
///    number of earlier data predictions of this run, i.e. History::size());
///  * the last step is first order when euler_at_final, or when it lands on sigma = 0
///    (final_sigmas_type="zero": lambda = +inf), or when lower_order_final and num_steps < below;
///  * the second-to-last step is at most second order when lower_order_final and num_steps < below
///    (diffusers hard-codes below = 15: "len(self.timesteps) < 15").
/// `index` / `num_steps` are the position in the whole grid (StepContext), so a run that starts in
/// the middle of a grid (img2img) sees the same rule as diffusers' step_index.
int64_t dpm_multistep_order(int64_t order, bool lower_order_final, int64_t below,
                            bool euler_at_final, int64_t index, int64_t num_steps,
                            bool next_is_clean, size_t available);

}  // namespace diffuse
