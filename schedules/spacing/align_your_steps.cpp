// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/align_your_steps.h>.
#include <diffuse/schedules/spacing/align_your_steps.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

const std::vector<double>& AysTables::sd15_timesteps() {
  static const std::vector<double> v{999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0};
  return v;
}

const std::vector<double>& AysTables::sdxl_timesteps() {
  static const std::vector<double> v{999, 845, 730, 587, 443, 310, 193, 116, 53, 13, 0};
  return v;
}

const std::vector<double>& AysTables::sd15_sigmas() {
  static const std::vector<double> v{14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520,
                                     1.8841921177,  1.3943805092, 0.9642583904, 0.6523686016,
                                     0.3977456272,  0.1515232662, 0.0291671582};
  return v;
}

const std::vector<double>& AysTables::sdxl_sigmas() {
  static const std::vector<double> v{14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769,
                                     1.3405244945,  0.8620721141, 0.5550693289, 0.3798540708,
                                     0.2332364134,  0.1114188177, 0.0291671582};
  return v;
}

const std::vector<double>& AysTables::svd_sigmas() {
  static const std::vector<double> v{700.00, 54.5,  15.886, 7.977, 4.248, 1.789,
                                     0.981,  0.403, 0.173,  0.034, 0.002};
  return v;
}

const std::vector<double>& AysTables::sd15_sigmas_a1111() {
  static const std::vector<double> v{14.615, 6.475, 3.861, 2.697, 1.886, 1.396,
                                     0.963,  0.652, 0.399, 0.152, 0.029};
  return v;
}

const std::vector<double>& AysTables::sdxl_sigmas_a1111() {
  static const std::vector<double> v{14.615, 6.315, 3.771, 2.181, 1.342, 0.862,
                                     0.555,  0.380, 0.234, 0.113, 0.029};
  return v;
}

const std::vector<std::string>& AysTables::model_names() {
  static const std::vector<std::string> v{"sd15", "sdxl", "svd"};
  return v;
}

const std::vector<std::pair<std::string, AysConvention>>& ays_convention_names() {
  static const std::vector<std::pair<std::string, AysConvention>> names = {
      {"comfyui", AysConvention::comfyui}, {"a1111", AysConvention::a1111}};
  return names;
}

const std::vector<double>& AysTables::sigmas(const std::string& model, AysConvention convention) {
  const bool a1111 = convention == AysConvention::a1111;
  if (model == "sd15") return a1111 ? sd15_sigmas_a1111() : sd15_sigmas();
  if (model == "sdxl") return a1111 ? sdxl_sigmas_a1111() : sdxl_sigmas();
  if (model == "svd") return svd_sigmas();
  throw ConfigError("align_your_steps: unknown model '" + model +
                    "'; valid: " + detail::join(model_names()));
}

void check_ays_sigmas(const std::vector<double>& sg, const std::string& who) {
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

std::vector<double> ays_loglinear_interp(const std::vector<double>& sigmas, int64_t m) {
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

std::vector<double> ays_sigmas_comfyui(const std::vector<double>& table, int64_t steps,
                                       double denoise) {
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

std::vector<double> ays_sigmas_a1111(const std::vector<double>& table, int64_t n) {
  detail::check_steps("align_your_steps", n);
  std::vector<double> sg = table;
  check_ays_sigmas(sg, "align_your_steps");
  if (n != static_cast<int64_t>(sg.size())) sg = ays_loglinear_interp(sg, n);
  sg.push_back(0.0);
  return sg;
}

AlignYourStepsSpacing::AlignYourStepsSpacing(AlignYourStepsSpacingOptions o)
    : options(std::move(o)) {
  const AysConvention c = options.convention();
  check_enum(c, ays_convention_names(), "align_your_steps: convention");
  check(std::isfinite(options.denoise()) && options.denoise() > 0 && options.denoise() <= 1,
        "align_your_steps: denoise must be in (0, 1], got ", options.denoise());
  check(c == AysConvention::comfyui || options.denoise() == 1.0,
        "align_your_steps: denoise=", options.denoise(), " needs convention=comfyui");
  if (options.sigmas().empty()) {
    AysTables::sigmas(options.model(), c);  // validates the model name
  } else {
    check_ays_sigmas(options.sigmas(), "align_your_steps");
  }
}

std::unique_ptr<TimestepSpacing> AlignYourStepsSpacing::from_config(const Config& c) {
  ConfigReader r(c, "align_your_steps spacing");
  AlignYourStepsSpacingOptions o;
  o.model(r.get_choice("model", o.model(), AysTables::model_names()));
  o.sigmas(r.get_doubles("sigmas"));
  o.convention(r.get_enum("convention", o.convention(), ays_convention_names()));
  o.denoise(r.get_double("denoise", o.denoise()));
  o.round_t(r.get_bool("round_t", o.round_t()));
  r.finish();
  return std::make_unique<AlignYourStepsSpacing>(o);
}

Config AlignYourStepsSpacing::to_config() const {
  Config c{{"model", options.model()},
           {"convention", enum_name(options.convention(), ays_convention_names())},
           {"denoise", format_double(options.denoise())},
           {"round_t", detail::bool_str(options.round_t())}};
  if (!options.sigmas().empty()) {
    std::string v;
    for (double s : options.sigmas()) v += (v.empty() ? "" : ";") + format_double(s);
    c["sigmas"] = v;
  }
  return c;
}

std::vector<double> AlignYourStepsSpacing::sigmas(int64_t n) const {
  const std::vector<double>& table = options.sigmas().empty()
                                         ? AysTables::sigmas(options.model(), options.convention())
                                         : options.sigmas();
  return options.convention() == AysConvention::a1111
             ? ays_sigmas_a1111(table, n)
             : ays_sigmas_comfyui(table, n, options.denoise());
}

TimeGrid AlignYourStepsSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  detail::check_steps("align_your_steps", n);
  const std::vector<double> sg = sigmas(n);
  check(sg.size() >= 2, "align_your_steps: denoise=", options.denoise(), " keeps round(", n, " * ",
        options.denoise(), ") = 0 of the ", n, " steps; raise denoise or num_steps");
  return detail::grid_from_sigmas(s, sg, options.round_t());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, AlignYourStepsSpacing, "align_your_steps",
                 "Align Your Steps: published sd15/sdxl/svd schedules or a custom list, log-linear "
                 "interpolation to any step count (ComfyUI or A1111 convention)");
DIFFUSE_REGISTER_ALIAS(::diffuse::TimestepSpacing, ays, "ays", "align_your_steps", {},
                       "alias of align_your_steps");

}  // namespace diffuse
