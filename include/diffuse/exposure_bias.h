// SPDX-License-Identifier: Apache-2.0
// The exposure-bias metric of Ning et al., "Elucidating the Exposure Bias in Diffusion Models"
// (ICLR 2024): how far the sampling chain's x_t drifts from the forward process at
// the same t. Checked against: forever208/ADM-ES @da955c1 datasets/exposure_bias_xt.py (how the
// per-pixel std is reduced and compared; the sampling side lives in its x_t_distribution_*
// branches).
//
// Real data x0 [N, ...] is diffused to the grid point of the first step, x = alpha x0 + sigma z,
// and the sampler runs from there (with the options' corrections, guidance and noise). After each
// step, at its landing point (alpha_t, sigma_t), over the N samples:
//   r         = x_t - alpha_t x0                      ("stochastic part", same x0 per sample)
//   sigma_hat = mean over elements of the std of r over samples (population std, numpy's np.std)
//   delta     = (sigma_hat - sigma_t)^2               (ADM-ES's delta_t; exposure bias is
//                                                      sigma_hat > sigma_t in ADM)
// and, as a marginal check that needs no x0 correspondence,
//   var_chain   = mean over elements of the variance of x_t over samples
//   var_forward = mean over elements of the variance of alpha_t x0 + sigma_t z, i.e.
//                 alpha_t^2 var(x0) + sigma_t^2 (var(x0) from the same N samples)
//   variance_ratio = var_chain / var_forward
//
// Modes. "accumulated" (default): one chain from the start, ADM-ES's multi-step measurement. Even
// an exact denoiser gives delta > 0 there: the reverse chain forgets which x0 it started from, so
// sigma_hat grows towards the data's own spread as t -> 0 (ADM-ES's "multi-step" curve); compare
// delta between models/corrections, or use variance_ratio, which is 1 for an exact denoiser and
// a convergent sampler. "single_step": every step starts afresh from the forward-diffused state at
// its own time point (ADM-ES's "single-step" curve); then delta -> 0 for an exact denoiser as the
// steps get small. In single_step mode each step runs with an empty history (multistep solvers
// take their first-order step, as at the start of a run), the corrections' on_time hooks run, and
// on_start / on_finish do not.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>

#include <diffuse/denoiser.h>
#include <diffuse/sample.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

namespace diffuse {

/// How measure_exposure_bias runs the chain (see the file comment).
enum class ExposureBiasMode {
  kAccumulated,  ///< "accumulated": one chain from the start (ADM-ES's multi-step measurement)
  kSingleStep,   ///< "single_step": each step from the forward-diffused state at its own time
};

/// The names of the modes: {"accumulated", kAccumulated}, {"single_step", kSingleStep}.
const std::vector<std::pair<std::string, ExposureBiasMode>>& exposure_bias_mode_names();
/// "accumulated" or "single_step" -> the mode (ConfigError naming the value otherwise).
ExposureBiasMode parse_exposure_bias_mode(const std::string& name);
/// The mode's name ("accumulated", "single_step").
std::string to_string(ExposureBiasMode mode);

struct ExposureBiasOptions {
  /// kAccumulated (default; one chain) or kSingleStep (each step from the forward process).
  TORCH_ARG(ExposureBiasMode, mode) = ExposureBiasMode::kAccumulated;
  /// The grid step the chain starts at (0 = the first grid point). ADM-ES starts at respaced
  /// index 19 of its grid, i.e. part-way; must be in [0, num_steps).
  TORCH_ARG(int64_t, first_step) = 0;
};

/// One step's measurement, at the step's landing point.
struct ExposureBiasRecord {
  int64_t index = 0;  ///< the step (its landing point is grid[index + 1])
  double t = 0;       ///< model time of the landing point
  double alpha = 1, sigma = 0;
  double sigma_hat = 0;       ///< mean over elements of std over samples of x_t - alpha x0
  double delta = 0;           ///< (sigma_hat - sigma)^2
  double var_chain = 0;       ///< mean over elements of var over samples of x_t
  double var_forward = 0;     ///< alpha^2 var(x0) + sigma^2 (same reduction)
  double variance_ratio = 1;  ///< var_chain / var_forward (NaN if var_forward == 0)
};

/// Runs the measurement; returns one record per step run (first_step .. num_steps - 1).
/// x0: [N, ...] real data, N >= 2. Grid, corrections, guidance, noise/seed come from `options`
/// as in sample(); the forward noise z is the first draw of the run's noise source.
std::vector<ExposureBiasRecord> measure_exposure_bias(
    const Sampler& sampler, const Denoiser& denoiser, const NoiseSchedule& schedule,
    const Tensor& x0, const SampleOptions& options = {}, const ExposureBiasOptions& eb = {});

/// Sum of delta over the records (a one-number summary).
double total_delta(const std::vector<ExposureBiasRecord>& records);

}  // namespace diffuse
