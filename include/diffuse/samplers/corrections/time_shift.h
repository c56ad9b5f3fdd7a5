// SPDX-License-Identifier: Apache-2.0
// Time-Shift Sampler. Li, Qu, Yao, Sun, Moens, "Alleviating Exposure Bias in Diffusion Models
// through Sampling with Shifted Time Steps", ICLR 2024 (methods.md §2).
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
// [t_min, t_max] are dropped (the official code clips the window the same way at t = 0; the ADM code
// shifts it instead). Ties go to the lower time, like torch.argmin over an increasing list.
//
// Three wirings (methods.md §2.2; the official code bases differ):
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
// Cost per step: two reductions (a dot product and row sums) and one host read of the variance; the window search is a host
// loop over at most w + 1 schedule evaluations, without allocations.
//
// Needs the schedule: sample() hands it over through on_grid (callers that drive Sampler::sample
// themselves call on_grid first). sample() runs a clone() per run, so one TimeShift object can be
// shared by concurrent sample() calls; code that drives the hooks itself keeps one object per run.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/correction.h>
#include <diffuse/sampler.h>

namespace diffuse {

struct TimeShiftOptions {
  /// Window size w: candidates c - floor(w/2) .. c + floor(w/2) (in units of `resolution`).
  /// Default 0 = off (the identity); in [0, TimeShift::kMaxWindow = 100000]. A spec ("time_shift:...")
  /// must name it: from_config refuses a spec without window. Published: 5 (F-PNDM,
  /// 100 steps), 30 (DPM-Solver-2, 5 steps), 10 (DEIS-2, 5 steps), 80 (ADM DDIM, 5 steps) with 1000
  /// training steps.
  TORCH_ARG(int64_t, window) = 0;
  /// Cutoff t_c in model time: shift only while the centre time is > cutoff. Default 0; >= 0.
  /// Published: 550, 300, 900, 300 (same runs as above, 1000-step time).
  TORCH_ARG(double, cutoff) = 0.0;
  /// "coupled" (default), "target_shift" (TS-DPM PNDM/DDIM) or "adm" (TS-DPM-ADM DDIM).
  TORCH_ARG(std::string, variant) = "coupled";
  /// "official" (default; v = sigma^2) or "data_aware" (v = alpha^2 * data_var + sigma^2).
  TORCH_ARG(std::string, variance_model) = "official";
  /// Var(x0) for data_aware, in the sense of batch_variance (for "mean": the expected per-sample
  /// variance over a sample's entries). Default 1; finite and >= 0.
  TORCH_ARG(double, data_var) = 1.0;
  /// "mean" (default; batch mean of per-sample unbiased variances) or "pooled" (unbiased variance
  /// over the whole batch).
  TORCH_ARG(std::string, batch_variance) = "mean";
  /// Candidate spacing in model time. Default 0 = automatic: 1 (one training step) for discrete
  /// schedules, (t_max - t_min) / 1000 for continuous ones; otherwise finite and > 0.
  TORCH_ARG(double, resolution) = 0.0;
};

class TimeShift final : public Correction {
 public:
  /// The largest window accepted (the published ones are at most 80).
  static constexpr int64_t kMaxWindow = 100000;

  explicit TimeShift(TimeShiftOptions o = {}) : options(std::move(o)) {
    // The search visits window + 1 candidates per step: a huge window would stall every step.
    check(options.window() >= 0 && options.window() <= kMaxWindow,
          "TimeShiftOptions.window must be in [0, ", kMaxWindow, "], got ", options.window());
    check(std::isfinite(options.cutoff()) && options.cutoff() >= 0,
          "TimeShiftOptions.cutoff must be finite and >= 0, got ", options.cutoff());
    check(options.variant() == "coupled" || options.variant() == "target_shift" || options.variant() == "adm",
          "TimeShiftOptions.variant must be coupled, target_shift or adm, got '", options.variant(), "'");
    check(options.variance_model() == "official" || options.variance_model() == "data_aware",
          "TimeShiftOptions.variance_model must be official or data_aware, got '", options.variance_model(), "'");
    check(std::isfinite(options.data_var()) && options.data_var() >= 0,
          "TimeShiftOptions.data_var must be finite and >= 0, got ", options.data_var());
    check(options.batch_variance() == "mean" || options.batch_variance() == "pooled",
          "TimeShiftOptions.batch_variance must be mean or pooled, got '", options.batch_variance(), "'");
    check(std::isfinite(options.resolution()) && options.resolution() >= 0,
          "TimeShiftOptions.resolution must be finite and >= 0 (0 = automatic), got ", options.resolution());
  }
  static std::unique_ptr<Correction> from_config(const Config& c) {
    ConfigReader r(c, "time_shift");
    TimeShiftOptions o;
    o.window(r.get_int("window", o.window()));
    o.cutoff(r.get_double("cutoff", o.cutoff()));
    o.variant(r.get_choice("variant", o.variant(), {"coupled", "target_shift", "adm"}));
    o.variance_model(r.get_choice("variance_model", o.variance_model(), {"official", "data_aware"}));
    o.data_var(r.get_double("data_var", o.data_var()));
    o.batch_variance(r.get_choice("batch_variance", o.batch_variance(), {"mean", "pooled"}));
    o.resolution(r.get_double("resolution", o.resolution()));
    r.finish();
    auto made = std::make_unique<TimeShift>(o);  // validates the values given first
    // Asked for by name, a correction must act: the window has no default that suits every
    // schedule and step count (window = 0, the options' default, is the identity), so it is named.
    check(c.count("window") > 0,
          "time_shift needs window=W (and usually cutoff=T), e.g. time_shift:window=5,cutoff=550; the published "
          "settings are the presets time_shift_pndm (window=5,cutoff=550), time_shift_dpm_solver (30, 300), "
          "time_shift_deis (10, 900) and time_shift_adm (80, 300, variant=adm), for 1000-step discrete schedules; "
          "window=0 is the identity");
    return made;
  }
  Config to_config() const override {
    return {{"window", std::to_string(options.window())},
            {"cutoff", format_double(options.cutoff())},
            {"variant", options.variant()},
            {"variance_model", options.variance_model()},
            {"data_var", format_double(options.data_var())},
            {"batch_variance", options.batch_variance()},
            {"resolution", format_double(options.resolution())}};
  }
  std::string name() const override { return "time_shift"; }
  std::unique_ptr<Correction> clone() const override { return std::make_unique<TimeShift>(*this); }

  void reset() override {
    schedule_ = nullptr;
    first_index_ = -1;
    prev_now_log_snr_ = -std::numeric_limits<double>::infinity();
  }
  void on_grid(TimeGrid& /*grid*/, const NoiseSchedule& s) override { schedule_ = &s; }
  void on_start(Tensor& /*x*/, const StepContext& step) override {
    first_index_ = step.index;
    prev_now_log_snr_ = -std::numeric_limits<double>::infinity();
  }

  void on_time(const Tensor& x, StepContext& step) override {
    shift(x, step);
    prev_now_log_snr_ = step.now.log_snr();
  }
  /// One step's search and shift (on_time without the bookkeeping).
  void shift(const Tensor& x, StepContext& step) {
    if (options.window() < 2) return;  // floor(w/2) == 0: only the centre itself is a candidate
    if (first_index_ < 0) first_index_ = step.index;
    if (step.index == first_index_) return;  // no shift on the first step (all official code)
    const std::string& v = options.variant();
    const TimePoint& centre = v == "target_shift" ? step.next : step.now;
    if (centre.is_clean() || !(centre.t > options.cutoff())) return;
    check(schedule_ != nullptr,
          "time_shift: no noise schedule; run through sample() or call on_grid(grid, schedule) before sampling");
    const double var = batch_variance(x);
    if (v == "coupled") {
      // Strictly between the previous step's (possibly shifted) time and this step's target, so
      // multistep histories stay ordered and the step keeps a positive length.
      const double t_s = choose(var, centre.t, false, prev_now_log_snr_, step.next.log_snr());
      if (t_s != centre.t) step.now = schedule_->at(t_s);
    } else if (v == "target_shift") {
      const double t_s = choose(var, centre.t, false, step.now.log_snr());
      if (t_s != centre.t) step.next = schedule_->at(t_s);
    } else {
      const double t_s = choose(var, centre.t, true);
      const double res = resolution();
      const int64_t steps = std::max<int64_t>(step.num_steps - 1, 1);
      const double stride =
          std::floor((schedule_->t_max() - schedule_->t_min() + res) / res / static_cast<double>(steps)) * res;
      const double target = t_s - stride - res;
      if (target < schedule_->t_min()) return;  // the official index would wrap around: keep nominal
      const TimePoint p = schedule_->at(target);
      if (p.log_snr() > step.now.log_snr()) step.next = p;
    }
  }

  /// The variance of x this correction matches (two reductions, one host read).
  double batch_variance(const Tensor& x) const {
    check(options.batch_variance() == "pooled" || (x.dim() >= 1 && x.numel() > x.size(0)),
          "time_shift: batch_variance=mean needs more than one entry per sample, got shape ", x.sizes());
    check(x.numel() > 1, "time_shift: the variance needs more than one entry, got shape ", x.sizes());
    // From the entry sums: (sum x^2 - sum_rows (row sum)^2 / n) / (B (n - 1)) is the batch mean
    // of the unbiased per-sample variances. LibTorch's var(dim) is 20-30x slower on CPU (1.13)
    // than these two reductions (a dot product and a row sum); the diffusion state has mean ~0,
    // so the subtraction loses no precision that matters for the window search.
    const Tensor rows = x.reshape({x.size(0), -1});
    const Tensor flat = rows.reshape({-1});
    const Tensor sq = at::dot(flat, flat);
    const double B = static_cast<double>(rows.size(0)), n = static_cast<double>(rows.size(1));
    if (options.batch_variance() == "pooled") {
      const Tensor total = flat.sum();
      return ((sq - total * total / (B * n)) / (B * n - 1)).item<double>();
    }
    const Tensor s = rows.sum(1);
    return ((sq - at::dot(s, s) / n) / (B * (n - 1))).item<double>();
  }

  /// The window search: the candidate time around `centre` whose model variance is closest to
  /// `var` (`mirrored`: the ADM code's flip(alphabar) values), among the candidates whose log-SNR
  /// lies strictly inside (lambda_lo, lambda_hi). Returns `centre` when no candidate is admissible.
  double choose(double var, double centre, bool mirrored = false,
                double lambda_lo = -std::numeric_limits<double>::infinity(),
                double lambda_hi = std::numeric_limits<double>::infinity()) const {
    check(schedule_ != nullptr, "time_shift: no noise schedule (on_grid was not called)");
    const int64_t h = options.window() / 2;
    const double res = resolution(), lo = schedule_->t_min(), hi = schedule_->t_max();
    const double slack = 1e-9 * res;  // centre + k * res may round just outside [t_min, t_max]
    double best_t = centre, best = std::numeric_limits<double>::infinity();
    for (int64_t k = -h; k <= h; ++k) {
      double tau = k == 0 ? centre : centre + static_cast<double>(k) * res;
      if (tau < lo - slack || tau > hi + slack) continue;
      tau = std::min(std::max(tau, lo), hi);
      if (std::isfinite(lambda_lo) || std::isfinite(lambda_hi)) {
        const double l = schedule_->at(tau).log_snr();
        if (!(l > lambda_lo && l < lambda_hi)) continue;
      }
      const double d = var - model_variance(tau, mirrored);
      if (d * d < best) {
        best = d * d;
        best_t = tau;
      }
    }
    return best_t;
  }

  /// v(tau): the variance the correction expects of x at model time tau.
  double model_variance(double tau, bool mirrored = false) const {
    if (options.variance_model() == "data_aware") {
      const TimePoint p = schedule_->at(tau);
      return p.alpha * p.alpha * options.data_var() + p.sigma * p.sigma;
    }
    if (mirrored) {
      const TimePoint p = schedule_->at(schedule_->t_min() + schedule_->t_max() - tau);
      return p.alpha * p.alpha;
    }
    const TimePoint p = schedule_->at(tau);
    return p.sigma * p.sigma;
  }

  double resolution() const {
    if (options.resolution() > 0) return options.resolution();
    check(schedule_ != nullptr, "time_shift: no noise schedule (on_grid was not called)");
    return schedule_->num_train_timesteps() > 0 ? 1.0 : (schedule_->t_max() - schedule_->t_min()) / 1000.0;
  }

  TimeShiftOptions options;

 private:
  const NoiseSchedule* schedule_ = nullptr;  // set by on_grid for the current run
  int64_t first_index_ = -1;
  double prev_now_log_snr_ = -std::numeric_limits<double>::infinity();  // the last step's time
};

DIFFUSE_REGISTER_CORRECTION(TimeShift, "time_shift",
                            "Time-Shift Sampler (Li et al. ICLR 2024): couple x with the time whose noise level matches var(x) (set window, cutoff)");
// The hyper-parameters of the official READMEs (methods.md §2.3), for discrete 1000-step schedules
// (window and cutoff are in training steps there).
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftPndm, "time_shift_pndm", "time_shift", (Config{{"window", "5"}, {"cutoff", "550"}}),
                                  "TS-DPM README: F-PNDM, 100 steps (w=5, t_c=550)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftDpmSolver, "time_shift_dpm_solver", "time_shift",
                                  (Config{{"window", "30"}, {"cutoff", "300"}}),
                                  "TS-DPM README: DPM-Solver order 2, 5 steps (w=30, t_c=300)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftDeis, "time_shift_deis", "time_shift", (Config{{"window", "10"}, {"cutoff", "900"}}),
                                  "TS-DPM README: DEIS order 2, 5 steps (w=10, t_c=900)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftAdm, "time_shift_adm", "time_shift",
                                  (Config{{"variant", "adm"}, {"window", "80"}, {"cutoff", "300"}}),
                                  "TS-DPM-ADM README: cosine ADM, DDIM, 5 steps (w=80, t_c=300)");

}  // namespace diffuse
