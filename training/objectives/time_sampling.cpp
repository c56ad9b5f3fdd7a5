// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/time_sampling.h>. Compiled into libdiffuse (the objectives use it).
#include <diffuse/training/time_sampling.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include <diffuse/config.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/flow.h>

namespace diffuse {

const std::vector<std::pair<std::string, TimeDistribution>>& time_distribution_names() {
  static const std::vector<std::pair<std::string, TimeDistribution>> names{
      {"uniform", TimeDistribution::uniform},
      {"log_normal", TimeDistribution::log_normal},
      {"logit_normal", TimeDistribution::logit_normal},
      {"mode", TimeDistribution::mode}};
  return names;
}

namespace detail {

void validate(const TimeSamplingOptions& o) {
  check_enum(o.distribution(), time_distribution_names(), "time sampling: distribution");
  check(std::isfinite(o.p_mean()), "time sampling: p_mean must be finite, got ", o.p_mean());
  check(std::isfinite(o.p_std()) && o.p_std() > 0, "time sampling: p_std must be > 0, got ",
        o.p_std());
  check(std::isfinite(o.logit_mean()), "time sampling: logit_mean must be finite, got ",
        o.logit_mean());
  check(std::isfinite(o.logit_std()) && o.logit_std() > 0,
        "time sampling: logit_std must be > 0, got ", o.logit_std());
  // Outside this range the mode density's map u -> tau is not monotonic (tau leaves [0, 1]).
  const double max_scale = 2.0 / (M_PI - 2.0);
  check(o.mode_scale() >= -1.0 && o.mode_scale() <= max_scale,
        "time sampling: mode_scale must be in [-1, ", max_scale, "], got ", o.mode_scale());
  check(std::isfinite(o.shift()) && o.shift() > 0,
        "time sampling: shift must be finite and > 0, got ", o.shift());
}

at::TensorOptions generator_options(const at::Generator& gen, at::ScalarType dtype) {
  return at::TensorOptions().dtype(dtype).device(gen.device());
}

TimeSamplingOptions read_time_sampling(ConfigReader& r) {
  TimeSamplingOptions o;
  o.distribution(r.get_enum("time_sampling", o.distribution(), time_distribution_names()));
  o.p_mean(r.get_double("p_mean", o.p_mean()));
  o.p_std(r.get_double("p_std", o.p_std()));
  o.logit_mean(r.get_double("logit_mean", o.logit_mean()));
  o.logit_std(r.get_double("logit_std", o.logit_std()));
  o.mode_scale(r.get_double("mode_scale", o.mode_scale()));
  o.shift(r.get_double("shift", o.shift()));
  return o;
}

void write_time_sampling(const TimeSamplingOptions& o, Config& c) {
  c["time_sampling"] = enum_name(o.distribution(), time_distribution_names());
  c["p_mean"] = format_double(o.p_mean());
  c["p_std"] = format_double(o.p_std());
  // The flow-matching densities' keys only where they apply, so configs written before them
  // (model cards, checkpoints) read back unchanged.
  if (o.distribution() == TimeDistribution::logit_normal) {
    c["logit_mean"] = format_double(o.logit_mean());
    c["logit_std"] = format_double(o.logit_std());
  }
  if (o.distribution() == TimeDistribution::mode) c["mode_scale"] = format_double(o.mode_scale());
  if (o.shift() != 1.0) c["shift"] = format_double(o.shift());
}

}  // namespace detail

at::Tensor sample_times(const NoiseSchedule& s, int64_t batch, at::Generator& gen,
                        const at::TensorOptions& options, const TimeSamplingOptions& o) {
  detail::validate(o);
  check(batch > 0, "time sampling: batch size must be > 0, got ", batch);
  check(at::isFloatingType(options.dtype().toScalarType()),
        "time sampling: times need a floating dtype, got ", options.dtype());
  const int64_t T = s.num_train_timesteps();
  const double lo = s.t_min(), hi = s.t_max();
  check(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "time sampling: schedule '", s.name(),
        "' has an invalid time range [", lo, ", ", hi, "]");
  at::Tensor t;
  if (o.distribution() == TimeDistribution::uniform) {
    if (T > 0) {
      t = at::randint(0, T, {batch}, gen, detail::generator_options(gen, at::kLong));
    } else {
      t = at::rand({batch}, gen, detail::generator_options(gen, at::kFloat)).to(at::kDouble) *
              (hi - lo) +
          lo;
    }
  } else {
    // log_normal, logit_normal, mode: one float32 draw per example (uniform for mode, normal
    // otherwise), mapped to a model time on the host (the schedule's maps are host functions).
    const TimeDistribution dist = o.distribution();
    const at::Tensor draw =
        dist == TimeDistribution::mode
            ? at::rand({batch}, gen, detail::generator_options(gen, at::kFloat))
            : at::randn({batch}, gen, detail::generator_options(gen, at::kFloat));
    const at::Tensor dc = draw.to(at::kCPU, at::kDouble).contiguous();
    const double* dp = dc.data_ptr<double>();
    // The model time of one draw, before rounding and clamping.
    auto time_of = [&](double d) {
      if (dist == TimeDistribution::log_normal)
        return s.at_sigma_ve(std::exp(o.p_mean() + o.p_std() * d)).t;
      double tau;
      if (dist == TimeDistribution::logit_normal) {
        tau = 1.0 / (1.0 + std::exp(-(o.logit_mean() + o.logit_std() * d)));
      } else {
        const double c = std::cos(M_PI * d / 2.0);
        tau = 1.0 - d - o.mode_scale() * (c * c - 1.0 + d);
      }
      if (o.shift() != 1.0) tau = flow_static_shift(o.shift(), tau);
      if (tau >= 1.0) return hi;
      if (tau <= 0.0) return lo;
      return s.at_log_snr(std::log1p(-tau) - std::log(tau)).t;
    };
    std::vector<double> ts(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) {
      double ti = time_of(dp[i]);
      if (T > 0) ti = std::round(ti);  // a training index (lo and hi are indices already)
      ts[static_cast<size_t>(i)] = std::clamp(ti, lo, hi);
    }
    t = at::tensor(ts, at::TensorOptions().dtype(at::kDouble));
  }
  return t.to(options.device(), options.dtype().toScalarType());
}

}  // namespace diffuse
