// SPDX-License-Identifier: Apache-2.0
// The exposure-bias metric of Ning et al., "Elucidating the Exposure Bias in Diffusion Models"
// (ICLR 2024), methods.md §3.3: how far the sampling chain's x_t drifts from the forward process at
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

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/noise.h>
#include <diffuse/sample.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>

namespace diffuse {

struct ExposureBiasOptions {
  /// "accumulated" (default; one chain) or "single_step" (each step from the forward process).
  TORCH_ARG(std::string, mode) = "accumulated";
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
inline double total_delta(const std::vector<ExposureBiasRecord>& records) {
  double s = 0;
  for (const auto& r : records) s += r.delta;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Implementation

namespace detail {
/// Variance over dim 0 with divisor N (numpy's default), written out so it means the same on
/// every LibTorch version.
inline Tensor population_var(const Tensor& v) { return (v - v.mean(0)).pow(2).mean(0); }

inline ExposureBiasRecord exposure_bias_record(const Tensor& x, const Tensor& x0,
                                               const Tensor& var_x0, const StepContext& st) {
  const TimePoint& p = st.next;
  const int64_t n = x.size(0);
  const Tensor xd = x.to(at::kDouble).reshape({n, -1});
  const Tensor r = xd - x0 * p.alpha;
  ExposureBiasRecord rec;
  rec.index = st.index;
  rec.t = p.t;
  rec.alpha = p.alpha;
  rec.sigma = p.sigma;
  rec.sigma_hat = population_var(r).sqrt().mean().item<double>();
  rec.delta = (rec.sigma_hat - p.sigma) * (rec.sigma_hat - p.sigma);
  rec.var_chain = population_var(xd).mean().item<double>();
  rec.var_forward = (var_x0 * (p.alpha * p.alpha) + p.sigma * p.sigma).mean().item<double>();
  rec.variance_ratio = rec.var_forward > 0 ? rec.var_chain / rec.var_forward
                                           : std::numeric_limits<double>::quiet_NaN();
  return rec;
}
}  // namespace detail

inline std::vector<ExposureBiasRecord> measure_exposure_bias(
    const Sampler& sampler, const Denoiser& denoiser, const NoiseSchedule& schedule,
    const Tensor& x0, const SampleOptions& o, const ExposureBiasOptions& eb) {
  check(eb.mode() == "accumulated" || eb.mode() == "single_step",
        "ExposureBiasOptions.mode must be accumulated or single_step, got '", eb.mode(), "'");
  check(x0.defined() && x0.dim() >= 1 && x0.size(0) >= 2,
        "measure_exposure_bias: x0 needs a batch of at least 2 samples, got shape ",
        x0.defined() ? x0.sizes() : c10::IntArrayRef{});
  check(at::isFloatingType(x0.scalar_type()),
        "measure_exposure_bias: x0 must be floating point, got ", x0.scalar_type());
  const detail::CorrectionRun run(o.corrections, "measure_exposure_bias");
  const std::vector<Correction*>& corrections = run.get();
  const TimeGrid grid = detail::make_grid(schedule, o, corrections);
  const int64_t n = static_cast<int64_t>(grid.size()) - 1;
  check(eb.first_step() >= 0 && eb.first_step() < n,
        "ExposureBiasOptions.first_step=", eb.first_step(), " is outside [0, ", n,
        ") for a grid of ", n, " steps");
  std::shared_ptr<NoiseSource> noise =
      o.noise ? o.noise : std::shared_ptr<NoiseSource>(make_per_sample_noise(o.seed));
  SampleContext ctx;
  ctx.schedule = &schedule;
  ctx.noise = noise.get();
  ctx.corrections = corrections;
  const ModelFn model = make_model_fn(denoiser, o, corrections);

  const Tensor x0c = x0.to(Sampler::compute_dtype(x0.scalar_type()));
  const Tensor x0d = x0.to(at::kDouble).reshape({x0.size(0), -1});
  const Tensor var_x0 = detail::population_var(x0d);
  auto forward = [&](const TimePoint& p) {
    return x0c * p.alpha + noise->randn_like(x0c) * p.sigma;
  };

  std::vector<ExposureBiasRecord> out;
  if (eb.mode() == "accumulated") {
    ctx.on_step = [&](const StepInfo& info) {
      out.push_back(detail::exposure_bias_record(info.x, x0d, var_x0, info.step));
      if (o.on_step) o.on_step(info);
    };
    sampler.sample(model, forward(grid[eb.first_step()]), grid, ctx, eb.first_step());
    return out;
  }
  for (int64_t i = eb.first_step(); i < n; ++i) {
    StepContext st = step_context(grid, i, noise.get());
    const Tensor x = forward(grid[i]);
    for (Correction* c : corrections) c->on_time(x, st);
    const StepResult r = sampler.step(model, x, st, History{}, ctx);
    out.push_back(detail::exposure_bias_record(r.x, x0d, var_x0, st));
    if (o.on_step) o.on_step(StepInfo{st, r.x, r.pred});
  }
  return out;
}

}  // namespace diffuse
