// SPDX-License-Identifier: Apache-2.0
// Discrete DDPM forward process (Ho et al. 2020): T betas, alphas_cumprod = prod(1 - beta),
// alpha_t = sqrt(alphas_cumprod[t]), sigma_t = sqrt(1 - alphas_cumprod[t]); the network is fed the
// training index t in 0..T-1. Beta schedules: linear, scaled_linear (Stable Diffusion),
// squaredcos_cap_v2 (Nichol & Dhariwal 2021), or trained_betas; optional zero-terminal-SNR
// rescale (Lin et al. 2024).
// Checked against: diffusers DDIMScheduler/EulerDiscreteScheduler __init__, _sigma_to_t (58eb52c).
// Fractional t interpolates sigma_ve linearly in t (diffusers' Euler convention); the inverse
// (at_log_snr) interpolates t linearly in log sigma_ve (diffusers' _sigma_to_t).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/schedule.h>
// BetaSchedule (<diffuse/schedules/beta_schedule.h>) and kMaxTrainTimesteps (declarations only).
#include <diffuse/schedules/detail/betas.h>

namespace diffuse {

/// The dtype a discrete schedule computes its tables in (config key "precision").
enum class TablePrecision { float64, float32 };
/// Names of TablePrecision ("float64", "float32").
const std::vector<std::pair<std::string, TablePrecision>>& table_precision_names();

struct DiscreteScheduleOptions {
  /// T, the number of training timesteps, in [2, 1e6] (detail::kMaxTrainTimesteps). Default 1000.
  TORCH_ARG(int64_t, num_train_timesteps) = 1000;
  /// First and last beta for linear / scaled_linear. Defaults 1e-4, 0.02 (DDPM).
  TORCH_ARG(double, beta_start) = 1e-4;
  TORCH_ARG(double, beta_end) = 0.02;
  /// linear | scaled_linear | squaredcos_cap_v2. Default linear.
  TORCH_ARG(BetaSchedule, beta_schedule) = BetaSchedule::linear;
  /// Explicit betas (length T, each in (0, 1]); overrides beta_schedule when non-empty.
  TORCH_ARG(std::vector<double>, trained_betas) = {};
  /// Rescale to zero terminal SNR (Lin et al. 2024). Default false.
  TORCH_ARG(bool, rescale_betas_zero_snr) = false;
  /// When > 0 and the last alphas_cumprod is 0, replace it by this value so sigma_ve stays finite
  /// (diffusers' Euler and DPM-Solver use 2^-24). Default 0: keep alphas_cumprod[T-1] = 0.
  TORCH_ARG(double, terminal_alphas_cumprod) = 0.0;
  /// float64 computes the tables in double; float32 reproduces diffusers' float32 tables bit for
  /// bit (then stores them as double). Default float64.
  TORCH_ARG(TablePrecision, precision) = TablePrecision::float64;
};

class DiscreteSchedule final : public NoiseSchedule {
 public:
  explicit DiscreteSchedule(DiscreteScheduleOptions o = {}) : options(std::move(o)) { build(); }

  static std::unique_ptr<NoiseSchedule> from_config(const Config& c);

  Config to_config() const override;
  std::string name() const override { return "discrete"; }

  TimePoint at(double t) const override;

  TimePoint at_log_snr(double lambda) const override;

  TimePoint clean_point() const override { return TimePoint{-1.0, 1.0, 0.0}; }
  double t_min() const override { return 0.0; }
  double t_max() const override { return static_cast<double>(ac_.size() - 1); }
  int64_t num_train_timesteps() const override { return static_cast<int64_t>(ac_.size()); }

  Tensor alpha(const Tensor& t) const override { return lookup(alpha_table_, t); }
  Tensor sigma(const Tensor& t) const override { return lookup(sigma_table_, t); }

  const std::vector<double>& alphas_cumprod() const { return ac_; }
  const std::vector<double>& betas() const { return betas_; }
  /// sigma_ve per training index (ascending in t); +inf where alphas_cumprod is 0.
  const std::vector<double>& sigmas_ve() const { return sigmas_; }

  /// diffusers' _sigma_to_t: t linear in log sigma_ve between neighbouring training indices,
  /// clamped to [0, T-1].
  double t_from_sigma_ve(double sigma) const;

  DiscreteScheduleOptions options;

 private:
  static TimePoint from_sigma_ve(double t, double s);

  TimePoint point_at_index(int64_t i, double t) const;

  void build();

  Tensor lookup(const Tensor& table, const Tensor& t) const;

  std::vector<double> betas_, ac_, sigmas_, log_sigmas_;
  at::Tensor alpha_table_, sigma_table_;
};

}  // namespace diffuse
