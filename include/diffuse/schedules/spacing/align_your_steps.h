// SPDX-License-Identifier: Apache-2.0
// Align Your Steps (Sabour, Fidler, Kreis, ICML 2024): the published optimised 10-step schedules
// and their log-linear interpolation to any step count (methods.md §6.3, §6.4).
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

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

/// The published Align Your Steps tables (methods.md §6.3).
struct AysTables {
  /// SD 1.5 / SDXL timesteps of the scaled_linear schedule (NVIDIA how-to; diffusers AysSchedules).
  static const std::vector<double>& sd15_timesteps() {
    static const std::vector<double> v{999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0};
    return v;
  }
  static const std::vector<double>& sdxl_timesteps() {
    static const std::vector<double> v{999, 845, 730, 587, 443, 310, 193, 116, 53, 13, 0};
    return v;
  }
  /// sigma_ve lists as in ComfyUI's AlignYourStepsScheduler NOISE_LEVELS.
  static const std::vector<double>& sd15_sigmas() {
    static const std::vector<double> v{14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520,
                                       1.8841921177,  1.3943805092, 0.9642583904, 0.6523686016,
                                       0.3977456272,  0.1515232662, 0.0291671582};
    return v;
  }
  static const std::vector<double>& sdxl_sigmas() {
    static const std::vector<double> v{14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769,
                                       1.3405244945,  0.8620721141, 0.5550693289, 0.3798540708,
                                       0.2332364134,  0.1114188177, 0.0291671582};
    return v;
  }
  /// SVD (EDM sigmas), ComfyUI / diffusers.
  static const std::vector<double>& svd_sigmas() {
    static const std::vector<double> v{700.00, 54.5,  15.886, 7.977, 4.248, 1.789,
                                       0.981,  0.403, 0.173,  0.034, 0.002};
    return v;
  }
  /// A1111's rounded copies (modules/sd_schedulers.py).
  static const std::vector<double>& sd15_sigmas_a1111() {
    static const std::vector<double> v{14.615, 6.475, 3.861, 2.697, 1.886, 1.396,
                                       0.963,  0.652, 0.399, 0.152, 0.029};
    return v;
  }
  static const std::vector<double>& sdxl_sigmas_a1111() {
    static const std::vector<double> v{14.615, 6.315, 3.771, 2.181, 1.342, 0.862,
                                       0.555,  0.380, 0.234, 0.113, 0.029};
    return v;
  }
  static const std::vector<std::string>& model_names() {
    static const std::vector<std::string> v{"sd15", "sdxl", "svd"};
    return v;
  }
  /// The sigma list of `model` in `convention` ("comfyui" or "a1111").
  static const std::vector<double>& sigmas(const std::string& model,
                                           const std::string& convention = "comfyui") {
    const bool a1111 = convention == "a1111";
    if (model == "sd15") return a1111 ? sd15_sigmas_a1111() : sd15_sigmas();
    if (model == "sdxl") return a1111 ? sdxl_sigmas_a1111() : sdxl_sigmas();
    if (model == "svd") return svd_sigmas();
    throw Error("align_your_steps: unknown model '" + model +
                "'; valid: " + detail::join(model_names()));
  }
};

/// Checks a noise-level list for log-linear interpolation: >= 2 values, finite, > 0, strictly
/// descending. `who` names the caller in the error.
inline void check_ays_sigmas(const std::vector<double>& sg, const std::string& who) {
  check(sg.size() >= 2, who, ": needs at least 2 sigmas, got ", sg.size());
  for (size_t i = 0; i < sg.size(); ++i) {
    check(std::isfinite(sg[i]) && sg[i] > 0, who, ": sigmas[", i, "]=", sg[i],
          " must be finite and > 0 (log-linear interpolation; the final 0 is added by the "
          "convention)");
    if (i > 0)
      check(sg[i] < sg[i - 1], who, ": sigmas must be strictly descending, but sigmas[", i,
            "]=", sg[i], " >= sigmas[", i - 1, "]=", sg[i - 1]);
  }
}

/// ComfyUI/A1111 loglinear_interp: `sigmas` (descending, > 0) resampled to `m` values, piecewise
/// linear in log sigma against an equally spaced index in [0, 1] (numpy.interp), descending.
inline std::vector<double> ays_loglinear_interp(const std::vector<double>& sigmas, int64_t m) {
  check_ays_sigmas(sigmas, "ays_loglinear_interp");
  check(m >= 1 && m <= kMaxNumSteps + 1, "ays_loglinear_interp: m must be in [1, ",
        kMaxNumSteps + 1, "], got ", m);
  const auto len = static_cast<int64_t>(sigmas.size());
  std::vector<double> ys(sigmas.size());  // ascending: log of the reversed list
  for (int64_t i = 0; i < len; ++i) ys[i] = std::log(sigmas[len - 1 - i]);
  const std::vector<double> xs = detail::np_linspace(0.0, 1.0, len),
                            nx = detail::np_linspace(0.0, 1.0, m);
  std::vector<double> out(static_cast<size_t>(m));
  for (int64_t j = 0; j < m; ++j) {
    const double x = nx[j];
    double y;
    if (x >= xs[len - 1]) {
      y = ys[len - 1];
    } else {
      int64_t k = 0;
      while (k + 2 < len && x >= xs[k + 1]) ++k;
      const double slope = (ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k]);
      y = slope * (x - xs[k]) + ys[k];
    }
    out[m - 1 - j] = std::exp(y);
  }
  return out;
}

/// ComfyUI AlignYourStepsScheduler.get_sigmas: the sigma_ve list for `steps` (its last value 0).
/// denoise < 1 keeps the last round(steps * denoise) + 1 values (Python's round: half to even);
/// denoise <= 0 gives an empty list.
inline std::vector<double> ays_sigmas_comfyui(const std::vector<double>& table, int64_t steps,
                                              double denoise = 1.0) {
  detail::check_steps("align_your_steps", steps);
  check(std::isfinite(denoise), "align_your_steps: denoise must be finite, got ", denoise);
  int64_t total = steps;
  if (denoise < 1.0) {
    if (denoise <= 0.0) return {};
    total = static_cast<int64_t>(detail::np_round(static_cast<double>(steps) * denoise));
  }
  std::vector<double> sg = table;
  check_ays_sigmas(sg, "align_your_steps");
  if (steps + 1 != static_cast<int64_t>(sg.size())) sg = ays_loglinear_interp(sg, steps + 1);
  sg.erase(sg.begin(), sg.end() - std::min<int64_t>(total + 1, static_cast<int64_t>(sg.size())));
  sg.back() = 0.0;
  return sg;
}

/// A1111 get_align_your_steps_sigmas: n values (interpolated unless n == len(table)), then 0.
inline std::vector<double> ays_sigmas_a1111(const std::vector<double>& table, int64_t n) {
  detail::check_steps("align_your_steps", n);
  std::vector<double> sg = table;
  check_ays_sigmas(sg, "align_your_steps");
  if (n != static_cast<int64_t>(sg.size())) sg = ays_loglinear_interp(sg, n);
  sg.push_back(0.0);
  return sg;
}

struct AlignYourStepsSpacingOptions {
  /// Published table: "sd15" (default), "sdxl" or "svd". Ignored when `sigmas` is given.
  TORCH_ARG(std::string, model) = "sd15";
  /// A custom descending list of sigma_ve > 0 (any length >= 2, e.g. an optimised schedule from
  /// optimise_schedule()); empty (default): the model's table.
  TORCH_ARG(std::vector<double>, sigmas) = {};
  /// "comfyui" (default) or "a1111" (see the file comment).
  TORCH_ARG(std::string, convention) = "comfyui";
  /// ComfyUI's denoise in (0, 1] (default 1): keep only the last round(n * denoise) steps. comfyui
  /// only.
  TORCH_ARG(double, denoise) = 1.0;
  /// Round discrete model times to integers. Default false (the grid has the listed sigmas
  /// exactly).
  TORCH_ARG(bool, round_t) = false;
};

class AlignYourStepsSpacing final : public TimestepSpacing {
 public:
  explicit AlignYourStepsSpacing(AlignYourStepsSpacingOptions o = {}) : options(std::move(o)) {
    const auto& c = options.convention();
    check(c == "comfyui" || c == "a1111",
          "align_your_steps: convention must be comfyui or a1111, got '", c, "'");
    check(std::isfinite(options.denoise()) && options.denoise() > 0 && options.denoise() <= 1,
          "align_your_steps: denoise must be in (0, 1], got ", options.denoise());
    check(c == "comfyui" || options.denoise() == 1.0,
          "align_your_steps: denoise=", options.denoise(), " needs convention=comfyui");
    if (options.sigmas().empty()) {
      AysTables::sigmas(options.model(), c);  // validates the model name
    } else {
      check_ays_sigmas(options.sigmas(), "align_your_steps");
    }
  }
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "align_your_steps spacing");
    AlignYourStepsSpacingOptions o;
    o.model(r.get_choice("model", o.model(), AysTables::model_names()));
    o.sigmas(r.get_doubles("sigmas"));
    o.convention(r.get_choice("convention", o.convention(), {"comfyui", "a1111"}));
    o.denoise(r.get_double("denoise", o.denoise()));
    o.round_t(r.get_bool("round_t", o.round_t()));
    r.finish();
    return std::make_unique<AlignYourStepsSpacing>(o);
  }
  Config to_config() const override {
    Config c{{"model", options.model()},
             {"convention", options.convention()},
             {"denoise", format_double(options.denoise())},
             {"round_t", detail::bool_str(options.round_t())}};
    if (!options.sigmas().empty()) {
      std::string v;
      for (double s : options.sigmas()) v += (v.empty() ? "" : ";") + format_double(s);
      c["sigmas"] = v;
    }
    return c;
  }
  std::string name() const override { return "align_your_steps"; }

  /// The sigma_ve list this spacing visits for n steps (its last value is 0).
  std::vector<double> sigmas(int64_t n) const {
    const std::vector<double>& table =
        options.sigmas().empty() ? AysTables::sigmas(options.model(), options.convention())
                                 : options.sigmas();
    return options.convention() == "a1111" ? ays_sigmas_a1111(table, n)
                                           : ays_sigmas_comfyui(table, n, options.denoise());
  }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    detail::check_steps("align_your_steps", n);
    const std::vector<double> sg = sigmas(n);
    check(sg.size() >= 2, "align_your_steps: denoise=", options.denoise(), " keeps round(", n,
          " * ", options.denoise(), ") = 0 of the ", n, " steps; raise denoise or num_steps");
    return detail::grid_from_sigmas(s, sg, options.round_t());
  }

  AlignYourStepsSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, AlignYourStepsSpacing, "align_your_steps",
                 "Align Your Steps: published sd15/sdxl/svd schedules or a custom list, log-linear "
                 "interpolation to any step count (ComfyUI or A1111 convention)");
DIFFUSE_REGISTER_ALIAS(::diffuse::TimestepSpacing, ays, "ays", "align_your_steps", {},
                       "alias of align_your_steps");

}  // namespace diffuse
