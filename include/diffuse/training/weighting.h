// SPDX-License-Identifier: Apache-2.0
// Per-example loss weights w(t), shape [B], for a squared error measured in the space of the
// network's parameterisation (epsilon, v or x0).
//
// Every weighting is defined as a weight w_x0 on the x0 (data) error and converted. At a fixed
// x_t = alpha x0 + sigma eps, with SNR = alpha^2 / sigma^2 and v = alpha eps - sigma x0:
//   eps = (x_t - alpha x0) / sigma            =>  eps_hat - eps = -(alpha / sigma) (x0_hat - x0)
//   v_hat - v = alpha (eps_hat - eps) - sigma (x0_hat - x0)
//             = -((alpha^2 + sigma^2) / sigma) (x0_hat - x0)
// so  |eps error|^2 = SNR |x0 error|^2  and  |v error|^2 = ((alpha^2 + sigma^2)^2 / sigma^2) |x0
// error|^2, which is (SNR + 1) |x0 error|^2 on variance-preserving schedules (alpha^2 + sigma^2 =
// 1, 1 / sigma^2 = SNR + 1). The weight in the parameterisation's space is therefore
//   epsilon:  w = w_x0 / SNR
//   v:        w = w_x0 sigma^2 / (alpha^2 + sigma^2)^2      (= w_x0 / (SNR + 1) when VP)
//   sample:   w = w_x0
//
// Weightings (w_x0):
//   none           w = 1 in the parameterisation's own space (the plain "simple" loss).
//   min_snr        w_x0 = min(SNR, gamma), gamma default 5 (Hang et al., "Efficient Diffusion
//   Training
//                  via Min-SNR Weighting Strategy", ICCV 2023, Eq. 8-9). Checked against
//                  TiankaiHang/Min-SNR-Diffusion-Training guided_diffusion/gaussian_diffusion.py
//                  (eps: min(snr,k)/snr, START_X: min(snr,k)) and diffusers'
//                  examples/text_to_image/train_text_to_image.py (epsilon: min(snr,gamma)/snr,
//                  v_prediction: min(snr,gamma)/(snr+1), sample: min(snr,gamma)).
//                  epsilon is computed as min(1, gamma / SNR), so zero terminal SNR (alpha = 0,
//                  SNR = 0) gives gamma / 0 = inf -> weight 1 (the limit), never NaN; v gives 0
//                  there.
//   snr            w_x0 = SNR (= the unweighted epsilon loss, Ho et al. 2020, expressed elsewhere).
//   truncated_snr  w_x0 = max(SNR, 1) (Salimans & Ho, "Progressive Distillation", 2022, Sec. 4;
//                  Min-SNR's 'trunc_snr'). Infinite for epsilon at SNR = 0 (max(0, 1) / 0).
//   edm            w_x0 = lambda(sigma_ve) = (sigma_ve^2 + sigma_data^2) / (sigma_ve sigma_data)^2
//                  = SNR + 1 / sigma_data^2 (Karras et al. 2022, Eq. 8 and Table 1; MaskDiT's
//                  EDMLoss weight), sigma_data default 0.5. Infinite for epsilon at SNR = 0.
// Only none, min_snr and snr are finite for every parameterisation at zero terminal SNR; epsilon
// prediction cannot be trained usefully there anyway (it gives no x0 at alpha = 0).
// Weights are computed from the schedule's alpha(t), sigma(t) in float64 and returned in t's dtype
// on t's device; no host synchronisation.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/tensor.h>

namespace diffuse {
class NoiseSchedule;
}  // namespace diffuse

namespace diffuse {

/// The loss weighting w(t) (config key "weighting"; see the file comment).
enum class LossWeighting { none, min_snr, snr, truncated_snr, edm };
/// Names of LossWeighting ("none", "min_snr", "snr", "truncated_snr", "edm").
const std::vector<std::pair<std::string, LossWeighting>>& loss_weighting_names();

struct WeightingOptions {
  /// none | min_snr | snr | truncated_snr | edm. Default none.
  TORCH_ARG(LossWeighting, weighting) = LossWeighting::none;
  /// min_snr: gamma. Default 5 (Hang et al. 2023); must be > 0.
  TORCH_ARG(double, snr_gamma) = 5.0;
  /// edm: sigma_data. Default 0.5 (EDM); must be > 0.
  TORCH_ARG(double, sigma_data) = 0.5;
};

namespace detail {

void validate(const WeightingOptions& o);

WeightingOptions read_weighting(ConfigReader& r);
void write_weighting(const WeightingOptions& o, Config& c);

}  // namespace detail

/// The weights from per-example alpha and sigma (any shape; returned in float64).
at::Tensor loss_weights_from(const at::Tensor& alpha_in, const at::Tensor& sigma_in,
                             Parameterization p, const WeightingOptions& o = {});

/// The weights at model times t (shape [B]) for schedule s, in t's dtype and on t's device.
at::Tensor loss_weights(const NoiseSchedule& s, const at::Tensor& t, Parameterization p,
                        const WeightingOptions& o = {});

}  // namespace diffuse
