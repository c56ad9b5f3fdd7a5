// SPDX-License-Identifier: Apache-2.0
// Masked denoising (MaskDiT): the denoising loss on the visible patch tokens plus an MAE-style
// reconstruction loss on the masked ones, generalised from EDM to any schedule and
// parameterisation.
//   Zheng, Nie, Vahdat, Anandkumar, "Fast Training of Diffusion Models with Masked Transformers"
//   (TMLR 2024), Sec. 3 (Eq. 3-5: L = L_DSM(visible) + lambda L_MAE(masked), lambda = 0.1).
// Checked against: Anima-Lab/MaskDiT train_utils/loss.py (EDMLoss.__call__, mae_loss, patchify)
//   and models/maskdit.py random_masking:
//   * mask: per sample argsort of uniform noise, keep the first N_keep = floor(N (1 - ratio))
//     tokens; the rest are masked;
//   * DSM: per-pixel weighted squared error, mean over channels, average-pooled to p x p patches,
//     averaged over the VISIBLE patches (weight applied to the DSM term only);
//   * MAE: target = the noisy network input, patchified and normalised per patch over its p^2 C
//     values with (v - mean) / sqrt(var + 1e-6), var UNBIASED (torch.var default); the prediction
//     is the model's denoised output D (x0), patchified and NOT normalised; squared error, mean
//     over the patch's values, averaged over the MASKED patches; no loss weight.
// Generalisation: the DSM error is measured in the parameterisation's space with training/
// weighting.h's weight (MaskDiT's EDM loss is prediction_type=sample, weighting=edm,
// time_sampling=log_normal on the edm schedule with an EDM-preconditioned network). The MAE
// prediction is the x0 the output stands for (Denoiser::convert), and the MAE target normalises
// the network input x_t = alpha x0 + sigma eps (MaskDiT normalises x0 + sigma_ve eps = x_t / alpha;
// per-patch normalisation removes the scale, so the two agree up to the 1e-6 term, exactly on
// the edm schedule where alpha = 1).
//
// Draw order (one generator; device rule in training/time_sampling.h):
//   1. t     [B]
//   2. eps   like x0
//   3. mask  uniform noise [B, N] (float32), ONLY when mask_ratio > 0; extra["mask"] = bool
//            [B, N], true = token masked, N = (H/p)(W/p) row-major (patch (i, j) -> i (W/p) + j);
//            every row has N - N_keep trues.
// With mask_ratio = 0 nothing is drawn for the mask and extra has no "mask" (the DiT then runs
// unmasked); the DSM term is then computed exactly as the "denoising" objective does (mean over
// all non-batch dims), so the loss equals that objective's loss bit for bit, and mae = 0.
// evaluate() passes the mask to the network as cond.extra["mask"] (on x0's device); a draw
// without "mask" removes any "mask" the batch's conditioning had.
// Output terms: {"dsm", "mae"}; loss = dsm + mae_weight * mae.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/objective.h>
#include <diffuse/training/time_sampling.h>
#include <diffuse/training/weighting.h>

namespace diffuse {

namespace detail {
struct DenoisingCoreOptions;  // training/objectives/detail/denoising_core.h
}  // namespace detail

struct MaskedDenoisingOptions {
  /// What the network predicts: epsilon | v_prediction | sample | flow_prediction. Default
  /// epsilon.
  TORCH_ARG(Parameterization, prediction_type) = Parameterization::kEpsilon;
  /// How t is drawn: uniform (default), log_normal (p_mean, p_std), logit_normal (logit_mean,
  /// logit_std) or mode (mode_scale), the last two optionally shifted (shift).
  TORCH_ARG(TimeSamplingOptions, time_sampling) = {};
  /// Per-example weight of the DSM term: none (default), min_snr, snr, truncated_snr, edm.
  TORCH_ARG(WeightingOptions, weighting) = {};
  /// Fraction of patch tokens masked. Default 0.5 (MaskDiT); in [0, 1), and at least one token
  /// must stay visible (floor(N (1 - mask_ratio)) >= 1). 0 = unmasked (the unmasking fine-tune).
  TORCH_ARG(double, mask_ratio) = 0.5;
  /// Weight of the MAE reconstruction term. Default 0.1 (MaskDiT); finite, >= 0.
  TORCH_ARG(double, mae_weight) = 0.1;
  /// Patch size p of the DiT's tokens. Default 2; >= 1, must divide H and W, and p^2 C >= 2 (the
  /// per-patch variance needs two values).
  TORCH_ARG(int64_t, patch_size) = 2;
};

class MaskedDenoisingObjective final : public Objective {
 public:
  explicit MaskedDenoisingObjective(MaskedDenoisingOptions o = {});

  /// Keys: prediction_type, time_sampling, p_mean, p_std, logit_mean, logit_std, mode_scale,
  /// shift, weighting, snr_gamma, sigma_data,
  /// mask_ratio, mae_weight, patch_size.
  static std::unique_ptr<Objective> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "masked_denoising"; }
  Parameterization prediction_type() const override { return options.prediction_type(); }

  /// Number of patch tokens N = (H/p)(W/p) of x0 [B, C, H, W]; throws unless p divides H and W.
  int64_t num_tokens(const Tensor& x0) const;
  /// N_keep = floor(N (1 - mask_ratio)), the visible tokens per row (MaskDiT's len_keep).
  int64_t num_kept(int64_t n) const;

  /// Fills t, eps and (mask_ratio > 0 only) extra["mask"].
  ObjectiveDraw draw(const NoiseSchedule& s, const Batch& b, at::Generator& gen) const override;

  ObjectiveOutput evaluate(const Network& net, const NoiseSchedule& s, const Batch& b,
                           const ObjectiveDraw& d) const override;

  /// [B, C, H, W] -> [B, N, p^2 C], token i (W/p) + j = patch (i, j), values ordered (py, px, c)
  /// (MaskDiT's patchify layout).
  Tensor patchify(const Tensor& x) const;

  MaskedDenoisingOptions options;

 private:
  detail::DenoisingCoreOptions core() const;
};

}  // namespace diffuse
