// SPDX-License-Identifier: Apache-2.0
// Align Your Steps schedule optimisation (Sabour, Fidler, Kreis, ICML 2024):
// the optimiser optimise_schedule() and the correction "schedule_optimisation" that replaces the
// sampler's grid by an optimised noise-level list (log-linearly interpolated to the run's step
// count, ComfyUI's rule).
//
// Objective (EDM/VE view, sigma(t) = t, x_t = x0 + t n, ascending t_0 = sigma_min < ... < t_n =
// sigma_max): the KL upper bound between the true reverse SDE and its first-order discretisation
// (the denoiser frozen at D(x_{t_i}, t_i) on [t_{i-1}, t_i]),
//   KLUB = sum_i K(t_{i-1}, t_i),  K(a, b) = int_a^b (1/t^3) E||D(x_t, t) - D(x_b, b)||^2 dt,
// with x_b = x_t + sqrt(b^2 - t^2) n' (the forward coupling).
// Closed form for Gaussian data N(mu, s^2 I) in d dimensions (E||dD||^2 = d s^4 (1/(t^2+s^2) -
// 1/(b^2+s^2)); the integral is elementary):
//   K(a, b) = (d/2) (r - 1 - log r),  r = (1 + s^2/a^2) / (1 + s^2/b^2),
// so K depends only on g(b) - g(a) with g(t) = log(t / sqrt(t^2 + s^2)) and the exact KLUB optimum
// is uniform in g: gaussian_klub_optimal_sigmas(). NOTE: the "KL-optimal" tan/atan schedule of
// A1111/ComfyUI is NOT the optimum of this KLUB (SD range, n = 10, s = 1: KLUB
// 16.7 for tan/atan against 1.60 at the optimum); it is kept as kl_optimal_sigmas() for comparison.
//
// Estimator (deterministic given the seed; common random numbers, so the objective is smooth in
// the schedule and a 1-D search works): the data batch x0 [N, ...] and, per quadrature node j,
// fixed noises n_j, n'_j [N, ...]. Per interval [a, b], M nodes at the midpoints u_j = (j + 1/2)/M:
//   estimator "importance" (default): t_j = F^{-1}(u_j), F the CDF of pi(t) ∝ (1/t^3) beta(t),
//     beta(t) = 1/(t^2+s^2) - 1/(b^2+s^2) (the Gaussian-data integrand, s = sigma_data), and
//     K ≈ Z (1/M) sum_j mean_N ||D(x_tj, t_j) - D(x_b, b)||^2 / (s^4 beta(t_j)), Z the closed form
//     per dimension; exact in expectation for Gaussian data, low variance near it.
//   estimator "log_t": stratified quadrature in log t, t_j = a (b/a)^{u_j},
//     K ≈ (log(b/a)/M) sum_j mean_N ||dD||^2 / t_j^2.
// Optimisation (paper App. B.1): initialise (Karras rho = 7 by
// default), then sweeps over the interior points; each point moves to the minimiser of
// K(t_{i-1}, t) + K(t, t_{i+1}) over (t_{i-1}, t_{i+1}) by golden-section search in log t (kept
// only if it lowers the objective); stop after max_sweeps or when a sweep lowers the KLUB by less
// than tol (relative; the authors stop early on purpose); sweeps alternate direction. Hierarchical
// refinement (refine = 1, 2): insert the geometric midpoint of every interval and optimise only the
// new points (each depends only on its two fixed neighbours, so one pass is exact): 10 -> 20 -> 40
// steps. For other step counts the authors recommend log-linear interpolation of the optimised
// 10-step list: ScheduleOptimisationResult::sigmas_for_steps.
// Progress: ScheduleOptimisationOptions::on_iteration (optional) is called after every point move,
// at the end of every sweep and of every level, with the current KLUB; it only observes, so the
// result is the same with and without it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/final_point.h>
#include <diffuse/schedules/spacing/align_your_steps.h>

namespace diffuse {

/// The denoiser in the VE view: x_ve [B, ...] (x_ve = x0 + sigma n) and sigma_ve [B] (float64, CPU;
/// one noise level per sample) -> the x0 estimate [B, ...].
using VeDenoiserFn = std::function<Tensor(const Tensor& x_ve, const Tensor& sigma_ve)>;

/// A VE denoiser from a function of one noise level (called once per run of equal sigmas).
VeDenoiserFn ve_denoiser(std::function<Tensor(const Tensor& x_ve, double sigma_ve)> f);

/// The VE denoiser of a Denoiser on `schedule`: D(x_ve, sigma) = x0 of the network at the point of
/// noise level sigma (schedule.at_sigma_ve), fed x = alpha x_ve. `cond` is passed to every call
/// unchanged (undefined = unconditional).
VeDenoiserFn ve_denoiser(const Denoiser& denoiser, std::shared_ptr<const NoiseSchedule> schedule,
                         Conditioning cond = {});

/// What optimise_schedule reports to ScheduleOptimisationOptions::on_iteration.
struct AysIteration {
  enum class Kind {
    kInitial,  ///< the initial schedule has been evaluated (sweep = -1, point = -1)
    kPoint,    ///< one interior point has been optimised (moved, or kept if no better)
    kSweep,    ///< a sweep over the base level's interior points has ended (point = -1)
    kLevel,    ///< a level (the base, or a refinement) is final (sweep = -1, point = -1)
  };
  Kind kind = Kind::kInitial;
  /// 0 = the base (num_steps) schedule, l = the l-th refinement (num_steps * 2^l steps).
  int64_t level = 0;
  /// 0-based sweep of the base level (-1 outside sweeps; refinements have one pass, sweep 0).
  int64_t sweep = -1;
  /// Sweeps at most (ScheduleOptimisationOptions::max_sweeps; 1 for a refinement pass).
  int64_t max_sweeps = 0;
  /// 0-based position of this point within its sweep/pass (-1 if kind != kPoint), of `points`.
  int64_t point = -1;
  int64_t points = 0;
  /// The moved point's index in the ascending schedule t_0 = sigma_min .. t_n (-1 if none).
  int64_t index = -1;
  /// The point's noise level after the move (0 if kind != kPoint).
  double sigma = 0;
  /// KLUB estimate of the whole current schedule of this level, and at the start of the sweep
  /// (kPoint, kSweep: the sweep's; otherwise the same as klub).
  double klub = 0, klub_start = 0;
  /// Seconds since optimise_schedule started.
  double elapsed_s = 0;
};

/// The optimiser's initial schedule: Karras et al.'s rho-spacing or uniform in log sigma.
enum class ScheduleInit { karras, exponential };
/// Names of ScheduleInit ("karras", "exponential"), for ConfigReader::get_enum and to_string.
const std::vector<std::pair<std::string, ScheduleInit>>& schedule_init_names();
/// The ScheduleInit called `name`; anything else is a ConfigError naming it.
ScheduleInit parse_schedule_init(const std::string& name);
std::string to_string(ScheduleInit init);

/// The KLUB's quadrature per interval (see the file comment): "importance" or "log_t".
enum class KlubQuadrature { importance, log_t };
/// Names of KlubQuadrature ("importance", "log_t").
const std::vector<std::pair<std::string, KlubQuadrature>>& klub_quadrature_names();
/// The KlubQuadrature called `name`; anything else is a ConfigError naming it.
KlubQuadrature parse_klub_quadrature(const std::string& name);
std::string to_string(KlubQuadrature quadrature);

struct ScheduleOptimisationOptions {
  /// Steps of the optimised base schedule (the authors: 10). Default 10; >= 2.
  TORCH_ARG(int64_t, num_steps) = 10;
  /// Noise range in sigma_ve (required: 0 < sigma_min < sigma_max < inf).
  TORCH_ARG(double, sigma_min) = 0.0;
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Initial schedule: karras (default, with rho) or exponential (uniform log sigma).
  TORCH_ARG(ScheduleInit, init) = ScheduleInit::karras;
  TORCH_ARG(double, rho) = 7.0;
  /// KLUB quadrature: importance (default) or log_t (see the file comment).
  TORCH_ARG(KlubQuadrature, estimator) = KlubQuadrature::importance;
  /// Quadrature nodes per interval. Default 8; >= 1.
  TORCH_ARG(int64_t, nodes) = 8;
  /// Data scale s of the importance density; 0 (default): the pooled std of x0.
  TORCH_ARG(double, sigma_data) = 0.0;
  /// Coordinate sweeps at most. Default 8; >= 0 (0 = only evaluate the initial schedule).
  TORCH_ARG(int64_t, max_sweeps) = 8;
  /// Early stop when a sweep lowers the KLUB by less than tol * KLUB. Default 1e-3; >= 0.
  TORCH_ARG(double, tol) = 1e-3;
  /// Golden-section iterations per point (bracket shrinks by 0.618 each). Default 16; >= 1.
  TORCH_ARG(int64_t, search_iters) = 16;
  /// Hierarchical refinements: 0 (default), 1 (10 -> 20), 2 (-> 40), ...; each doubles the steps.
  TORCH_ARG(int64_t, refine) = 0;
  /// Seed of the estimator's noise. Default 0.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Called after every point move, sweep and level (see AysIteration), e.g. to log progress. It
  /// only observes: the result is the same with or without it. Default none.
  TORCH_ARG(std::function<void(const AysIteration&)>, on_iteration) = nullptr;
};

/// KLUB estimator for one denoiser and one data batch (fixed noises: common random numbers).
class KlubEstimator {
 public:
  KlubEstimator(VeDenoiserFn denoiser, const Tensor& x0, const ScheduleOptimisationOptions& o);

  double sigma_data() const { return sigma_data_; }
  int64_t dim() const { return dim_; }

  /// K(a, b), 0 < a < b.
  double interval(double a, double b) const;

  /// KLUB of a schedule (any order; values > 0, distinct).
  double total(std::vector<double> sigmas) const;

  /// Closed form of K(a, b) for Gaussian data N(mu, s^2 I) in d dimensions with the exact denoiser.
  static double gaussian_interval(double a, double b, double s, int64_t d);

 private:
  /// t in (a, b) with G(t) = u G(b), G(t) = int_a^t (1/tau^3) beta(tau) dtau (bisection in log t).
  double inverse_cdf(double a, double b, double u) const;
  /// int_a^t (1/tau^3)(1/(tau^2+s^2) - 1/(b^2+s^2)) s^4 dtau.
  static double gaussian_partial(double a, double t, double b, double s);

  VeDenoiserFn denoiser_;
  ScheduleOptimisationOptions options_;
  Tensor x0_, noise_, noise_b_;
  int64_t n_ = 0, dim_ = 0;
  double sigma_data_ = 1.0;
};

/// What optimise_schedule found.
struct ScheduleOptimisationResult {
  /// The optimised schedule at the finest level, sigma_max .. sigma_min (num_steps * 2^refine + 1
  /// values, descending, all > 0).
  std::vector<double> sigmas;
  /// One list per level: [0] the num_steps schedule, [1] its refinement, ...
  std::vector<std::vector<double>> levels;
  /// KLUB estimate of the initial schedule, then after each sweep of the base level.
  std::vector<double> klub_history;
  /// KLUB estimate of each level's final schedule.
  std::vector<double> klub;
  int64_t sweeps = 0;

  /// A grid list for `steps` steps in ComfyUI's convention (last value 0): the optimised level
  /// with exactly steps + 1 points if there is one, else the log-linear interpolation of the base
  /// (num_steps) schedule, as the authors recommend.
  std::vector<double> sigmas_for_steps(int64_t steps) const;
};

/// Minimises the KLUB of a schedule between sigma_min and sigma_max for `denoiser` on the data
/// batch `x0` (see the file comment). Deterministic for a given seed.
ScheduleOptimisationResult optimise_schedule(const VeDenoiserFn& denoiser, const Tensor& x0,
                                             const ScheduleOptimisationOptions& o);

/// The exact KLUB optimum for Gaussian data N(mu, s^2 I): n + 1 values from sigma_max down to
/// sigma_min, uniform in g(sigma) = log(sigma / sqrt(sigma^2 + s^2)).
std::vector<double> gaussian_klub_optimal_sigmas(double sigma_min, double sigma_max, int64_t n,
                                                 double s = 1.0);

/// The "KL-optimal" schedule of A1111/ComfyUI: sigma_i = tan((1 - i/n)
/// atan(sigma_max)
/// + (i/n) atan(sigma_min)), i = 0..n.
std::vector<double> kl_optimal_sigmas(double sigma_min, double sigma_max, int64_t n);

struct ScheduleOptimisationCorrectionOptions {
  /// The optimised noise levels sigma_ve (descending, > 0; e.g. optimise_schedule(...).sigmas).
  /// Empty (default): the identity (the grid is left alone).
  TORCH_ARG(std::vector<double>, sigmas) = {};
  /// kZero ("zero", default, ComfyUI): the list is interpolated to num_steps + 1 values and the
  /// last one replaced by the clean point; kMin ("min"): the run ends at the interpolated
  /// sigma_min.
  TORCH_ARG(FinalPoint, final) = FinalPoint::kZero;
  /// Round discrete model times. Default false.
  TORCH_ARG(bool, round_t) = false;
};

/// Replaces the sampler's grid (any spacing, any sampler) by an optimised schedule with the same
/// number of steps.
class ScheduleOptimisation final : public Correction {
 public:
  explicit ScheduleOptimisation(ScheduleOptimisationCorrectionOptions o = {});
  static std::unique_ptr<Correction> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "schedule_optimisation"; }
  std::unique_ptr<Correction> clone() const override;

  void on_grid(TimeGrid& grid, const NoiseSchedule& s) override;

  ScheduleOptimisationCorrectionOptions options;
};

}  // namespace diffuse
