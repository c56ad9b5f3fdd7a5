// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/corrections/time_shift.h>.
#include <diffuse/samplers/corrections/time_shift.h>

#include <algorithm>
#include <cmath>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>

namespace diffuse {

namespace {

const std::vector<std::pair<std::string, TimeShiftVariant>>& variant_names() {
  static const std::vector<std::pair<std::string, TimeShiftVariant>> names{
      {"coupled", TimeShiftVariant::kCoupled},
      {"target_shift", TimeShiftVariant::kTargetShift},
      {"adm", TimeShiftVariant::kAdm}};
  return names;
}

const std::vector<std::pair<std::string, TimeShiftVarianceModel>>& variance_model_names() {
  static const std::vector<std::pair<std::string, TimeShiftVarianceModel>> names{
      {"official", TimeShiftVarianceModel::kOfficial},
      {"data_aware", TimeShiftVarianceModel::kDataAware}};
  return names;
}

const std::vector<std::pair<std::string, TimeShiftBatchVariance>>& batch_variance_names() {
  static const std::vector<std::pair<std::string, TimeShiftBatchVariance>> names{
      {"mean", TimeShiftBatchVariance::kMean}, {"pooled", TimeShiftBatchVariance::kPooled}};
  return names;
}

}  // namespace

TimeShift::TimeShift(TimeShiftOptions o) : options(std::move(o)) {
  // The search visits window + 1 candidates per step: a huge window would stall every step.
  check(options.window() >= 0 && options.window() <= kMaxWindow,
        "TimeShiftOptions.window must be in [0, ", kMaxWindow, "], got ", options.window());
  check(std::isfinite(options.cutoff()) && options.cutoff() >= 0,
        "TimeShiftOptions.cutoff must be finite and >= 0, got ", options.cutoff());
  check(options.variant() == TimeShiftVariant::kCoupled ||
            options.variant() == TimeShiftVariant::kTargetShift ||
            options.variant() == TimeShiftVariant::kAdm,
        "TimeShiftOptions.variant must be kCoupled, kTargetShift or kAdm, got ",
        static_cast<int>(options.variant()));
  check(options.variance_model() == TimeShiftVarianceModel::kOfficial ||
            options.variance_model() == TimeShiftVarianceModel::kDataAware,
        "TimeShiftOptions.variance_model must be kOfficial or kDataAware, got ",
        static_cast<int>(options.variance_model()));
  check(std::isfinite(options.data_var()) && options.data_var() >= 0,
        "TimeShiftOptions.data_var must be finite and >= 0, got ", options.data_var());
  check(options.batch_variance() == TimeShiftBatchVariance::kMean ||
            options.batch_variance() == TimeShiftBatchVariance::kPooled,
        "TimeShiftOptions.batch_variance must be kMean or kPooled, got ",
        static_cast<int>(options.batch_variance()));
  check(std::isfinite(options.resolution()) && options.resolution() >= 0,
        "TimeShiftOptions.resolution must be finite and >= 0 (0 = automatic), got ",
        options.resolution());
}

std::unique_ptr<Correction> TimeShift::from_config(const Config& c) {
  ConfigReader r(c, "time_shift");
  TimeShiftOptions o;
  o.window(r.get_int("window", o.window()));
  o.cutoff(r.get_double("cutoff", o.cutoff()));
  o.variant(r.get_enum("variant", o.variant(), variant_names()));
  o.variance_model(r.get_enum("variance_model", o.variance_model(), variance_model_names()));
  o.data_var(r.get_double("data_var", o.data_var()));
  o.batch_variance(r.get_enum("batch_variance", o.batch_variance(), batch_variance_names()));
  o.resolution(r.get_double("resolution", o.resolution()));
  r.finish();
  auto made = std::make_unique<TimeShift>(o);  // validates the values given first
  // Asked for by name, a correction must act: the window has no default that suits every
  // schedule and step count (window = 0, the options' default, is the identity), so it is named.
  check(c.count("window") > 0,
        "time_shift needs window=W (and usually cutoff=T), e.g. time_shift:window=5,cutoff=550; "
        "the published "
        "settings are the presets time_shift_pndm (window=5,cutoff=550), time_shift_dpm_solver "
        "(30, 300), "
        "time_shift_deis (10, 900) and time_shift_adm (80, 300, variant=adm), for 1000-step "
        "discrete schedules; "
        "window=0 is the identity");
  return made;
}

Config TimeShift::to_config() const {
  return {{"window", std::to_string(options.window())},
          {"cutoff", format_double(options.cutoff())},
          {"variant", enum_name(options.variant(), variant_names())},
          {"variance_model", enum_name(options.variance_model(), variance_model_names())},
          {"data_var", format_double(options.data_var())},
          {"batch_variance", enum_name(options.batch_variance(), batch_variance_names())},
          {"resolution", format_double(options.resolution())}};
}

void TimeShift::reset() {
  schedule_ = nullptr;
  first_index_ = -1;
  prev_now_log_snr_ = -std::numeric_limits<double>::infinity();
}

void TimeShift::on_start(Tensor& /*x*/, const StepContext& step) {
  first_index_ = step.index;
  prev_now_log_snr_ = -std::numeric_limits<double>::infinity();
}

void TimeShift::on_time(const Tensor& x, StepContext& step) {
  shift(x, step);
  prev_now_log_snr_ = step.now.log_snr();
}

void TimeShift::shift(const Tensor& x, StepContext& step) {
  if (options.window() < 2) return;  // floor(w/2) == 0: only the centre itself is a candidate
  if (first_index_ < 0) first_index_ = step.index;
  if (step.index == first_index_) return;  // no shift on the first step (all official code)
  const TimeShiftVariant v = options.variant();
  const TimePoint& centre = v == TimeShiftVariant::kTargetShift ? step.next : step.now;
  if (centre.is_clean() || !(centre.t > options.cutoff())) return;
  check(schedule_ != nullptr,
        "time_shift: no noise schedule; run through sample() or call on_grid(grid, schedule) "
        "before sampling");
  const double var = batch_variance(x);
  if (v == TimeShiftVariant::kCoupled) {
    // Strictly between the previous step's (possibly shifted) time and this step's target, so
    // multistep histories stay ordered and the step keeps a positive length.
    const double t_s = choose(var, centre.t, false, prev_now_log_snr_, step.next.log_snr());
    if (t_s != centre.t) step.now = schedule_->at(t_s);
  } else if (v == TimeShiftVariant::kTargetShift) {
    const double t_s = choose(var, centre.t, false, step.now.log_snr());
    if (t_s != centre.t) step.next = schedule_->at(t_s);
  } else {
    const double t_s = choose(var, centre.t, true);
    const double res = resolution();
    const int64_t steps = std::max<int64_t>(step.num_steps - 1, 1);
    const double stride = std::floor((schedule_->t_max() - schedule_->t_min() + res) / res /
                                     static_cast<double>(steps)) *
                          res;
    const double target = t_s - stride - res;
    if (target < schedule_->t_min()) return;  // the official index would wrap around: keep nominal
    const TimePoint p = schedule_->at(target);
    if (p.log_snr() > step.now.log_snr()) step.next = p;
  }
}

double TimeShift::batch_variance(const Tensor& x) const {
  check(options.batch_variance() == TimeShiftBatchVariance::kPooled ||
            (x.dim() >= 1 && x.numel() > x.size(0)),
        "time_shift: batch_variance=mean needs more than one entry per sample, got shape ",
        x.sizes());
  check(x.numel() > 1, "time_shift: the variance needs more than one entry, got shape ", x.sizes());
  // From the entry sums: (sum x^2 - sum_rows (row sum)^2 / n) / (B (n - 1)) is the batch mean
  // of the unbiased per-sample variances. LibTorch's var(dim) is 20-30x slower on CPU (1.13)
  // than these two reductions (a dot product and a row sum); the diffusion state has mean ~0,
  // so the subtraction loses no precision that matters for the window search.
  const Tensor rows = x.reshape({x.size(0), -1});
  const Tensor flat = rows.reshape({-1});
  const Tensor sq = at::dot(flat, flat);
  const double B = static_cast<double>(rows.size(0)), n = static_cast<double>(rows.size(1));
  if (options.batch_variance() == TimeShiftBatchVariance::kPooled) {
    const Tensor total = flat.sum();
    return ((sq - total * total / (B * n)) / (B * n - 1)).item<double>();
  }
  const Tensor s = rows.sum(1);
  return ((sq - at::dot(s, s) / n) / (B * (n - 1))).item<double>();
}

double TimeShift::choose(double var, double centre, bool mirrored, double lambda_lo,
                         double lambda_hi) const {
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

double TimeShift::model_variance(double tau, bool mirrored) const {
  if (options.variance_model() == TimeShiftVarianceModel::kDataAware) {
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

double TimeShift::resolution() const {
  if (options.resolution() > 0) return options.resolution();
  check(schedule_ != nullptr, "time_shift: no noise schedule (on_grid was not called)");
  return schedule_->num_train_timesteps() > 0 ? 1.0
                                              : (schedule_->t_max() - schedule_->t_min()) / 1000.0;
}

DIFFUSE_REGISTER_CORRECTION(TimeShift, "time_shift",
                            "Time-Shift Sampler (Li et al. ICLR 2024): couple x with the time "
                            "whose noise level matches var(x) (set window, cutoff)");
// The hyper-parameters of the official READMEs, for discrete 1000-step schedules
// (window and cutoff are in training steps there).
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftPndm, "time_shift_pndm", "time_shift",
                                  (Config{{"window", "5"}, {"cutoff", "550"}}),
                                  "TS-DPM README: F-PNDM, 100 steps (w=5, t_c=550)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftDpmSolver, "time_shift_dpm_solver", "time_shift",
                                  (Config{{"window", "30"}, {"cutoff", "300"}}),
                                  "TS-DPM README: DPM-Solver order 2, 5 steps (w=30, t_c=300)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftDeis, "time_shift_deis", "time_shift",
                                  (Config{{"window", "10"}, {"cutoff", "900"}}),
                                  "TS-DPM README: DEIS order 2, 5 steps (w=10, t_c=900)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(TimeShiftAdm, "time_shift_adm", "time_shift",
                                  (Config{{"variant", "adm"}, {"window", "80"}, {"cutoff", "300"}}),
                                  "TS-DPM-ADM README: cosine ADM, DDIM, 5 steps (w=80, t_c=300)");

}  // namespace diffuse
