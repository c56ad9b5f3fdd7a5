// SPDX-License-Identifier: Apache-2.0
// Time-Shift Sampler. Li, Qu, Yao, Sun, Moens, "Alleviating Exposure Bias in Diffusion Models
// through Sampling with Shifted Time Steps", ICLR 2024.
// Facts checked in the official code: Mingxiao-Li/TS-DPM @90cc903 sampler/pnm_solver.py
// (apply_time_shift) and tingyu215/TS-DPM-ADM @574d0b7 guided_diffusion/gaussian_diffusion.py
// (ddim_sample, get_next_time_window).
//
// Exposure bias leaves the sampling chain's x at a noise level that differs from the nominal one.
// Time Shift measures the variance of x and, among the candidate times of a window around a centre
// time c, picks
//     t_s = argmin_{tau in W} (var(x) - v(tau))^2,   W = {c + k * resolution : |k| <= floor(w/2)},
// where v(tau) = sigma_tau^2 ("official": the code's assumption var(x_t) ~ 1 - alphabar_t, which
// ignores the data term) or alpha_tau^2 * data_var + sigma_tau^2 ("data_aware"). Candidates outside
// [t_min, t_max] are dropped (the official code clips the window the same way at t = 0; the ADM
// code shifts it instead). Ties go to the lower time, like torch.argmin over an increasing list.
//
// Three wirings (the official code bases differ):
//   coupled (default): before each step after the first, with c = the nominal current time (the
//       previous step's target) and c > cutoff, t_s replaces step.now: the network is evaluated at
//       t_s AND the solver uses (alpha, sigma, lambda) of t_s as its current point; targets stay
//       nominal. The paper's reading; closest to TS-DPM's DPM-Solver path (which, unlike this,
//       measures the variance of the last model output rather than of x).
//   target_shift: TS-DPM's PNDM/DDIM path (variant 1): c = the nominal next time, c > cutoff;
//       the network runs at the nominal current time and t_s replaces the step's TARGET
//       (step.next); the next step starts again from its nominal time.
//   adm: TS-DPM-ADM's DDIM path (variant 3): c = the nominal current time, c > cutoff; candidate
//       values are flip(alphabar), i.e. v(tau) = alpha^2 at the mirrored time t_min + t_max - tau
//       (approximates 1 - alphabar only for the cosine schedule; data_aware uses the formula
//       above); the network runs at the nominal time; the target is the point
//       floor((t_max - t_min + res) / (S - 1)) + res below t_s (S = num_steps; for 1000 training
//       steps: t_s - 1000 // (S - 1) - 1, the code's alphas_cumprod_prev_all index). The ADM code
//       treats cutoff == 0 as "off"; here window = 0 is off and cutoff = 0 shifts everywhere.
// No wiring shifts on the first step. Only candidates that keep the run strictly decreasing in
// noise are searched: coupled t_s lies strictly between the previous step's time and the step's
// target (so multistep histories stay ordered), a shifted target is strictly less noisy than the
// current point; the clean end point is never a shift centre.
//
// Batch: the official code computes one variance per sample (unbiased torch.var over C*H*W) and
// shifts each sample's time separately. A TimePoint here is one time for the whole batch, so the
// batch form is used: batch_variance = "mean" (default) matches the batch mean of the per-sample
// variances (identical to the official rule for batch size 1), "pooled" uses the unbiased variance
// of all the batch's entries. Per-sample times are obtained exactly by sampling each sample as its
// own batch of 1 (the per-sample noise convention of sample() makes this reproducible).
//
// Cost per step: two reductions (a dot product and row sums) and one host read of the variance; the
// window search is a host loop over at most w + 1 schedule evaluations, without allocations.
//
// Needs the schedule: sample() hands it over through on_grid (callers that drive Sampler::sample
// themselves call on_grid first). sample() runs a clone() per run, so one TimeShift object can be
// shared by concurrent sample() calls; code that drives the hooks itself keeps one object per run.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/correction.h>
#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>

namespace diffuse {

/// Where TimeShift applies the shifted time (see the file comment).
enum class TimeShiftVariant {
  kCoupled,      ///< "coupled" (default): t_s replaces the step's current point
  kTargetShift,  ///< "target_shift": t_s replaces the step's target (TS-DPM PNDM/DDIM)
  kAdm           ///< "adm": TS-DPM-ADM's DDIM wiring
};

/// The variance TimeShift expects of x at time tau.
enum class TimeShiftVarianceModel {
  kOfficial,  ///< "official" (default): v = sigma^2
  kDataAware  ///< "data_aware": v = alpha^2 data_var + sigma^2
};

/// How TimeShift measures the variance of a batch.
enum class TimeShiftBatchVariance {
  kMean,   ///< "mean" (default): batch mean of per-sample unbiased variances
  kPooled  ///< "pooled": unbiased variance over the whole batch
};

struct TimeShiftOptions {
  /// Window size w: candidates c - floor(w/2) .. c + floor(w/2) (in units of `resolution`).
  /// Default 0 = off (the identity); in [0, TimeShift::kMaxWindow = 100000]. A spec
  /// ("time_shift:...") must name it: from_config refuses a spec without window. Published: 5
  /// (F-PNDM, 100 steps), 30 (DPM-Solver-2, 5 steps), 10 (DEIS-2, 5 steps), 80 (ADM DDIM, 5 steps)
  /// with 1000 training steps.
  TORCH_ARG(int64_t, window) = 0;
  /// Cutoff t_c in model time: shift only while the centre time is > cutoff. Default 0; >= 0.
  /// Published: 550, 300, 900, 300 (same runs as above, 1000-step time).
  TORCH_ARG(double, cutoff) = 0.0;
  /// "coupled" (default), "target_shift" (TS-DPM PNDM/DDIM) or "adm" (TS-DPM-ADM DDIM).
  TORCH_ARG(TimeShiftVariant, variant) = TimeShiftVariant::kCoupled;
  /// "official" (default; v = sigma^2) or "data_aware" (v = alpha^2 * data_var + sigma^2).
  TORCH_ARG(TimeShiftVarianceModel, variance_model) = TimeShiftVarianceModel::kOfficial;
  /// Var(x0) for data_aware, in the sense of batch_variance (for "mean": the expected per-sample
  /// variance over a sample's entries). Default 1; finite and >= 0.
  TORCH_ARG(double, data_var) = 1.0;
  /// "mean" (default; batch mean of per-sample unbiased variances) or "pooled" (unbiased variance
  /// over the whole batch).
  TORCH_ARG(TimeShiftBatchVariance, batch_variance) = TimeShiftBatchVariance::kMean;
  /// Candidate spacing in model time. Default 0 = automatic: 1 (one training step) for discrete
  /// schedules, (t_max - t_min) / 1000 for continuous ones; otherwise finite and > 0.
  TORCH_ARG(double, resolution) = 0.0;
};

class TimeShift final : public Correction {
 public:
  /// The largest window accepted (the published ones are at most 80).
  static constexpr int64_t kMaxWindow = 100000;

  explicit TimeShift(TimeShiftOptions o = {});
  static std::unique_ptr<Correction> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "time_shift"; }
  std::unique_ptr<Correction> clone() const override { return std::make_unique<TimeShift>(*this); }

  void reset() override;
  void on_grid(TimeGrid& /*grid*/, const NoiseSchedule& s) override { schedule_ = &s; }
  void on_start(Tensor& /*x*/, const StepContext& step) override;

  void on_time(const Tensor& x, StepContext& step) override;
  /// One step's search and shift (on_time without the bookkeeping).
  void shift(const Tensor& x, StepContext& step);

  /// The variance of x this correction matches (two reductions, one host read).
  double batch_variance(const Tensor& x) const;

  /// The window search: the candidate time around `centre` whose model variance is closest to
  /// `var` (`mirrored`: the ADM code's flip(alphabar) values), among the candidates whose log-SNR
  /// lies strictly inside (lambda_lo, lambda_hi). Returns `centre` when no candidate is admissible.
  double choose(double var, double centre, bool mirrored = false,
                double lambda_lo = -std::numeric_limits<double>::infinity(),
                double lambda_hi = std::numeric_limits<double>::infinity()) const;

  /// v(tau): the variance the correction expects of x at model time tau.
  double model_variance(double tau, bool mirrored = false) const;

  double resolution() const;

  TimeShiftOptions options;

 private:
  const NoiseSchedule* schedule_ = nullptr;  // set by on_grid for the current run
  int64_t first_index_ = -1;
  double prev_now_log_snr_ = -std::numeric_limits<double>::infinity();  // the last step's time
};

}  // namespace diffuse
