// SPDX-License-Identifier: Apache-2.0
// The forward process and the time grid.
//
// Notation, used in every file of the library:
//   x_t    = alpha_t * x0 + sigma_t * eps          (VP-native pair; VP schedules have alpha^2 +
//   sigma^2 = 1) lambda = log(alpha / sigma)                    (half log-SNR; +inf at sigma = 0,
//   -inf at alpha = 0) sigma_ve = sigma / alpha = exp(-lambda)        (k-diffusion / EDM "sigma";
//   x_ve = x_t / alpha) t      = what the network is fed: the training index 0..T-1 for discrete
//   schedules,
//            t in [t_min, 1] for continuous VP, sigma_ve for EDM/VE.
//   discrete DDPM: alpha = sqrt(alphas_cumprod[t]), sigma = sqrt(1 - alphas_cumprod[t]).
// A TimeGrid lists the points a sampler visits, noisiest first, ending at the final point
// (usually sigma = 0). It lives in host memory as doubles: no device synchronisation per step.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/tensor.h>

namespace diffuse {

/// One point of x_t = alpha * x0 + sigma * eps.
struct TimePoint {
  double t = 0.0;      ///< model time, exactly what the network is fed
  double alpha = 1.0;  ///< signal scale
  double sigma = 0.0;  ///< noise scale

  /// lambda = log(alpha / sigma); +inf when sigma == 0, -inf when alpha == 0.
  double log_snr() const {
    if (sigma == 0.0) return std::numeric_limits<double>::infinity();
    if (alpha == 0.0) return -std::numeric_limits<double>::infinity();
    return std::log(alpha) - std::log(sigma);
  }
  /// sigma / alpha (k-diffusion sigma); +inf when alpha == 0.
  double sigma_ve() const {
    return alpha == 0.0 ? std::numeric_limits<double>::infinity() : sigma / alpha;
  }
  bool is_clean() const { return sigma == 0.0; }
  bool operator==(const TimePoint& o) const {
    return t == o.t && alpha == o.alpha && sigma == o.sigma;
  }
};

using TimeGrid = std::vector<TimePoint>;

/// The forward process. Implementations live in schedules/ and register under their file stem.
class NoiseSchedule {
 public:
  static constexpr const char* kKindName = "schedule";
  virtual ~NoiseSchedule() = default;

  /// The point at model time t (t in [t_min(), t_max()]).
  virtual TimePoint at(double t) const = 0;
  /// The point with half log-SNR lambda; its t is the model time with that noise level
  /// (interpolated for discrete schedules), alpha/sigma are exact for lambda.
  virtual TimePoint at_log_snr(double lambda) const = 0;
  /// The clean end point (sigma = 0), which samplers step onto last and never feed to the network.
  virtual TimePoint clean_point() const = 0;

  virtual double t_min() const = 0;
  virtual double t_max() const = 0;
  /// Number of training timesteps T for discrete schedules (t in 0..T-1), 0 for continuous ones.
  virtual int64_t num_train_timesteps() const { return 0; }
  /// True for schedules whose alpha and sigma satisfy alpha^2 + sigma^2 = 1.
  virtual bool variance_preserving() const { return true; }
  /// True for rectified-flow schedules: alpha + sigma = 1 at every t (x = (1 - sigma) x0 +
  /// sigma eps). Samplers with a flow form (heun space=auto, euler_ancestral split=auto) take it
  /// there, and sample() defaults to the flow_match spacing.
  virtual bool rectified_flow() const { return false; }

  /// Batched alpha(t), sigma(t) on t's device and dtype (training).
  virtual Tensor alpha(const Tensor& t) const = 0;
  virtual Tensor sigma(const Tensor& t) const = 0;

  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;

  double t_from_log_snr(double lambda) const { return at_log_snr(lambda).t; }
  TimePoint at_sigma_ve(double sigma_ve) const {
    return at_log_snr(sigma_ve == 0.0 ? std::numeric_limits<double>::infinity()
                                      : -std::log(sigma_ve));
  }
};

/// The most steps a spacing builds a grid for: 1e6 (a 24 MB grid). Step counts above it are
/// typos or overflowed arithmetic; spacings reject them at once instead of allocating the grid.
inline constexpr int64_t kMaxNumSteps = 1000000;

/// Chooses the points a sampler visits. Implementations live in schedules/spacing/.
class TimestepSpacing {
 public:
  static constexpr const char* kKindName = "spacing";
  virtual ~TimestepSpacing() = default;
  /// num_steps + 1 points, noisiest first; the last one is the point the final step lands on.
  /// num_steps in [1, kMaxNumSteps].
  virtual TimeGrid grid(const NoiseSchedule& s, int64_t num_steps) const = 0;
  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;
};

/// Checks the shape of a grid: at least 2 points, finite alpha/sigma >= 0, noise level strictly
/// decreasing (lambda strictly increasing; the last step may have zero length). Errors name the
/// offending index and value.
void validate_grid(const TimeGrid& grid);

}  // namespace diffuse
