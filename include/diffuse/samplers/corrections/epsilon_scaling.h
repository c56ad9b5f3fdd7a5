// SPDX-License-Identifier: Apache-2.0
// Epsilon Scaling. Ning, Li, Su, Salah, Ertugrul, "Elucidating the Exposure Bias in Diffusion
// Models" (ICLR 2024); reference code: forever208/ADM-ES @54ad3ad
// (guided_diffusion/gaussian_diffusion.py, sampling_scaler / _predict_xstart_from_eps),
// forever208/EDM-ES @d9cf406 (generate.py, edm_sampler) and ComfyUI's "Epsilon Scaling" node.
//
// At every model call (multi-stage solvers call the model several times per step; this runs at
// each call, after guidance and before clipping/thresholding), with (alpha, sigma) the time point
// of that call (StepContext::call):
//   eps <- eps / lambda
//   x0  <- (x - sigma * eps) / alpha            (the x0 of ADM-ES's _predict_xstart_from_eps)
// which is the same as EDM-ES / ComfyUI's D <- x_ve - (x_ve - D) / lambda in VE units
// (x_ve = x / alpha). lambda > 1 scales the predicted noise down, so the chain removes less noise
// per step and ends less concentrated. At alpha = 0 (pure noise, zero terminal SNR) the state is
// x = sigma * eps exactly, so eps carries no network information and x0 is not recoverable from
// it: the prediction is left unchanged there.
//
// The schedule: lambda(i) = k * i + b, constant (= b) for k = 0 (the paper's practical default).
// i is the respaced step index counted from the LAST step (i = num_steps - 1 - step.index: 0 at the
// last, cleanest step), ADM-ES's convention: its published (k, b) pairs only make sense on that
// index (k = 0.0025, b = 1 at 20 steps gives lambda in [1, 1.0475]). direction = from_first counts
// from the first, noisiest step instead (i = step.index), the step counter of TS-DPM's
// DDIM-backbone Epsilon Scaling (scale = 1 + step_size * step). All calls of one step use that
// step's index. b = 1, k = 0 is the identity (the prediction is not touched at all).
//
// Presets ("es_<source>_<setting>", aliases of epsilon_scaling; user options override them). All
// numbers are read off ADM-ES @54ad3ad datasets/ADM-ES_results.png and EDM-ES
// @d9cf406 docs/eps_scaler.png (FID-50K tuned values):
//   es_adm_<data>_<S>          constant b for ADM (respaced DDPM ancestral, learned variance) at
//                              S = 100, 50, 20 steps; data = cifar10 (32x32), lsun_tower64,
//                              ffhq128, imagenet64 (cond), imagenet128 (cond, classifier guidance
//                              0.5)
//   es_adm_<data>_20_linear    the (k, b) of ADM-ES* (lambda = k i + b) at 20 steps
//   es_edm_cifar10_<cond|uncond>_<heun|euler>_nfe<35|21|13>
//                              constant b for EDM's CIFAR-10 VP checkpoints (Heun 35 NFE = 18
//                              steps)
//   es_comfyui                 b = 1.005, the default of ComfyUI's Epsilon Scaling node
//   es_tsdpm_ddim              b = 1.0012, the TS-DPM README's DDIM-backbone example
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>

namespace diffuse {

/// How EpsilonScaling counts the step index i of lambda(i) = k i + b.
enum class EpsilonScalingDirection {
  kFromLast,  ///< "from_last" (default; ADM-ES): i = num_steps - 1 - index, 0 at the last step
  kFromFirst  ///< "from_first" (TS-DPM's counter): i = index, 0 at the first step
};

struct EpsilonScalingOptions {
  /// Offset b of lambda(i) = k i + b. Default 1 (identity); must be finite and > 0. The paper's
  /// values are slightly above 1 (1.004 .. 1.017 for ADM).
  TORCH_ARG(double, b) = 1.0;
  /// Slope k per step of lambda(i) = k i + b. Default 0 (constant lambda = b); finite. lambda must
  /// stay > 0 at every step of the run (checked when the grid is known).
  TORCH_ARG(double, k) = 0.0;
  /// How i counts steps: "from_last" (default; ADM-ES: i = num_steps - 1 - index, 0 at the last
  /// step) or "from_first" (TS-DPM's counter: i = index, 0 at the first step).
  TORCH_ARG(EpsilonScalingDirection, direction) = EpsilonScalingDirection::kFromLast;
};

class EpsilonScaling final : public Correction {
 public:
  explicit EpsilonScaling(EpsilonScalingOptions o = {});
  static std::unique_ptr<Correction> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "epsilon_scaling"; }
  std::unique_ptr<Correction> clone() const override;

  /// lambda at step `index` of a run of `num_steps` steps.
  double lambda(int64_t index, int64_t num_steps) const;

  /// A linear schedule must stay positive over the whole run: its ends are i = 0 and num_steps - 1.
  void on_grid(TimeGrid& grid, const NoiseSchedule&) override;

  void on_prediction(Prediction& p, const Tensor& x, const StepContext& step) override;

  EpsilonScalingOptions options;

 private:
  void check_positive(int64_t num_steps) const;
};

}  // namespace diffuse
