// SPDX-License-Identifier: Apache-2.0
// CADS, the condition-annealed diffusion sampler. Sadat, Buhmann, Bradley, Hilliges, Weber, "CADS:
// Unleashing the Diversity of Diffusion Models through Condition-Annealed Sampling", ICLR 2024,
// Eq. (2)-(4); methods.md §5. No official code; checked against the two community implementations
// v0xie/sd-webui-cads @11c7f1f scripts/cads.py (A1111) and asagi4/ComfyUI-CADS @b809f54 __init__.py.
//
// At every model call the condition embedding y fed to the network is corrupted by Gaussian noise
// whose weight is annealed over the run, early (noisy) steps seeing mostly noise:
//   t      = 1 - step.index / step.num_steps               time="step" (A1111; default), or
//            step.now.t / t_max                             time="model" (ComfyUI's model-time
//                                                          option, without its rounding to 0.01)
//   gamma  = 1 if t <= tau1, 0 if t >= tau2, (tau2 - t) / (tau2 - tau1) in between
//   y_hat  = sqrt(gamma) y + s sqrt(1 - gamma) n,           n ~ N(0, I) fresh at every model call,
//                                                          drawn from the run's noise source
//   y_r    = (y_hat - mean(y_hat)) / std(y_hat) * std(y) + mean(y)      (std unbiased, as torch)
//   y_out  = psi y_r + (1 - psi) y_hat,                     y_hat kept where y_r has a NaN
// mean/std are scalars over each sample (rescale_over="sample", ComfyUI) or over the whole
// branch tensor (rescale_over="batch", A1111). The NaN fallback follows the same grouping.
//
// Defaults: tau1 = 0.6, tau2 = 0.9, s = 0.25, psi = 1 (the A1111 extension's defaults; ComfyUI's
// are the same except psi = 0). Paper ablations (methods.md §5.2): s = 0.1 best FID, larger s more
// recall; psi = 1 best FID, psi = 0 best recall.
//
// Where it applies (methods.md §5.3, §10): to the conditioning of the chosen guidance branches
// before the network, i.e. before classifier-free guidance combines the outputs. apply_to="cond"
// (default) corrupts only the conditional branch, as the paper's formulation reads (the null token
// stays the null token); "both" also corrupts the unconditional branch, which is what both
// community implementations do by default; "uncond" (ComfyUI's third choice) only that one.
// Conditioning.value is annealed (value=true) and any Conditioning.extra tensors named in
// extra_keys (e.g. a pooled text embedding next to the token embeddings, as A1111 does for SDXL).
// The condition must be a floating-point EMBEDDING: an integer class label cannot be noised, and
// is an error.
//
// Identity and differences from the community code:
// * noise_scale = 0 switches CADS off entirely (ComfyUI's `noise_scale > 0` guard): the condition
//   is untouched and no noise is drawn, so the run is bit-identical to the plain sampler. (The bare
//   formula at s = 0 would still scale y by sqrt(gamma).) Likewise whenever gamma = 1 (tau1 >= 1,
//   or t <= tau1) the condition passes through untouched, without rescaling and without drawing.
// * Noise is drawn at every model call (multi-stage samplers: every stage) from the run's noise
//   source, so it continues the same stream as a stochastic sampler's own noise. The A1111
//   extension re-seeds its generator with the image seed at every call, i.e. reuses one noise
//   tensor for the whole run; the paper and ComfyUI draw fresh noise, as here.
// * With time="step" a multi-stage sampler's stages share their step's t, as in A1111; ComfyUI
//   with model time uses each stage's own time (here time="model" uses the step's start time).
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/sampler.h>

namespace diffuse {

struct ConditionAnnealingOptions {
  /// Below tau1 (late steps) the condition is clean. Default 0.6; in [0, tau2).
  TORCH_ARG(double, tau1) = 0.6;
  /// Above tau2 (early steps) the condition is pure noise (times noise_scale). Default 0.9; > tau1.
  TORCH_ARG(double, tau2) = 0.9;
  /// s, the noise weight. Default 0.25 (A1111: <= 0.3 recommended); >= 0; 0 switches CADS off.
  TORCH_ARG(double, noise_scale) = 0.25;
  /// psi, the mixing factor of the mean/std rescaling. Default 1 (A1111); in [0, 1]; 0 = no rescale.
  TORCH_ARG(double, psi) = 1.0;
  /// "sample" (default, ComfyUI): rescaling moments per sample, so a sample does not depend on
  /// the rest of its batch; "batch" (A1111): over the whole branch tensor.
  TORCH_ARG(std::string, rescale_over) = "sample";
  /// "step" (default, A1111): t = 1 - index / num_steps; "model": t = step.now.t / t_max.
  TORCH_ARG(std::string, time) = "step";
  /// The model time that maps to t = 1 for time="model". Default 0: the schedule's t_max(), read
  /// in on_grid (so sample() supplies it); >= 0.
  TORCH_ARG(double, t_max) = 0.0;
  /// "cond" (default), "both" or "uncond": which guidance branches are annealed.
  TORCH_ARG(std::string, apply_to) = "cond";
  /// Anneal Conditioning.value. Default true.
  TORCH_ARG(bool, value) = true;
  /// Names of Conditioning.extra tensors to anneal too (config: "a;b"). Default none.
  TORCH_ARG(std::vector<std::string>, extra_keys) = {};
};

class ConditionAnnealing final : public Correction {
 public:
  explicit ConditionAnnealing(ConditionAnnealingOptions o = {}) : options(std::move(o)) {
    const auto& p = options;
    check(std::isfinite(p.tau1()) && p.tau1() >= 0, "condition_annealing: tau1 must be finite and >= 0, got ",
          p.tau1());
    check(std::isfinite(p.tau2()) && p.tau2() > p.tau1(), "condition_annealing: tau2 must be finite and > tau1 = ",
          p.tau1(), ", got tau2 = ", p.tau2());
    check(std::isfinite(p.noise_scale()) && p.noise_scale() >= 0,
          "condition_annealing: noise_scale must be finite and >= 0, got ", p.noise_scale());
    check(std::isfinite(p.psi()) && p.psi() >= 0 && p.psi() <= 1, "condition_annealing: psi must be in [0, 1], got ",
          p.psi());
    check(p.rescale_over() == "sample" || p.rescale_over() == "batch",
          "condition_annealing: rescale_over must be sample or batch, got '", p.rescale_over(), "'");
    check(p.time() == "step" || p.time() == "model", "condition_annealing: time must be step or model, got '",
          p.time(), "'");
    check(std::isfinite(p.t_max()) && p.t_max() >= 0, "condition_annealing: t_max must be finite and >= 0, got ",
          p.t_max());
    check(p.apply_to() == "cond" || p.apply_to() == "both" || p.apply_to() == "uncond",
          "condition_annealing: apply_to must be cond, both or uncond, got '", p.apply_to(), "'");
    check(p.value() || !p.extra_keys().empty(),
          "condition_annealing: value=false and no extra_keys leaves nothing to anneal");
    for (const auto& k : p.extra_keys())
      check(!k.empty(), "condition_annealing: extra_keys holds an empty name");
  }

  static std::unique_ptr<Correction> from_config(const Config& c) {
    ConfigReader r(c, "condition_annealing");
    ConditionAnnealingOptions o;
    o.tau1(r.get_double("tau1", o.tau1()));
    o.tau2(r.get_double("tau2", o.tau2()));
    o.noise_scale(r.get_double("noise_scale", o.noise_scale()));
    o.psi(r.get_double("psi", o.psi()));
    o.rescale_over(r.get_choice("rescale_over", o.rescale_over(), {"sample", "batch"}));
    o.time(r.get_choice("time", o.time(), {"step", "model"}));
    o.t_max(r.get_double("t_max", o.t_max()));
    o.apply_to(r.get_choice("apply_to", o.apply_to(), {"cond", "both", "uncond"}));
    o.value(r.get_bool("value", o.value()));
    if (r.has("extra_keys")) o.extra_keys(split_keys(c.at("extra_keys")));
    r.finish();
    return std::make_unique<ConditionAnnealing>(o);
  }
  Config to_config() const override {
    std::string keys;
    for (const auto& k : options.extra_keys()) keys += (keys.empty() ? "" : ";") + k;
    return {{"tau1", format_double(options.tau1())},
            {"tau2", format_double(options.tau2())},
            {"noise_scale", format_double(options.noise_scale())},
            {"psi", format_double(options.psi())},
            {"rescale_over", options.rescale_over()},
            {"time", options.time()},
            {"t_max", format_double(options.t_max())},
            {"apply_to", options.apply_to()},
            {"value", options.value() ? "true" : "false"},
            {"extra_keys", keys}};
  }
  std::string name() const override { return "condition_annealing"; }
  std::unique_ptr<Correction> clone() const override {
    return std::make_unique<ConditionAnnealing>(*this);
  }

  /// gamma(t): 1 for t <= tau1, 0 for t >= tau2, linear in between.
  static double gamma(double t, double tau1, double tau2) {
    if (t <= tau1) return 1.0;
    if (t >= tau2) return 0.0;
    return (tau2 - t) / (tau2 - tau1);
  }
  double gamma(double t) const { return gamma(t, options.tau1(), options.tau2()); }

  /// The annealing time t in [0, 1] (1 = pure noise) of a step, per the `time` option.
  double time_of(const StepContext& step) const {
    if (options.time() == "step") {
      check(step.num_steps > 0, "condition_annealing: the step context has num_steps = ", step.num_steps);
      const double f = static_cast<double>(step.index) / static_cast<double>(step.num_steps);
      return 1.0 - std::min(std::max(f, 0.0), 1.0);
    }
    const double t_max = options.t_max() > 0 ? options.t_max() : schedule_t_max_;
    check(t_max > 0,
          "condition_annealing: time=model needs t_max: set the option, or run through sample(), whose "
          "on_grid hook reads the schedule's t_max");
    return step.now.t / t_max;
  }

  void reset() override { schedule_t_max_ = 0.0; }
  void on_grid(TimeGrid& /*grid*/, const NoiseSchedule& s) override { schedule_t_max_ = s.t_max(); }

  void on_condition(Conditioning& c, const StepContext& step) override {
    if (options.noise_scale() == 0) return;
    const bool cond = step.branch == Branch::kCond;
    if ((options.apply_to() == "cond" && !cond) || (options.apply_to() == "uncond" && cond)) return;
    const double g = gamma(time_of(step));
    if (g >= 1.0) return;
    if (options.value()) {
      if (c.value.defined()) {
        c.value = anneal(c.value, g, step, "Conditioning.value");
      } else {
        // The null conditioning of an unconditional branch has nothing to anneal.
        check(!cond,
              "condition_annealing: the conditional branch has no Conditioning.value to anneal (set "
              "SampleOptions.cond.value to the condition embedding, or value=false with extra_keys)");
      }
    }
    for (const auto& key : options.extra_keys()) {
      auto it = c.extra.find(key);
      if (it == c.extra.end()) {
        std::vector<std::string> present;
        for (const auto& kv : c.extra) present.push_back(kv.first);
        throw Error(detail::cat("condition_annealing: extra key '", key, "' is not in the ",
                                cond ? "conditional" : "unconditional", " branch's Conditioning.extra (present: ",
                                present.empty() ? std::string("none") : detail::join(present), ")"));
      }
      if (it->second.defined()) it->second = anneal(it->second, g, step, ("Conditioning.extra['" + key + "']").c_str());
    }
  }

  ConditionAnnealingOptions options;

 private:
  static std::vector<std::string> split_keys(std::string v) {
    for (auto& ch : v)
      if (ch == ';') ch = ' ';
    std::vector<std::string> out;
    std::istringstream is(v);
    std::string tok;
    while (is >> tok) out.push_back(tok);
    return out;
  }

  Tensor anneal(const Tensor& y_in, double g, const StepContext& step, const char* what) const {
    check(at::isFloatingType(y_in.scalar_type()), "condition_annealing: ", what, " has dtype ", y_in.scalar_type(),
          "; CADS adds Gaussian noise to a condition EMBEDDING, so pass the class/text embedding as a "
          "floating-point tensor, not an integer class label");
    check(y_in.dim() >= 1 && y_in.numel() > 0, "condition_annealing: ", what,
          " needs a batch dimension and at least one element, got shape ", y_in.sizes());
    check(step.noise != nullptr, "condition_annealing: the step context has no noise source to draw from");
    const auto dtype = y_in.scalar_type();
    const bool upcast = dtype != at::kFloat && dtype != at::kDouble;
    const Tensor y = upcast ? y_in.to(at::kFloat) : y_in;
    const Tensor n = step.noise->randn_like(y);
    Tensor y_hat = y * std::sqrt(g) + n * (options.noise_scale() * std::sqrt(1.0 - g));
    const double psi = options.psi();
    if (psi > 0) {
      Tensor mean_y, std_y, mean_h, std_h, bad;
      const Tensor yf = y.reshape({y.size(0), -1}), hf = y_hat.reshape({y.size(0), -1});
      if (options.rescale_over() == "sample") {
        const std::vector<int64_t> dim{1};
        mean_y = yf.mean(dim, /*keepdim=*/true);
        std_y = yf.std(dim, /*unbiased=*/true, /*keepdim=*/true);
        mean_h = hf.mean(dim, true);
        std_h = hf.std(dim, true, true);
      } else {
        mean_y = yf.mean();
        std_y = yf.std(/*unbiased=*/true);
        mean_h = hf.mean();
        std_h = hf.std(true);
      }
      Tensor y_r = (hf - mean_h) / std_h * std_y + mean_y;
      bad = options.rescale_over() == "sample" ? at::isnan(y_r).any(1, /*keepdim=*/true) : at::isnan(y_r).any();
      y_r = at::where(bad, hf, y_r).reshape(y.sizes());
      y_hat = psi == 1.0 ? y_r : y_r * psi + y_hat * (1.0 - psi);
    }
    return upcast ? y_hat.to(dtype) : y_hat;
  }

  double schedule_t_max_ = 0.0;
};

DIFFUSE_REGISTER_CORRECTION(ConditionAnnealing, "condition_annealing",
                            "CADS: anneal the condition embedding with Gaussian noise (Sadat et al. 2024)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(cads, "cads", "condition_annealing", {}, "CADS (Sadat et al. 2024)");

}  // namespace diffuse
