// SPDX-License-Identifier: Apache-2.0
// Rectified flow / flow matching (Liu et al. 2022; Lipman et al. 2022; Esser et al. 2024, SD3):
// x_t = (1 - sigma) x0 + sigma eps, sigma in [0, 1], so alpha = 1 - sigma (alpha + sigma = 1, not
// variance preserving). The network is fed t = t_scale * sigma (diffusers' FlowMatch schedulers and
// SD3 / Flux: sigma * 1000; SiT-style models fed sigma itself use t_scale = 1). Pure noise is
// sigma = 1 (alpha = 0, log-SNR -inf); the flow_prediction parameterisation (<diffuse/denoiser.h>)
// predicts the velocity v = eps - x0 = dx/dsigma.
//
// Shift. Flow models are sampled on a warped noise-level axis: a uniform u in (0, 1] becomes
//   static (SD3, diffusers `shift`):           sigma = s u / (1 + (s - 1) u)
//   dynamic (Flux, `use_dynamic_shifting`):    sigma = e^mu / (e^mu + (1/u - 1))    (exponential)
//                                              sigma = mu / (mu + (1/u - 1))        (linear)
// with mu chosen per resolution (flow_dynamic_mu). The shift belongs to the schedule (a model is
// published with its shift: SD3's scheduler config says shift=3.0) and is applied by the spacing
// that picks the grid on the u axis, `flow_match` (<diffuse/schedules/spacing/flow_match.h>), the
// default spacing of this schedule. Spacings that pick model times or sigmas directly (linspace,
// karras, exponential, ...) see the plain sigma axis, as in ComfyUI, where only the sigma range
// changes under a shift. at(t), at_log_snr and the training-side alpha(t)/sigma(t) are unshifted:
// the shift never changes what a noise level means, only where a sampler visits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/schedule.h>

namespace diffuse {

/// The form of the dynamic shift (diffusers' time_shift_type).
enum class FlowTimeShift { exponential, linear };
/// Names of FlowTimeShift ("exponential", "linear").
const EnumNames<FlowTimeShift>& flow_time_shift_names();

struct FlowScheduleOptions {
  /// The network is fed t = t_scale * sigma. Default 1000 (diffusers' num_train_timesteps); > 0.
  TORCH_ARG(double, t_scale) = 1000.0;
  /// Smallest noise level (before shifting) of the u axis: diffusers' 1 / num_train_timesteps.
  /// Default 0.001; in (0, 1).
  TORCH_ARG(double, sigma_min) = 1e-3;
  /// Static shift s (SD3 uses 3). Default 1 (none); finite and > 0.
  TORCH_ARG(double, shift) = 1.0;
  /// Use the dynamic shift with `mu` instead of the static one. Default false.
  TORCH_ARG(bool, use_dynamic_shifting) = false;
  /// mu of the dynamic shift (flow_dynamic_mu gives Flux's value for an image size). Default 0;
  /// finite; > 0 for the linear form.
  TORCH_ARG(double, mu) = 0.0;
  /// Form of the dynamic shift. Default exponential.
  TORCH_ARG(FlowTimeShift, time_shift_type) = FlowTimeShift::exponential;
  /// Stretch a grid so that its last noise level (before the clean point) is this value
  /// (LTX-Video, diffusers `shift_terminal`). Default 0 (off); in [0, 1).
  TORCH_ARG(double, shift_terminal) = 0.0;
};

class FlowSchedule final : public NoiseSchedule {
 public:
  explicit FlowSchedule(FlowScheduleOptions o = {});
  static std::unique_ptr<NoiseSchedule> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "flow"; }
  bool variance_preserving() const override { return false; }
  bool rectified_flow() const override { return true; }

  /// t in [0, t_scale]: sigma = t / t_scale.
  TimePoint at(double t) const override;
  /// sigma = 1 / (1 + e^lambda).
  TimePoint at_log_snr(double lambda) const override;
  TimePoint clean_point() const override { return TimePoint{0.0, 1.0, 0.0}; }
  /// t_scale * sigma_min.
  double t_min() const override { return options.t_scale() * options.sigma_min(); }
  /// t_scale (sigma = 1, pure noise).
  double t_max() const override { return options.t_scale(); }
  Tensor alpha(const Tensor& t) const override;
  Tensor sigma(const Tensor& t) const override;

  /// The point with noise level sigma in [0, 1]: {t_scale * sigma, 1 - sigma, sigma}.
  TimePoint at_sigma(double sigma) const;
  /// The shift of this schedule applied to u in [0, 1] (static or dynamic; 0 and 1 are fixed).
  double shifted(double u) const;

  FlowScheduleOptions options;
};

/// SD3's static shift of a flow noise level u in [0, 1]: s u / (1 + (s - 1) u) (diffusers'
/// formula, evaluated in its order). Used by FlowSchedule::shifted, the flow_match spacing's
/// DPM-Solver rule and the objectives' shifted noise-level densities.
double flow_static_shift(double s, double u);

/// Flux's resolution-dependent mu (diffusers' calculate_shift): the line through
/// (base_seq_len, base_shift) and (max_seq_len, max_shift) evaluated at image_seq_len, the number
/// of latent patches (e.g. (1024/16)^2 = 4096 for a 1024^2 Flux image). Defaults are diffusers'
/// FlowMatchEulerDiscreteScheduler defaults.
double flow_dynamic_mu(int64_t image_seq_len, int64_t base_seq_len = 256,
                       int64_t max_seq_len = 4096, double base_shift = 0.5,
                       double max_shift = 1.15);

}  // namespace diffuse
