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
//   logit_normal  (SD3, Esser et al. 2024, Sec. 3.1; diffusers
//   compute_density_for_timestep_sampling)
//               tau = sigmoid(logit_mean + logit_std z), z ~ N(0, 1), defaults 0 and 1;
//   mode        (SD3 "mode sampling with heavy tails") tau = 1 - u - mode_scale (cos^2(pi u / 2) -
//               1 + u), u ~ U[0, 1), default scale 1.29, valid in [-1, 2 / (pi - 2)].
//               tau is the flow noise level: on the flow schedule t = t_scale tau; on any other
//               schedule the time with the same log-SNR, lambda = log((1 - tau) / tau) (a VP point
//               with sigma / (alpha + sigma) = tau), rounded on discrete schedules, clamped into
//               [t_min, t_max]. `shift` (default 1: none) first warps tau like the flow schedule's
//               static shift, tau' = s tau / (1 + (s - 1) tau) (SD3 trains at higher resolutions
//               with a shifted density).
// Randomness: every draw is made in float32 (int64 for discrete uniform) on the generator's own
// device, then moved to the requested device and dtype. A CPU generator therefore gives the same
// times on every device and in float32 and float64 runs (the convention of src/noise.cpp).
// log_normal maps the B normals on the host (one device-to-host copy per batch, never .item()
// per example), since NoiseSchedule's time <-> log-SNR maps are host functions.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Generator.h>
#include <c10/core/TensorOptions.h>
#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/tensor.h>

namespace diffuse {
class NoiseSchedule;
}  // namespace diffuse

namespace diffuse {

/// How training times are drawn (config key "time_sampling"; see the file comment).
enum class TimeDistribution { uniform, log_normal, logit_normal, mode };
/// Names of TimeDistribution ("uniform", "log_normal", "logit_normal", "mode").
const std::vector<std::pair<std::string, TimeDistribution>>& time_distribution_names();

struct TimeSamplingOptions {
  /// uniform | log_normal. Default uniform.
  TORCH_ARG(TimeDistribution, distribution) = TimeDistribution::uniform;
  /// log_normal: mean of ln sigma_ve. Default -1.2 (EDM); any finite value.
  TORCH_ARG(double, p_mean) = -1.2;
  /// log_normal: standard deviation of ln sigma_ve. Default 1.2 (EDM); must be > 0.
  TORCH_ARG(double, p_std) = 1.2;
  /// logit_normal: mean and standard deviation of logit(tau). Defaults 0 and 1 (SD3); finite,
  /// std > 0.
  TORCH_ARG(double, logit_mean) = 0.0;
  TORCH_ARG(double, logit_std) = 1.0;
  /// mode: the scale s. Default 1.29 (SD3's best); in [-1, 2 / (pi - 2)].
  TORCH_ARG(double, mode_scale) = 1.29;
  /// logit_normal / mode: the static shift of tau. Default 1 (none); finite, > 0.
  TORCH_ARG(double, shift) = 1.0;
};

namespace detail {

void validate(const TimeSamplingOptions& o);

/// The float32 (or int64) options of a draw on the generator's device.
at::TensorOptions generator_options(const at::Generator& gen, at::ScalarType dtype);

/// Reads and writes the time-sampling keys of an objective's config (distribution is stored
/// under "time_sampling").
TimeSamplingOptions read_time_sampling(ConfigReader& r);
void write_time_sampling(const TimeSamplingOptions& o, Config& c);

}  // namespace detail

/// B model times for schedule `s`, shape [B], on `options`' device and dtype (a floating dtype).
/// Uses `gen` only (see the file comment for the draw and the device convention).
at::Tensor sample_times(const NoiseSchedule& s, int64_t batch, at::Generator& gen,
                        const at::TensorOptions& options, const TimeSamplingOptions& o = {});

}  // namespace diffuse
