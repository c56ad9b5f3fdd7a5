// SPDX-License-Identifier: Apache-2.0
// Training-time sampling for the objectives: a batch of model times t, shape [B], from one
// at::Generator.
//   uniform     discrete schedules (num_train_timesteps() = T > 0): integers 0..T-1, each with
//               probability 1/T (DDPM, Ho et al. 2020, Algorithm 1; ADM's UniformSampler);
//               continuous schedules: t ~ U[t_min, t_max].
//   log_normal  ln sigma_ve ~ N(p_mean, p_std^2) (EDM, Karras et al. 2022, Table 1 "Training":
//               P_mean = -1.2, P_std = 1.2; MaskDiT train_utils/loss.py EDMLoss uses the same),
//               mapped to model time through the schedule: t = at_sigma_ve(sigma).t, then clamped
//               into [t_min, t_max]. On discrete schedules the (fractional) time from
//               at_sigma_ve (diffusers' _sigma_to_t: linear in log sigma between neighbouring
//               indices) is rounded to the nearest integer index, so t stays a valid training
//               index; the resulting distribution over indices is the log-normal binned onto the
//               schedule's sigma_ve table.
// Randomness: every draw is made in float32 (int64 for discrete uniform) on the generator's own
// device, then moved to the requested device and dtype. A CPU generator therefore gives the same
// times on every device and in float32 and float64 runs (the convention of detail/noise_impl.h).
// log_normal maps the B normals on the host (one device-to-host copy per batch, never .item()
// per example), since NoiseSchedule's time <-> log-SNR maps are host functions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/schedule.h>

namespace diffuse {

struct TimeSamplingOptions {
  /// "uniform" | "log_normal". Default uniform.
  TORCH_ARG(std::string, distribution) = "uniform";
  /// log_normal: mean of ln sigma_ve. Default -1.2 (EDM); any finite value.
  TORCH_ARG(double, p_mean) = -1.2;
  /// log_normal: standard deviation of ln sigma_ve. Default 1.2 (EDM); must be > 0.
  TORCH_ARG(double, p_std) = 1.2;
};

namespace detail {

inline void validate(const TimeSamplingOptions& o) {
  check(o.distribution() == "uniform" || o.distribution() == "log_normal",
        "time sampling: distribution='", o.distribution(), "' is not one of: uniform, log_normal");
  check(std::isfinite(o.p_mean()), "time sampling: p_mean must be finite, got ", o.p_mean());
  check(std::isfinite(o.p_std()) && o.p_std() > 0, "time sampling: p_std must be > 0, got ", o.p_std());
}

/// The float32 (or int64) options of a draw on the generator's device.
inline at::TensorOptions generator_options(const at::Generator& gen, at::ScalarType dtype) {
  return at::TensorOptions().dtype(dtype).device(gen.device());
}

/// Reads and writes the time-sampling keys of an objective's config (distribution is stored
/// under "time_sampling").
inline TimeSamplingOptions read_time_sampling(ConfigReader& r) {
  TimeSamplingOptions o;
  o.distribution(r.get_choice("time_sampling", o.distribution(), {"uniform", "log_normal"}));
  o.p_mean(r.get_double("p_mean", o.p_mean()));
  o.p_std(r.get_double("p_std", o.p_std()));
  return o;
}
inline void write_time_sampling(const TimeSamplingOptions& o, Config& c) {
  c["time_sampling"] = o.distribution();
  c["p_mean"] = format_double(o.p_mean());
  c["p_std"] = format_double(o.p_std());
}

}  // namespace detail

/// B model times for schedule `s`, shape [B], on `options`' device and dtype (a floating dtype).
/// Uses `gen` only (see the file comment for the draw and the device convention).
inline at::Tensor sample_times(const NoiseSchedule& s, int64_t batch, at::Generator& gen,
                               const at::TensorOptions& options, const TimeSamplingOptions& o = {}) {
  detail::validate(o);
  check(batch > 0, "time sampling: batch size must be > 0, got ", batch);
  check(at::isFloatingType(options.dtype().toScalarType()),
        "time sampling: times need a floating dtype, got ", options.dtype());
  const int64_t T = s.num_train_timesteps();
  const double lo = s.t_min(), hi = s.t_max();
  check(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "time sampling: schedule '", s.name(),
        "' has an invalid time range [", lo, ", ", hi, "]");
  at::Tensor t;
  if (o.distribution() == "uniform") {
    if (T > 0) {
      t = at::randint(0, T, {batch}, gen, detail::generator_options(gen, at::kLong));
    } else {
      t = at::rand({batch}, gen, detail::generator_options(gen, at::kFloat)).to(at::kDouble) * (hi - lo) + lo;
    }
  } else {
    const at::Tensor z = at::randn({batch}, gen, detail::generator_options(gen, at::kFloat));
    const at::Tensor zc = z.to(at::kCPU, at::kDouble).contiguous();
    const double* zp = zc.data_ptr<double>();
    std::vector<double> ts(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) {
      const double sigma = std::exp(o.p_mean() + o.p_std() * zp[i]);
      double ti = s.at_sigma_ve(sigma).t;
      if (T > 0) ti = std::round(ti);
      ts[static_cast<size_t>(i)] = std::clamp(ti, lo, hi);
    }
    t = at::tensor(ts, at::TensorOptions().dtype(at::kDouble));
  }
  return t.to(options.device(), options.dtype().toScalarType());
}

}  // namespace diffuse
