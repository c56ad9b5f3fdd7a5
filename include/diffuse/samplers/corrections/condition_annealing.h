// SPDX-License-Identifier: Apache-2.0
// CADS, the condition-annealed diffusion sampler. Sadat, Buhmann, Bradley, Hilliges, Weber, "CADS:
// Unleashing the Diversity of Diffusion Models through Condition-Annealed Sampling", ICLR 2024,
// Eq. (2)-(4). No official code; checked against the two community implementations
// v0xie/sd-webui-cads @11c7f1f scripts/cads.py (A1111) and asagi4/ComfyUI-CADS @b809f54
// __init__.py.
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
// are the same except psi = 0). Paper ablations: s = 0.1 best FID, larger s more
// recall; psi = 1 best FID, psi = 0 best recall.
//
// Where it applies: to the conditioning of the chosen guidance branches
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

#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>

namespace diffuse {

/// Over what ConditionAnnealing takes the rescaling moments.
enum class ConditionAnnealingRescaleOver {
  kSample,  ///< "sample" (default, ComfyUI): per sample
  kBatch    ///< "batch" (A1111): over the whole branch tensor
};

/// The annealing time t in [0, 1] of ConditionAnnealing.
enum class ConditionAnnealingTime {
  kStep,  ///< "step" (default, A1111): t = 1 - index / num_steps
  kModel  ///< "model": t = step.now.t / t_max
};

/// Which guidance branches ConditionAnnealing anneals.
enum class ConditionAnnealingApplyTo {
  kCond,   ///< "cond" (default)
  kBoth,   ///< "both"
  kUncond  ///< "uncond"
};

struct ConditionAnnealingOptions {
  /// Below tau1 (late steps) the condition is clean. Default 0.6; in [0, tau2).
  TORCH_ARG(double, tau1) = 0.6;
  /// Above tau2 (early steps) the condition is pure noise (times noise_scale). Default 0.9; > tau1.
  TORCH_ARG(double, tau2) = 0.9;
  /// s, the noise weight. Default 0.25 (A1111: <= 0.3 recommended); >= 0; 0 switches CADS off.
  TORCH_ARG(double, noise_scale) = 0.25;
  /// psi, the mixing factor of the mean/std rescaling. Default 1 (A1111); in [0, 1]; 0 = no
  /// rescale.
  TORCH_ARG(double, psi) = 1.0;
  /// "sample" (default, ComfyUI): rescaling moments per sample, so a sample does not depend on
  /// the rest of its batch; "batch" (A1111): over the whole branch tensor.
  TORCH_ARG(ConditionAnnealingRescaleOver, rescale_over) = ConditionAnnealingRescaleOver::kSample;
  /// "step" (default, A1111): t = 1 - index / num_steps; "model": t = step.now.t / t_max.
  TORCH_ARG(ConditionAnnealingTime, time) = ConditionAnnealingTime::kStep;
  /// The model time that maps to t = 1 for time="model". Default 0: the schedule's t_max(), read
  /// in on_grid (so sample() supplies it); >= 0.
  TORCH_ARG(double, t_max) = 0.0;
  /// "cond" (default), "both" or "uncond": which guidance branches are annealed.
  TORCH_ARG(ConditionAnnealingApplyTo, apply_to) = ConditionAnnealingApplyTo::kCond;
  /// Anneal Conditioning.value. Default true.
  TORCH_ARG(bool, value) = true;
  /// Names of Conditioning.extra tensors to anneal too (config: "a;b"). Default none.
  TORCH_ARG(std::vector<std::string>, extra_keys) = {};
};

class ConditionAnnealing final : public Correction {
 public:
  explicit ConditionAnnealing(ConditionAnnealingOptions o = {});

  static std::unique_ptr<Correction> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "condition_annealing"; }
  std::unique_ptr<Correction> clone() const override;

  /// gamma(t): 1 for t <= tau1, 0 for t >= tau2, linear in between.
  static double gamma(double t, double tau1, double tau2);
  double gamma(double t) const { return gamma(t, options.tau1(), options.tau2()); }

  /// The annealing time t in [0, 1] (1 = pure noise) of a step, per the `time` option.
  double time_of(const StepContext& step) const;

  void reset() override { schedule_t_max_ = 0.0; }
  void on_grid(TimeGrid& /*grid*/, const NoiseSchedule& s) override { schedule_t_max_ = s.t_max(); }

  void on_condition(Conditioning& c, const StepContext& step) override;

  ConditionAnnealingOptions options;

 private:
  static std::vector<std::string> split_keys(std::string v);

  Tensor anneal(const Tensor& y_in, double g, const StepContext& step, const char* what) const;

  double schedule_t_max_ = 0.0;
};

}  // namespace diffuse
