// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the spacings (and the schedule_optimisation correction): numpy-exact linspace,
// grids from timesteps or from sigma_ve lists. Used by .cpp files only; implementation:
// schedules/detail/grid.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>

namespace diffuse::detail {

/// numpy.linspace(start, stop, num): y[i] = start + i * step, y[num-1] = stop exactly.
std::vector<double> np_linspace(double start, double stop, int64_t num);

/// numpy.round: half to even (the default rounding mode of nearbyint).
double np_round(double v);

/// num_steps must be in [1, kMaxNumSteps] (a huge count fails here, before any allocation).
void check_steps(const std::string& who, int64_t n);

void check_discrete(const std::string& who, const NoiseSchedule& s);

/// Grid visiting model times `ts` (noisiest first), then the final point.
TimeGrid grid_from_times(const NoiseSchedule& s, const std::vector<double>& ts,
                         FinalPoint final_kind);

/// Grid visiting noise levels `sigmas` (sigma_ve, noisiest first); t from the schedule's inverse,
/// optionally rounded or truncated to an integer (diffusers' DPM-Solver rounds its Karras / lu
/// times and casts every time to int64, which truncates the exponential and beta ones; Euler keeps
/// them fractional). The point keeps the exact sigma: the solver steps with it, the network is fed
/// the integer. Only discrete schedules' times are rounded or truncated: a continuous model time
/// (VP t in [t_min, 1], EDM t = sigma) made an integer would feed the network a different noise
/// level from the grid point's.
TimeGrid grid_from_sigmas(const NoiseSchedule& s, const std::vector<double>& sigmas, bool round_t,
                          bool trunc_t = false);

/// The point at model time t of a discrete schedule with k-diffusion's t_to_sigma (A1111 /
/// ComfyUI): log sigma_ve interpolated linearly between the table's neighbours floor(t), ceil(t)
/// (diffusers interpolates sigma_ve itself, NoiseSchedule::at); an integer t, or a neighbour at
/// alpha = 0, takes the schedule's own point. round_t feeds the nearest integer time instead
/// (ComfyUI's discrete model sampling, whose timestep() is the nearest table entry in log sigma).
TimePoint log_sigma_point(const NoiseSchedule& s, double t, bool round_t);

/// diffusers' lambda_min_clipped (DPM-Solver): the number of training timesteps kept, T minus the
/// noisiest ones whose half log-SNR is below lambda_min. T when lambda_min is -inf (off). Errors:
/// a continuous schedule, NaN, or a threshold that clips every timestep.
int64_t kept_train_steps(const NoiseSchedule& s, double lambda_min, const char* who);

/// The check of spacings with both options: round_t and trunc_t exclude each other.
void check_time_rounding(const char* who, bool round_t, bool trunc_t);

/// The checks every sigma spacing (karras, exponential, beta) makes of its options: sigma_min and
/// sigma_max >= 0 (0: the schedule's own), round_t and trunc_t not both.
void check_sigma_spacing_options(const char* who, double sigma_min, double sigma_max, bool round_t,
                                 bool trunc_t);

/// A sigma spacing's grid: the points of `sigmas` (grid_from_sigmas), then the final point, the
/// clean one or, for final=min, the last point again (a zero-length last step, as diffusers'
/// final_sigmas_type="sigma_min" after its Karras / exponential / beta sigmas).
TimeGrid sigma_ramp_grid(const NoiseSchedule& s, const std::vector<double>& sigmas, bool round_t,
                         bool trunc_t, FinalPoint final_kind);

/// The sigma_ve range of the karras / exponential spacings: 0 (unset) takes the schedule's sigma at
/// t_min / t_max; then checks 0 < lo < hi < inf.
void sigma_range(const NoiseSchedule& s, double& lo, double& hi, const char* who);

/// The values of the sigma spacings' `range` option: where their default sigma_min / sigma_max
/// come from.
const std::vector<std::string>& sigma_range_sources();

/// Checks a sigma spacing's range / range_steps_offset (errors name `who` and the value).
void check_sigma_range_source(const char* who, const std::string& range, int64_t steps_offset);

/// sigma_range with the range's source: for "schedule", the schedule's t_min / t_max; for
/// "linspace", "leading" (with steps_offset) or "trailing", that spacing's grid at the same step
/// count n: sigma_max at its first point, sigma_min at its last point before the final one
/// (diffusers' Euler, Heun, LMS and KDPM2 schedulers interpolate their sigmas at their own
/// timesteps before the Karras / exponential / beta re-spacing). Explicit values (> 0) win.
void sigma_range_from(const NoiseSchedule& s, const std::string& range, int64_t steps_offset,
                      int64_t n, double& lo, double& hi, const char* who);

/// Karras et al. 2022's rho-ramp: n values (max^(1/rho) + i/(n-1) (min^(1/rho) - max^(1/rho)))^rho
/// from hi down to lo (karras spacing on sigma_ve; flow_match's Karras re-spacing on flow sigma).
std::vector<double> karras_ramp(double lo, double hi, double rho, int64_t n);

/// n values exp(linspace(log hi, log lo, n)): uniform in log sigma (exponential spacing on
/// sigma_ve; flow_match's exponential re-spacing on flow sigma).
std::vector<double> exponential_ramp(double lo, double hi, int64_t n);

/// The regularised incomplete beta function I_x(a, b) = P(X <= x) for X ~ Beta(a, b); a, b > 0,
/// x in [0, 1]. Its continued fraction (modified Lentz), about 1e-15 relative.
double regularized_incomplete_beta(double x, double a, double b);

/// The quantile of Beta(a, b): the x with I_x(a, b) = p (scipy.stats.beta.ppf), p in [0, 1], by
/// bisection down to adjacent doubles.
double beta_ppf(double p, double a, double b);

/// Beta sampling (Lee et al. 2024, "Beta Sampling is All You Need"; diffusers' use_beta_sigmas):
/// n values lo + beta_ppf(1 - i / (n - 1); a, b) (hi - lo), i = 0..n-1, from hi down to lo.
std::vector<double> beta_ramp(double lo, double hi, double a, double b, int64_t n);

inline std::string bool_str(bool b) { return b ? "true" : "false"; }

}  // namespace diffuse::detail
