// SPDX-License-Identifier: Apache-2.0
// Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes"): Heun
// steps of the probability-flow ODE along the grid, and, once the run reaches the grid point
// nearest the restart interval's lower end sigma_min, `restart_times` restarts: forward noise
// takes the state back up to the grid point nearest sigma_max,
//   x_ve <- x_ve + s_noise sqrt(sigma_hi^2 - sigma_lo^2) z     (the forward process, exact),
// and `restart_steps` Heun steps on a Karras (rho) sub-grid between the two points bring it down
// again. The added noise contracts the accumulated ODE error (the paper's Theorem 3), at
// 2 restart_steps extra model calls per restart.
// This is the form A1111 ships ("Restart", modules/sd_samplers_extra.py, restart_sampler, run with
// an explicit restart_list {sigma_min: [restart_steps + 1, restart_times, sigma_max]}), with these
// differences, both deliberate:
//   - the grid is the main grid and is used as given. A1111 instead counts its `steps` as the
//     total: with no restart_list, N >= 20 steps become a Karras grid of N - 9 steps plus one
//     9-step restart on [0.1, 2] (N >= 36: N - 2 floor(N/4) steps plus two floor(N/4)-step
//     restarts), and below 20 steps no restart at all. A1111's "Restart" at N steps is therefore
//     `restart` with those options on the `karras` spacing at the main-grid step count (tested).
//   - the restart sub-grid starts and ends exactly on the two grid points. A1111 recomputes them
//     through get_sigmas_karras, whose round-off can leave the last point a hair below the grid
//     point, and then draws a spurious noise tensor (of size sqrt(2 sigma delta)) when the main
//     steps resume.
// One restart interval per run (the paper's ImageNet settings chain several; run the sampler with
// a custom grid for those). The step onto sigma = 0 is an Euler step, as Heun's. space as
// HeunOptions: the flow form on rectified-flow schedules (pure noise at the start), else sigma_ve.
// Checked against: A1111 598aef8 restart_sampler on k-diffusion 4601bf0 (tests/samplers/
// restart_test.cpp, tests/reference/kdiffusion.py restart).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>
#include <diffuse/samplers/heun.h>

namespace diffuse {

struct RestartOptions {
  /// The restart interval in sigma_ve: the restarts start after the step onto the grid point
  /// nearest restart_min and jump to the grid point nearest restart_max (nearest by |sigma_ve -
  /// value|, the first on ties, as A1111). Defaults 0.1 and 2 (A1111's). 0 <= restart_min <
  /// restart_max, finite. When the point nearest restart_max is not noisier than the one nearest
  /// restart_min (a coarse grid), there is no restart.
  TORCH_ARG(double, restart_min) = 0.1;
  TORCH_ARG(double, restart_max) = 2.0;
  /// Heun steps per restart (A1111's list entry restart_steps + 1). Default 9; >= 1.
  TORCH_ARG(int64_t, restart_steps) = 9;
  /// Number of restarts. Default 1; 0 = plain Heun.
  TORCH_ARG(int64_t, restart_times) = 1;
  /// The Karras rho of the restart sub-grid. Default 7; > 0.
  TORCH_ARG(double, rho) = 7.0;
  /// Scale of the restart noise. Default 1; >= 0.
  TORCH_ARG(double, s_noise) = 1.0;
  /// Where the Heun steps are taken (HeunOptions::space). Default auto.
  TORCH_ARG(HeunSpace, space) = HeunSpace::automatic;
};

class RestartSampler final : public Sampler {
 public:
  explicit RestartSampler(RestartOptions o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "restart"; }
  bool is_stochastic() const override {
    return options.restart_times() > 0 && options.s_noise() > 0;
  }
  /// Heun's 2 num_steps - 1 calls plus 2 restart_steps per restart: the count when the grid
  /// holds the restart interval and its lower end is noisy. model_calls_on(grid) is exact.
  int64_t model_calls(int64_t num_steps) const override {
    return num_steps > 0 ? 2 * num_steps - 1 + 2 * options.restart_steps() * options.restart_times()
                         : 0;
  }
  int64_t model_calls_on(const TimeGrid& grid) const override;

  RestartOptions options;

  /// The grid indices (lo, hi) of the restart interval on `grid`: lo nearest restart_min, hi
  /// nearest restart_max. A restart follows the step onto lo when hi < lo.
  std::pair<int64_t, int64_t> restart_indices(const TimeGrid& grid) const;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
