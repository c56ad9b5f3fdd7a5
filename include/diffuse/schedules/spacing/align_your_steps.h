// SPDX-License-Identifier: Apache-2.0
// Align Your Steps (Sabour, Fidler, Kreis, ICML 2024): the published optimised 10-step schedules
// and their log-linear interpolation to any step count.
// Checked against: ComfyUI comfy_extras/nodes_align_your_steps.py (AlignYourStepsScheduler,
// loglinear_interp), A1111 modules/sd_schedulers.py (get_align_your_steps_sigmas), NVIDIA's
// AYS how-to page (SD1.5 / SDXL timestep lists).
//
// Data. The canonical published lists for SD1.5 and SDXL are integer TIMESTEPS of the Stable
// Diffusion scaled_linear schedule (999, 850, ...); ComfyUI ships the matching sigma_ve values
// (14.6146412293, ...), which are exactly sigma_ve(t) of that schedule at those timesteps (a test
// checks this). SVD's list is EDM sigmas. The 11 values run from sigma_max to sigma_min.
//
// Conventions for `num_steps` = n (option `convention`):
//   comfyui (default): if n + 1 != 11, interpolate the 11 sigmas log-linearly to n + 1 values, then
//     overwrite the LAST value with 0: n model calls at sigma_0..sigma_{n-1}, the last step lands
//     on the clean point and sigma_min itself is never visited. With denoise < 1 only the last
//     round(n * denoise) + 1 values are kept (img2img: the grid then has fewer than n + 1 points).
//   a1111: interpolate the list (A1111's 3-decimal rounded copy for sd15/sdxl) to n values (not
//     n + 1) unless n == 11, then APPEND 0: the model is also called at sigma_min and the last
//     step goes sigma_min -> 0. Note that n = 10 is then NOT the published 10-step table.
// A custom list (option `sigmas`, e.g. the output of optimise_schedule() from
// samplers/corrections/schedule_optimisation.h) replaces the model table and follows the same rule.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>

#include <diffuse/schedule.h>

namespace diffuse {

/// Whose interpolation and rounding of the published tables: ComfyUI's (default) or A1111's.
enum class AysConvention { comfyui, a1111 };
/// Names of AysConvention ("comfyui", "a1111"), for ConfigReader::get_enum and to_config().
const std::vector<std::pair<std::string, AysConvention>>& ays_convention_names();

/// The published Align Your Steps tables.
struct AysTables {
  /// SD 1.5 / SDXL timesteps of the scaled_linear schedule (NVIDIA how-to; diffusers AysSchedules).
  static const std::vector<double>& sd15_timesteps();
  static const std::vector<double>& sdxl_timesteps();
  /// sigma_ve lists as in ComfyUI's AlignYourStepsScheduler NOISE_LEVELS.
  static const std::vector<double>& sd15_sigmas();
  static const std::vector<double>& sdxl_sigmas();
  /// SVD (EDM sigmas), ComfyUI / diffusers.
  static const std::vector<double>& svd_sigmas();
  /// A1111's rounded copies (modules/sd_schedulers.py).
  static const std::vector<double>& sd15_sigmas_a1111();
  static const std::vector<double>& sdxl_sigmas_a1111();
  static const std::vector<std::string>& model_names();
  /// The sigma list of `model` in `convention`.
  static const std::vector<double>& sigmas(const std::string& model,
                                           AysConvention convention = AysConvention::comfyui);
};

/// Checks a noise-level list for log-linear interpolation: >= 2 values, finite, > 0, strictly
/// descending. `who` names the caller in the error.
void check_ays_sigmas(const std::vector<double>& sg, const std::string& who);

/// ComfyUI/A1111 loglinear_interp: `sigmas` (descending, > 0) resampled to `m` values, piecewise
/// linear in log sigma against an equally spaced index in [0, 1] (numpy.interp), descending.
std::vector<double> ays_loglinear_interp(const std::vector<double>& sigmas, int64_t m);

/// ComfyUI AlignYourStepsScheduler.get_sigmas: the sigma_ve list for `steps` (its last value 0).
/// denoise < 1 keeps the last round(steps * denoise) + 1 values (Python's round: half to even);
/// denoise <= 0 gives an empty list.
std::vector<double> ays_sigmas_comfyui(const std::vector<double>& table, int64_t steps,
                                       double denoise = 1.0);

/// A1111 get_align_your_steps_sigmas: n values (interpolated unless n == len(table)), then 0.
std::vector<double> ays_sigmas_a1111(const std::vector<double>& table, int64_t n);

struct AlignYourStepsSpacingOptions {
  /// Published table: "sd15" (default), "sdxl" or "svd". Ignored when `sigmas` is given.
  TORCH_ARG(std::string, model) = "sd15";
  /// A custom descending list of sigma_ve > 0 (any length >= 2, e.g. an optimised schedule from
  /// optimise_schedule()); empty (default): the model's table.
  TORCH_ARG(std::vector<double>, sigmas) = {};
  /// comfyui (default) or a1111 (see the file comment).
  TORCH_ARG(AysConvention, convention) = AysConvention::comfyui;
  /// ComfyUI's denoise in (0, 1] (default 1): keep only the last round(n * denoise) steps. comfyui
  /// only.
  TORCH_ARG(double, denoise) = 1.0;
  /// Round discrete model times to integers. Default false (the grid has the listed sigmas
  /// exactly).
  TORCH_ARG(bool, round_t) = false;
};

class AlignYourStepsSpacing final : public TimestepSpacing {
 public:
  explicit AlignYourStepsSpacing(AlignYourStepsSpacingOptions o = {});
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "align_your_steps"; }

  /// The sigma_ve list this spacing visits for n steps (its last value is 0).
  std::vector<double> sigmas(int64_t n) const;

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override;

  AlignYourStepsSpacingOptions options;
};

}  // namespace diffuse
