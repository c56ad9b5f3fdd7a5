// SPDX-License-Identifier: Apache-2.0
// from_diffusers(): diffusers' scheduler classes and configs mapped onto diffuse's schedule,
// spacing, sampler and denoiser options (checked against diffusers 58eb52c; see the header).
#include <diffuse/diffusers.h>

#include <cmath>
#include <limits>
#include <utility>

#include <diffuse/detail/aten.h>
#include <diffuse/schedules/detail/betas.h>
#include <diffuse/schedules/discrete.h>
#include <diffuse/schedules/edm.h>
#include <diffuse/schedules/flow.h>
#include <diffuse/schedules/spacing/flow_match.h>

namespace diffuse {

std::vector<std::string> diffusers_scheduler_classes() {
  return {"DDPMScheduler",
          "DDIMScheduler",
          "DPMSolverMultistepScheduler",
          "DPMSolverSinglestepScheduler",
          "UniPCMultistepScheduler",
          "DEISMultistepScheduler",
          "EulerDiscreteScheduler",
          "EulerAncestralDiscreteScheduler",
          "HeunDiscreteScheduler",
          "PNDMScheduler",
          "LMSDiscreteScheduler",
          "KDPM2DiscreteScheduler",
          "KDPM2AncestralDiscreteScheduler",
          "LCMScheduler",
          "TCDScheduler",
          "EDMEulerScheduler",
          "EDMDPMSolverMultistepScheduler",
          "FlowMatchEulerDiscreteScheduler",
          "FlowMatchHeunDiscreteScheduler"};
}

namespace {

using detail::cat;
using detail::join;

class DiffusersConfig {
 public:
  DiffusersConfig(const std::string& cls, const Config& c, bool strict)
      : cls_(cls), r_(filtered_, cls) {
    for (const auto& kv : c)
      if (kv.first.empty() || kv.first[0] != '_') filtered_[kv.first] = kv.second;
    strict_ = strict;
  }
  ConfigReader& r() { return r_; }
  /// Keys diffusers has but diffuse does not implement: an error unless at their default value.
  void reject_unless(const std::string& key, const std::string& dflt, const std::string& why) {
    if (!r_.has(key)) return;
    const std::string v = filtered_.at(key);
    if (v == dflt) return;
    throw ConfigError(cat(cls_, ": ", key, "=", v, " is not supported (", why, ")"));
  }
  void finish() {
    if (strict_) r_.finish();
  }

 private:
  std::string cls_;
  Config filtered_;
  ConfigReader r_;
  bool strict_ = true;
};

std::shared_ptr<const NoiseSchedule> diffusers_schedule(
    DiffusersConfig& dc, double beta_start, double beta_end, bool has_zero_snr, bool clamp_terminal,
    BetaSchedule beta_schedule = BetaSchedule::linear) {
  auto& r = dc.r();
  DiscreteScheduleOptions o;
  o.num_train_timesteps(r.get_int("num_train_timesteps", 1000));
  o.beta_start(r.get_double("beta_start", beta_start));
  o.beta_end(r.get_double("beta_end", beta_end));
  o.beta_schedule(r.get_enum("beta_schedule", beta_schedule, beta_schedule_names()));
  o.trained_betas(r.get_doubles("trained_betas"));
  if (has_zero_snr) {
    o.rescale_betas_zero_snr(r.get_bool("rescale_betas_zero_snr", false));
    // diffusers' Euler / Euler ancestral / DPM-Solver multistep keep sigma finite this way.
    if (o.rescale_betas_zero_snr() && clamp_terminal)
      o.terminal_alphas_cumprod(std::ldexp(1.0, -24));
  }
  return std::make_shared<DiscreteSchedule>(o);
}

/// The dynamic-thresholding keys alone (schedulers whose prediction_type is read elsewhere).
void diffusers_prediction_threshold(DiffusersConfig& dc, DenoiserOptions& d) {
  auto& r = dc.r();
  d.thresholding = r.get_bool("thresholding", false);
  d.dynamic_thresholding_ratio = r.get_double("dynamic_thresholding_ratio", 0.995);
  d.sample_max_value = r.get_double("sample_max_value", 1.0);
}

void diffusers_prediction(DiffusersConfig& dc, DenoiserOptions& d, bool has_clip, bool clip_default,
                          bool has_threshold, bool has_flow = false) {
  auto& r = dc.r();
  std::vector<std::string> types{"epsilon", "v_prediction", "sample"};
  if (has_flow) types.push_back("flow_prediction");
  d.prediction_type = parse_parameterization(r.get_choice("prediction_type", "epsilon", types));
  if (has_clip) {
    d.clip_sample = r.get_bool("clip_sample", clip_default);
    d.clip_sample_range = r.get_double("clip_sample_range", 1.0);
  }
  if (has_threshold) diffusers_prediction_threshold(dc, d);
}

/// prediction_type of the classes whose step() takes epsilon or v_prediction only (diffusers
/// raises for sample there).
Parameterization diffusers_prediction_eps_or_v(DiffusersConfig& dc, const std::string& cls,
                                               const char* why) {
  const std::string pred =
      dc.r().get_choice("prediction_type", "epsilon", {"epsilon", "v_prediction", "sample"});
  check(pred != "sample", cls, ": prediction_type=sample is not supported (", why, ")");
  return parse_parameterization(pred);
}

/// timestep_spacing for the DDPM/DDIM/Euler family: n times including t = 0.
std::shared_ptr<const TimestepSpacing> diffusers_spacing_n(DiffusersConfig& dc,
                                                           const std::string& dflt, bool round,
                                                           const std::string& final_kind) {
  auto& r = dc.r();
  const std::string kind =
      r.get_choice("timestep_spacing", dflt, {"linspace", "leading", "trailing"});
  const int64_t offset = r.get_int("steps_offset", 0);
  Config c{{"final", final_kind}};
  if (kind == "linspace") {
    c["round"] = round ? "true" : "false";
  } else if (kind == "leading") {
    c["steps_offset"] = std::to_string(offset);
  }
  return make_spacing(kind, c);
}

std::string dc_name(const DiffusersConfig&) { return "diffusers config: "; }

/// Sigma-type overrides (karras / exponential / lu / beta) shared by DPM-Solver, Euler and Heun.
/// integer_t: the scheduler casts its model times to int64 (DPM-Solver), which truncates them;
/// round_t: it rounds the Karras and lu times first (DPM-Solver except multistep on the cosine
/// schedule).
std::shared_ptr<const TimestepSpacing> diffusers_sigma_spacing(
    DiffusersConfig& dc, bool has_lu, bool integer_t, bool round_t, const std::string& final_kind,
    double sigma_min, double sigma_max, const std::string& range = "schedule",
    int64_t range_steps_offset = 0) {
  auto& r = dc.r();
  const bool karras = r.get_bool("use_karras_sigmas", false);
  const bool expo = r.get_bool("use_exponential_sigmas", false);
  const bool lu = has_lu && r.get_bool("use_lu_lambdas", false);
  const bool beta = r.get_bool("use_beta_sigmas", false);
  dc.reject_unless("use_flow_sigmas", "false", "flow sigmas are not implemented");
  check(int(karras) + int(expo) + int(lu) + int(beta) <= 1, dc_name(dc),
        "only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas",
        has_lu ? ", use_lu_lambdas" : "", " may be true");
  Config c{{"final", final_kind},
           {"sigma_min", format_double(sigma_min)},
           {"sigma_max", format_double(sigma_max)}};
  if (range != "schedule") {
    c["range"] = range;
    c["range_steps_offset"] = std::to_string(range_steps_offset);
  }
  const bool rounds = (karras || lu) && round_t;
  c["round_t"] = rounds ? "true" : "false";
  if (integer_t && !rounds) c["trunc_t"] = "true";
  if (karras) return make_spacing("karras", c);
  if (lu || expo) return make_spacing("exponential", c);
  if (beta) return make_spacing("beta", c);
  return nullptr;
}

/// The grid and init_noise_sigma of the Euler family (Euler, Euler a, Heun, LMS, KDPM2): the
/// timestep spacing, or with sigma_overrides a Karras / exponential / beta override over the
/// spacing's sigma range (the spacings' range option); init_noise_sigma is sigma_max for linspace /
/// trailing and sqrt(sigma_max^2 + 1) for leading. log_linear (Euler's
/// interpolation_type="log_linear"): the log_linear spacing, and an override over the schedule's
/// range (the log-linear sigmas keep its ends).
void diffusers_euler_family_grid(DiffusersConfig& dc, DiffusersScheduler& out, bool sigma_overrides,
                                 bool round_t, const std::string& final_kind, double smin,
                                 double smax, bool log_linear = false) {
  auto& r = dc.r();
  const std::string kind =
      r.get_choice("timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
  const int64_t offset = r.get_int("steps_offset", 0);
  out.init_noise_is_sigma_max = kind != "leading";
  if (sigma_overrides) {
    // The sigmas are interpolated at the spacing's timesteps first, so a Karras / exponential /
    // beta override takes its range from them (linspace: the schedule's own).
    const bool own = kind == "linspace" || log_linear;
    out.spacing =
        diffusers_sigma_spacing(dc, false, false, round_t, final_kind, smin, smax,
                                own ? "schedule" : kind, !own && kind == "leading" ? offset : 0);
  }
  if (out.spacing) return;
  if (log_linear) {
    out.spacing = make_spacing(
        "log_linear",
        {{"spacing", kind}, {"steps_offset", std::to_string(kind == "leading" ? offset : 0)}});
  } else {
    out.spacing = diffusers_spacing_n(dc, "linspace", false, final_kind);
  }
}

/// A float key that diffusers allows to be None: NaN when absent or None.
double optional_double(DiffusersConfig& dc, const Config& config, const std::string& key) {
  auto& r = dc.r();
  if (!r.has(key) || config.at(key) == "None") return std::nan("");
  return r.get_double(key, 0.0);
}

/// The flow schedule of a flow-matching config: t_scale = num_train_timesteps, sigma_min =
/// 1 / num_train_timesteps, the static shift from `shift_key`, the dynamic shift with the
/// pipeline's mu (the "mu" key: set_timesteps' argument).
/// The static part every flow class shares: t_scale and sigma_min from num_train_timesteps, the
/// shift from `shift_key`.
FlowScheduleOptions diffusers_flow_base(DiffusersConfig& dc, const std::string& shift_key) {
  auto& r = dc.r();
  const int64_t n = r.get_int("num_train_timesteps", 1000);
  check(n >= 2 && n <= detail::kMaxTrainTimesteps, dc_name(dc),
        "num_train_timesteps must be in [2, ", detail::kMaxTrainTimesteps, "], got ", n);
  FlowScheduleOptions fo;
  fo.t_scale(static_cast<double>(n)).sigma_min(1.0 / static_cast<double>(n));
  fo.shift(r.get_double(shift_key, 1.0));
  return fo;
}

FlowScheduleOptions diffusers_flow_options(DiffusersConfig& dc, const Config& config,
                                           const std::string& shift_key, bool linear_shift) {
  auto& r = dc.r();
  FlowScheduleOptions fo = diffusers_flow_base(dc, shift_key);
  fo.use_dynamic_shifting(r.get_bool("use_dynamic_shifting", false));
  fo.time_shift_type(r.get_enum(
      "time_shift_type", FlowTimeShift::exponential,
      linear_shift ? flow_time_shift_names()
                   : EnumNames<FlowTimeShift>{{"exponential", FlowTimeShift::exponential}}));
  const double mu = optional_double(dc, config, "mu");
  if (fo.use_dynamic_shifting()) {
    check(!std::isnan(mu), dc_name(dc),
          "use_dynamic_shifting=true needs mu (the pipeline's set_timesteps(mu=...); "
          "flow_dynamic_mu() computes Flux's from the image sequence length)");
    fo.mu(mu);
  } else {
    check(std::isnan(mu), dc_name(dc), "mu=", mu,
          " is only used with use_dynamic_shifting=true (diffusers would ignore it)");
  }
  return fo;
}

/// The flow schedule of the multistep solvers' use_flow_sigmas branch (DPM-Solver, UniPC): it
/// ignores the betas and the timestep_spacing, which are read and dropped here.
std::shared_ptr<const NoiseSchedule> diffusers_multistep_flow_schedule(
    DiffusersConfig& dc, const Config& config, double shift_terminal = std::nan("")) {
  auto& r = dc.r();
  for (const char* k : {"beta_start", "beta_end", "rescale_betas_zero_snr"})
    if (r.has(k)) (void)r.get_string(k, "");
  (void)r.get_enum("beta_schedule", BetaSchedule::linear, beta_schedule_names());
  (void)r.get_doubles("trained_betas");
  (void)r.get_choice("timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
  (void)r.get_int("steps_offset", 0);
  FlowScheduleOptions fo = diffusers_flow_options(dc, config, "flow_shift", /*linear_shift=*/false);
  if (!std::isnan(shift_terminal)) fo.shift_terminal(shift_terminal);
  return std::make_shared<FlowSchedule>(fo);
}

/// The multistep solvers' flow grid (DPM-Solver's or UniPC's rule), times sigma * T cast to
/// int64; no Karras / exponential / beta / lu override.
std::shared_ptr<const TimestepSpacing> diffusers_multistep_flow_spacing(
    DiffusersConfig& dc, FlowMatchRule rule, FinalPoint final = FinalPoint::kZero) {
  for (const char* k :
       {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas"})
    dc.reject_unless(k, "false", "it replaces the flow sigmas in diffusers' set_timesteps");
  FlowMatchSpacingOptions so;
  so.rule(rule);
  so.final(final);
  return std::make_shared<FlowMatchSpacing>(so);
}

/// timestep_spacing of the multistep solvers (DPM-Solver multistep, UniPC, DEIS): n times
/// without t = 0 for linspace / leading; lambda_min drops the noisiest training steps
/// (DPM-Solver's lambda_min_clipped; -inf: none).
std::shared_ptr<const TimestepSpacing> diffusers_multistep_spacing(DiffusersConfig& dc,
                                                                   const std::string& final_kind,
                                                                   double lambda_min) {
  auto& r = dc.r();
  const std::string kind =
      r.get_choice("timestep_spacing", "linspace", {"linspace", "leading", "trailing"});
  const int64_t offset = r.get_int("steps_offset", 0);
  Config c{{"final", final_kind}};
  if (kind != "trailing") c["include_t_min"] = "false";
  if (kind == "leading") c["steps_offset"] = std::to_string(offset);
  if (std::isfinite(lambda_min)) {
    // diffusers' trailing then starts at the last kept step but keeps the stride T / n, so it
    // returns fewer steps than asked.
    check(kind != "trailing", dc_name(dc), "lambda_min_clipped=", format_double(lambda_min),
          " with timestep_spacing=trailing is not supported (diffusers returns fewer steps than "
          "asked there)");
    c["lambda_min"] = format_double(lambda_min);
  }
  return make_spacing(kind, c);
}

/// final_sigmas_type: "zero" (default) or "sigma_min", as the spacings' `final` value.
std::string diffusers_final_kind(DiffusersConfig& dc) {
  return dc.r().get_choice("final_sigmas_type", "zero", {"zero", "sigma_min"}) == "sigma_min"
             ? "min"
             : "zero";
}

/// sigma_min / sigma_max of the sigma-type grids (None or absent: 0, the schedule's own ends).
std::pair<double, double> diffusers_sigma_range(DiffusersConfig& dc, const Config& config) {
  const double lo = optional_double(dc, config, "sigma_min");
  const double hi = optional_double(dc, config, "sigma_max");
  return {std::isnan(lo) ? 0.0 : lo, std::isnan(hi) ? 0.0 : hi};
}

/// The flow-sigma keys of a discrete-only mapping: refused unless at their defaults.
void reject_flow_keys(DiffusersConfig& dc, const std::string& cls) {
  auto& r = dc.r();
  dc.reject_unless("use_dynamic_shifting", "false", "dynamic shifting is for flow models");
  dc.reject_unless("time_shift_type", "exponential", "time shifts are for flow models");
  const double flow_shift = r.get_double("flow_shift", 1.0);
  check(flow_shift == 1.0, cls, ": flow_shift=", flow_shift, " needs use_flow_sigmas=true");
}

}  // namespace

TimeGrid DiffusersScheduler::grid(int64_t num_steps) const {
  return spacing->grid(*schedule, num_steps);
}

Denoiser DiffusersScheduler::denoiser(Network net) const {
  return Denoiser(std::move(net), denoiser_options);
}

Tensor DiffusersScheduler::initial_state(const Tensor& noise, int64_t num_steps) const {
  if (init_noise_is_one) return noise.clone();
  // Variance-preserving schedules with init_noise_sigma = 1 start from the noise itself
  // (sqrt(alpha^2 + sigma^2) can be 1 - 1 ulp there).
  if (!init_noise_is_sigma_max && schedule->variance_preserving()) return noise.clone();
  const TimePoint first = grid(num_steps).front();
  if (!init_noise_is_sigma_max)
    return noise * std::sqrt(first.alpha * first.alpha + first.sigma * first.sigma);
  return noise * (first.sigma_ve() * first.alpha);
}

SampleOptions DiffusersScheduler::sample_options(int64_t num_steps) const {
  SampleOptions o;
  o.num_steps = num_steps;
  o.spacing = spacing;
  return o;
}

DiffusersScheduler from_diffusers(const std::string& cls, const Config& config, bool strict) {
  DiffusersConfig dc(cls, config, strict);
  auto& r = dc.r();
  DiffusersScheduler out;
  out.class_name = cls;

  if (cls == "DDPMScheduler") {
    out.schedule = diffusers_schedule(dc, 1e-4, 0.02, true, false);
    diffusers_prediction(dc, out.denoiser_options, true, true, true);
    const std::string var = r.get_choice("variance_type", "fixed_small",
                                         {"fixed_small", "fixed_small_log", "fixed_large",
                                          "fixed_large_log", "learned", "learned_range"});
    check(var.rfind("learned", 0) != 0, cls, ": variance_type=", var,
          " (learned variances) is not supported");
    check(var != "fixed_large_log", cls,
          ": variance_type=fixed_large_log is not supported (diffusers' own step",
          " takes the square root of a negative log there and returns NaN)");
    out.spacing = diffusers_spacing_n(dc, "leading", true, "zero");
    out.sampler = make_sampler("ddpm", {{"variance_type", var}, {"diffusers_final_noise", "true"}});
  } else if (cls == "DDIMScheduler") {
    out.schedule = diffusers_schedule(dc, 1e-4, 0.02, true, false);
    diffusers_prediction(dc, out.denoiser_options, true, true, true);
    const bool one = r.get_bool("set_alpha_to_one", true);
    out.spacing = diffusers_spacing_n(dc, "leading", true, one ? "zero" : "min");
    const double eta = r.get_double("eta", 0.0);
    out.sampler =
        make_sampler("ddim", {{"eta", format_double(eta)}, {"prev_timestep", "train_stride"}});
  } else if (cls == "DPMSolverMultistepScheduler" || cls == "DPMSolverSinglestepScheduler") {
    const bool multi = cls == "DPMSolverMultistepScheduler";
    const bool flow = r.get_bool("use_flow_sigmas", false);
    if (flow) {
      out.schedule = diffusers_multistep_flow_schedule(dc, config);
      out.init_noise_is_one = true;
    } else {
      out.schedule = diffusers_schedule(dc, 1e-4, 0.02, multi, true);
    }
    diffusers_prediction(dc, out.denoiser_options, false, false, true, /*has_flow=*/true);
    const int64_t order = r.get_int("solver_order", 2);
    const std::string algo =
        r.get_choice("algorithm_type", "dpmsolver++",
                     {"dpmsolver++", "sde-dpmsolver++", "dpmsolver", "sde-dpmsolver"});
    check(algo == "dpmsolver++" || algo == "dpmsolver" || (multi && algo != "sde-dpmsolver"), cls,
          ": algorithm_type=", algo, " is not supported (diffuse implements dpmsolver++",
          multi ? ", sde-dpmsolver++ and dpmsolver" : " and dpmsolver", ")");
    check(algo != "dpmsolver" || out.denoiser_options.prediction_type != Parameterization::kFlow,
          cls, ": algorithm_type=dpmsolver takes no flow_prediction (diffusers refuses it too)");
    const std::string solver_type = r.get_choice("solver_type", "midpoint", {"midpoint", "heun"});
    const bool lof = r.get_bool("lower_order_final", multi);
    const bool eaf = multi ? r.get_bool("euler_at_final", false) : false;
    const std::string final_kind =
        r.get_choice("final_sigmas_type", "zero", {"zero", "sigma_min"}) == "sigma_min" ? "min"
                                                                                        : "zero";
    // lambda_min_clipped drops the noisiest training steps from the timestep-spacing grids
    // (diffusers ignores it for the sigma-type grids, and so do we).
    double lambda_min = -std::numeric_limits<double>::infinity();
    if (r.has("lambda_min_clipped") && r.get_string("lambda_min_clipped", "") != "-inf")
      lambda_min = r.get_double("lambda_min_clipped", 0.0);
    dc.reject_unless("variance_type", "None", "learned variances are not supported");
    if (flow) {
      check(final_kind == "zero", cls,
            ": final_sigmas_type=sigma_min with use_flow_sigmas is not supported (diffusers takes "
            "that sigma from the VP betas, not from the flow schedule)");
      out.spacing = diffusers_multistep_flow_spacing(dc, FlowMatchRule::dpm_solver);
    } else {
      dc.reject_unless("use_dynamic_shifting", "false", "dynamic shifting is for flow models");
      const double flow_shift = r.get_double("flow_shift", 1.0);
      check(flow_shift == 1.0, cls, ": flow_shift=", flow_shift, " needs use_flow_sigmas=true");
      const bool cosine =
          static_cast<const DiscreteSchedule&>(*out.schedule).options.beta_schedule() ==
          BetaSchedule::squaredcos_cap_v2;
      // Karras times are rounded (multistep: except on the cosine schedule), then all are cast to
      // int64.
      out.spacing =
          diffusers_sigma_spacing(dc, multi, true, !multi || !cosine, final_kind, 0.0, 0.0);
    }
    if (!out.spacing) {
      check(out.denoiser_options.prediction_type != Parameterization::kFlow, cls,
            ": prediction_type=flow_prediction needs use_flow_sigmas=true");
      if (multi) {
        out.spacing = diffusers_multistep_spacing(dc, final_kind, lambda_min);
      } else {
        Config c{{"include_t_min", "false"}, {"final", final_kind}};
        if (std::isfinite(lambda_min)) c["lambda_min"] = format_double(lambda_min);
        out.spacing = make_spacing("linspace", c);
      }
    }
    Config sc{{"order", std::to_string(order)},
              {"solver_type", solver_type},
              {"lower_order_final", lof ? "true" : "false"}};
    if (multi) sc["euler_at_final"] = eaf ? "true" : "false";
    if (!multi && algo == "dpmsolver") sc["predict_x0"] = "false";
    // algorithm_type=dpmsolver with final_sigmas_type=zero, which diffusers refuses (its last
    // step is 0 * inf there), is accepted: dpm_solver lands on alpha x0, the limit.
    const char* key = !multi                  ? "dpm_solver_pp_singlestep"
                      : algo == "dpmsolver"   ? "dpm_solver"
                      : algo == "dpmsolver++" ? "dpm_solver_pp"
                                              : "dpm_solver_pp_sde";
    out.sampler = make_sampler(key, sc);
    // The noise form steps with eps: diffusers recomputes it from the thresholded x0.
    if (algo == "dpmsolver") out.denoiser_options.use_clipped_model_output = true;
  } else if (cls == "UniPCMultistepScheduler") {
    const bool flow = r.get_bool("use_flow_sigmas", false);
    // shift_terminal (None or a float; 0 is off, as diffusers' `if self.config.shift_terminal`).
    const double terminal = optional_double(dc, config, "shift_terminal");
    check(flow || std::isnan(terminal), cls, ": shift_terminal=", terminal,
          " needs use_flow_sigmas=true (diffusers raises there)");
    out.schedule = flow ? diffusers_multistep_flow_schedule(dc, config, terminal)
                        : diffusers_schedule(dc, 1e-4, 0.02, true, true);
    diffusers_prediction(dc, out.denoiser_options, false, false, true, /*has_flow=*/true);
    const int64_t order = r.get_int("solver_order", 2);
    const bool predict_x0 = r.get_bool("predict_x0", true);
    // diffusers maps the DPM-Solver names onto bh2 (from_config of a DPM-Solver config).
    const std::string variant =
        r.get_choice("solver_type", "bh2", {"bh1", "bh2", "midpoint", "heun", "logrho"});
    const bool lof = r.get_bool("lower_order_final", true);
    std::string off;
    for (double v : r.get_doubles("disable_corrector"))
      off += (off.empty() ? "" : ";") + format_double(v);
    dc.reject_unless("solver_p", "None", "a user-supplied predictor scheduler");
    const std::string final_kind = diffusers_final_kind(dc);
    const auto [smin, smax] = diffusers_sigma_range(dc, config);
    if (flow) {
      check(std::isnan(smin) || smin == 0.0, cls, ": sigma_min is not used with use_flow_sigmas");
      // final_sigmas_type=sigma_min repeats the last flow sigma: a zero-length last step.
      out.spacing = diffusers_multistep_flow_spacing(
          dc, FlowMatchRule::unipc, final_kind == "min" ? FinalPoint::kMin : FinalPoint::kZero);
    } else {
      reject_flow_keys(dc, cls);
      check(out.denoiser_options.prediction_type != Parameterization::kFlow, cls,
            ": prediction_type=flow_prediction needs use_flow_sigmas=true");
      // Karras times are rounded; exponential and beta times are cast (truncated) to int64.
      out.spacing = diffusers_sigma_spacing(dc, false, true, true, final_kind, smin, smax);
      if (!out.spacing)
        out.spacing =
            diffusers_multistep_spacing(dc, final_kind, -std::numeric_limits<double>::infinity());
    }
    // diffusers thresholds only the data predictions (predict_x0=true).
    if (!predict_x0) out.denoiser_options.thresholding = false;
    Config sc{{"order", std::to_string(order)},
              {"variant", variant == "bh1" ? "bh1" : "bh2"},
              {"predict_x0", predict_x0 ? "true" : "false"},
              {"lower_order_final", lof ? "true" : "false"}};
    if (!off.empty()) sc["disable_corrector"] = off;
    out.sampler = make_sampler("unipc", sc);
    out.init_noise_is_one = true;  // init_noise_sigma = 1
  } else if (cls == "DEISMultistepScheduler") {
    out.schedule = diffusers_schedule(dc, 1e-4, 0.02, false, false);
    diffusers_prediction(dc, out.denoiser_options, false, false, true, /*has_flow=*/true);
    const int64_t order = r.get_int("solver_order", 2);
    // diffusers maps the DPM-Solver names onto deis / logrho (from_config of a DPM-Solver config).
    (void)r.get_choice("algorithm_type", "deis", {"deis", "dpmsolver", "dpmsolver++"});
    (void)r.get_choice("solver_type", "logrho", {"logrho", "midpoint", "heun", "bh1", "bh2"});
    const bool lof = r.get_bool("lower_order_final", true);
    reject_flow_keys(dc, cls);
    check(out.denoiser_options.prediction_type != Parameterization::kFlow, cls,
          ": prediction_type=flow_prediction needs use_flow_sigmas=true, which diffuse does not "
          "implement for DEIS");
    // The last sigma is always the smallest training one (a zero-length last step after the
    // sigma-type grids). Karras times are rounded, exponential and beta ones truncated.
    out.spacing = diffusers_sigma_spacing(dc, false, true, true, "min", 0.0, 0.0);
    if (!out.spacing)
      out.spacing =
          diffusers_multistep_spacing(dc, "min", -std::numeric_limits<double>::infinity());
    // DEIS steps with eps, recomputed from the thresholded x0 as diffusers does.
    out.denoiser_options.use_clipped_model_output = true;
    out.sampler = make_sampler(
        "deis", {{"order", std::to_string(order)}, {"lower_order_final", lof ? "true" : "false"}});
    out.init_noise_is_one = true;
  } else if (cls == "EulerDiscreteScheduler" || cls == "EulerAncestralDiscreteScheduler" ||
             cls == "HeunDiscreteScheduler") {
    const bool heun = cls == "HeunDiscreteScheduler";
    const bool ancestral = cls == "EulerAncestralDiscreteScheduler";
    out.schedule = heun ? diffusers_schedule(dc, 0.00085, 0.012, false, false)
                        : diffusers_schedule(dc, 1e-4, 0.02, true, true);
    diffusers_prediction(dc, out.denoiser_options, heun, false, false);
    std::string final_kind = "zero";
    double smin = 0.0, smax = 0.0;
    bool log_linear = false;
    if (!heun && !ancestral) {
      final_kind = r.get_choice("final_sigmas_type", "zero", {"zero", "sigma_min"}) == "sigma_min"
                       ? "min"
                       : "zero";
      log_linear =
          r.get_choice("interpolation_type", "linear", {"linear", "log_linear"}) == "log_linear";
      dc.reject_unless("timestep_type", "discrete", "continuous timesteps are not implemented");
      if (r.has("sigma_min") && config.at("sigma_min") != "None")
        smin = r.get_double("sigma_min", 0.0);
      if (r.has("sigma_max") && config.at("sigma_max") != "None")
        smax = r.get_double("sigma_max", 0.0);
    }
    diffusers_euler_family_grid(dc, out, /*sigma_overrides=*/!ancestral, /*round_t=*/false,
                                final_kind, smin, smax, log_linear);
    if (heun) {
      out.sampler = make_sampler("heun");
    } else if (ancestral) {
      out.sampler = make_sampler("euler_ancestral");
    } else {
      Config ec{{"churn_convention", "diffusers"}};
      for (const char* k : {"s_churn", "s_tmin", "s_tmax", "s_noise"})
        if (r.has(k)) ec[k] = config.at(k);
      out.sampler = make_sampler("euler", ec);
    }
  } else if (cls == "LMSDiscreteScheduler" || cls == "KDPM2DiscreteScheduler" ||
             cls == "KDPM2AncestralDiscreteScheduler") {
    const bool lms = cls == "LMSDiscreteScheduler";
    out.schedule = lms ? diffusers_schedule(dc, 1e-4, 0.02, false, false)
                       : diffusers_schedule(dc, 0.00085, 0.012, false, false);
    if (lms) {
      diffusers_prediction(dc, out.denoiser_options, false, false, false);
    } else {
      out.denoiser_options.prediction_type =
          diffusers_prediction_eps_or_v(dc, cls, "diffusers' step raises there");
    }
    // KDPM2 rounds its Karras times (not the exponential or beta ones); LMS keeps them fractional.
    diffusers_euler_family_grid(dc, out, /*sigma_overrides=*/true, /*round_t=*/!lms, "zero", 0.0,
                                0.0);
    if (lms) {
      out.sampler = make_sampler("lms", {{"order", std::to_string(r.get_int("order", 4))}});
    } else {
      const bool ancestral = cls == "KDPM2AncestralDiscreteScheduler";
      out.sampler = make_sampler("dpm_2", {{"eta", ancestral ? "1" : "0"}});
    }
  } else if (cls == "PNDMScheduler") {
    out.schedule = diffusers_schedule(dc, 1e-4, 0.02, false, false);
    out.denoiser_options.prediction_type =
        diffusers_prediction_eps_or_v(dc, cls, "PNDMScheduler's step raises there");
    const bool one = r.get_bool("set_alpha_to_one", false);
    const std::string spacing =
        r.get_choice("timestep_spacing", "leading", {"linspace", "leading", "trailing"});
    // PNDM steps from t to t - T // n whatever the spacing: on the grid only for leading.
    check(spacing == "leading", cls, ": timestep_spacing=", spacing,
          " is not supported (PNDMScheduler steps to t - num_train_timesteps // n, off its own "
          "grid except with leading spacing)");
    out.spacing = diffusers_spacing_n(dc, "leading", true, one ? "zero" : "min");
    out.sampler = make_sampler(
        "plms",
        {{"prk_warmup", r.get_bool("skip_prk_steps", false) ? "false" : "true"},
         {"combine",
          out.denoiser_options.prediction_type == Parameterization::kVelocity ? "v" : "eps"}});
  } else if (cls == "LCMScheduler" || cls == "TCDScheduler") {
    const bool tcd = cls == "TCDScheduler";
    out.schedule = diffusers_schedule(dc, 0.00085, 0.012, true, false, BetaSchedule::scaled_linear);
    // TCDScheduler.step neither clips nor thresholds; refuse the options rather than ignore them.
    diffusers_prediction(dc, out.denoiser_options, !tcd, false, !tcd);
    if (tcd) {
      dc.reject_unless("clip_sample", "false", "TCDScheduler.step ignores it");
      dc.reject_unless("thresholding", "false", "TCDScheduler.step ignores it");
      for (const char* k : {"clip_sample_range", "dynamic_thresholding_ratio", "sample_max_value",
                            "timestep_scaling"})
        (void)r.get_double(k, 1.0);
    }
    // set_timesteps reads none of these: the times come from original_inference_steps alone, and
    // the last step ends on the clean estimate (LCM) or on training step 0 (TCD) whatever
    // set_alpha_to_one says.
    (void)r.get_choice("timestep_spacing", "leading", {"linspace", "leading", "trailing"});
    (void)r.get_int("steps_offset", 0);
    (void)r.get_bool("set_alpha_to_one", true);
    const int64_t original = r.get_int("original_inference_steps", 50);
    check(original >= 1, cls, ": original_inference_steps must be >= 1, got ", original);
    // set_timesteps' strength (img2img): the grid starts part-way down the distillation steps.
    const double strength = r.get_double("strength", 1.0);
    out.spacing = make_spacing("lcm", {{"original_steps", std::to_string(original)},
                                       {"final", tcd ? "min" : "zero"},
                                       {"strength", format_double(strength)}});
    if (tcd) {
      out.sampler = make_sampler("tcd", {{"gamma", format_double(r.get_double("eta", 0.3))}});
    } else {
      out.sampler = make_sampler(
          "lcm", {{"timestep_scaling", format_double(r.get_double("timestep_scaling", 10.0))}});
    }
  } else if (cls == "EDMEulerScheduler" || cls == "EDMDPMSolverMultistepScheduler") {
    const bool dpm = cls == "EDMDPMSolverMultistepScheduler";
    EdmScheduleOptions eo;
    eo.sigma_min(r.get_double("sigma_min", 0.002));
    eo.sigma_max(r.get_double("sigma_max", 80.0));
    eo.sigma_data(r.get_double("sigma_data", 0.5));
    out.schedule = std::make_shared<EdmSchedule>(eo);
    (void)r.get_int("num_train_timesteps", 1000);  // set_timesteps does not read it
    // diffusers' EDM precondition_outputs raises for prediction_type=sample.
    out.denoiser_options.prediction_type = diffusers_prediction_eps_or_v(
        dc, cls,
        "EDM preconditioning has no sample form; diffusers' precondition_outputs raises there");
    out.denoiser_options.edm_preconditioning = true;
    out.denoiser_options.sigma_data = eo.sigma_data();
    if (dpm) diffusers_prediction_threshold(dc, out.denoiser_options);
    const std::string sched = r.get_choice("sigma_schedule", "karras", {"karras", "exponential"});
    const double rho = r.get_double("rho", 7.0);
    const std::string final_kind = diffusers_final_kind(dc);
    Config sc{{"final", final_kind},
              {"sigma_min", format_double(eo.sigma_min())},
              {"sigma_max", format_double(eo.sigma_max())}};
    if (sched == "karras") sc["rho"] = format_double(rho);
    out.spacing = make_spacing(sched, sc);
    if (!dpm) {
      out.sampler = make_sampler("euler");
    } else {
      const std::string algo =
          r.get_choice("algorithm_type", "dpmsolver++", {"dpmsolver++", "sde-dpmsolver++"});
      const bool sde = algo == "sde-dpmsolver++";
      const int64_t order = r.get_int("solver_order", 2);
      check(!sde || order <= 2, cls, ": solver_order=", order,
            " with algorithm_type=sde-dpmsolver++ is not supported (diffuse's SDE solver has "
            "orders 1-2)");
      Config pc{{"order", std::to_string(order)},
                {"solver_type", r.get_choice("solver_type", "midpoint", {"midpoint", "heun"})},
                {"lower_order_final", r.get_bool("lower_order_final", true) ? "true" : "false"},
                {"euler_at_final", r.get_bool("euler_at_final", false) ? "true" : "false"}};
      out.sampler = make_sampler(sde ? "dpm_solver_pp_sde" : "dpm_solver_pp", pc);
    }
  } else if (cls == "FlowMatchEulerDiscreteScheduler") {
    FlowScheduleOptions fo = diffusers_flow_options(dc, config, "shift", /*linear_shift=*/true);
    // Read by the pipelines to compute mu (flow_dynamic_mu); the scheduler itself does not use
    // them.
    for (const char* k : {"base_shift", "max_shift"}) (void)optional_double(dc, config, k);
    for (const char* k : {"base_image_seq_len", "max_image_seq_len"}) (void)r.get_int(k, 0);
    const double terminal = optional_double(dc, config, "shift_terminal");
    if (!std::isnan(terminal)) fo.shift_terminal(terminal);
    dc.reject_unless("invert_sigmas", "false",
                     "inverted sigmas (Mochi) feed the model 1 - sigma; not implemented");
    const bool karras = r.get_bool("use_karras_sigmas", false);
    const bool expo = r.get_bool("use_exponential_sigmas", false);
    const bool beta = r.get_bool("use_beta_sigmas", false);
    check(int(karras) + int(expo) + int(beta) <= 1, cls,
          ": only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas may be true");
    FlowMatchSpacingOptions so;
    so.rule(FlowMatchRule::euler);
    so.sigmas(karras ? FlowSigmas::karras
                     : (expo ? FlowSigmas::exponential
                             : (beta ? FlowSigmas::beta : FlowSigmas::shifted)));
    out.schedule = std::make_shared<FlowSchedule>(fo);
    out.spacing = std::make_shared<FlowMatchSpacing>(so);
    // stochastic_sampling: x' = (1 - sigma') x0 + sigma' z, i.e. euler_ancestral split=renoise.
    out.sampler = r.get_bool("stochastic_sampling", false)
                      ? make_sampler("euler_ancestral", {{"split", "renoise"}})
                      : make_sampler("euler");
    out.denoiser_options.prediction_type = Parameterization::kFlow;
    out.init_noise_is_one = true;
  } else if (cls == "FlowMatchHeunDiscreteScheduler") {
    // Static shift only; the same set_timesteps rule as FlowMatchEuler, Heun in sigma.
    out.schedule = std::make_shared<FlowSchedule>(diffusers_flow_base(dc, "shift"));
    out.spacing = std::make_shared<FlowMatchSpacing>();
    out.sampler = make_sampler("heun", {{"space", "flow"}});
    out.denoiser_options.prediction_type = Parameterization::kFlow;
    out.init_noise_is_one = true;
  } else {
    throw ConfigError(cat("unknown diffusers scheduler class '", cls,
                          "'; supported: ", join(diffusers_scheduler_classes())));
  }
  dc.finish();
  return out;
}

}  // namespace diffuse
