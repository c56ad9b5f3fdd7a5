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

#include <cmath>
#include <memory>
#include <string>

#include <ATen/ATen.h>
#include <torch/arg.h>

#include <diffuse/objective.h>
#include <diffuse/registry.h>
#include <diffuse/training/objectives/detail/denoising_core.h>

namespace diffuse {

struct MaskedDenoisingOptions {
  /// What the network predicts: epsilon | v_prediction | sample. Default epsilon.
  TORCH_ARG(Parameterization, prediction_type) = Parameterization::kEpsilon;
  /// How t is drawn: uniform (default) or log_normal (p_mean, p_std).
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
  explicit MaskedDenoisingObjective(MaskedDenoisingOptions o = {}) : options(std::move(o)) {
    detail::validate(core());
    check(std::isfinite(options.mask_ratio()) && options.mask_ratio() >= 0 && options.mask_ratio() < 1,
          "masked_denoising: mask_ratio must be in [0, 1), got ", options.mask_ratio());
    check(std::isfinite(options.mae_weight()) && options.mae_weight() >= 0,
          "masked_denoising: mae_weight must be finite and >= 0, got ", options.mae_weight());
    check(options.patch_size() >= 1, "masked_denoising: patch_size must be >= 1, got ", options.patch_size());
  }

  /// Keys: prediction_type, time_sampling, p_mean, p_std, weighting, snr_gamma, sigma_data,
  /// mask_ratio, mae_weight, patch_size.
  static std::unique_ptr<Objective> from_config(const Config& c) {
    ConfigReader r(c, "masked_denoising");
    const detail::DenoisingCoreOptions core = detail::read_core(r);
    MaskedDenoisingOptions o;
    o.prediction_type(core.prediction_type()).time_sampling(core.time_sampling()).weighting(core.weighting());
    o.mask_ratio(r.get_double("mask_ratio", o.mask_ratio()));
    o.mae_weight(r.get_double("mae_weight", o.mae_weight()));
    o.patch_size(r.get_int("patch_size", o.patch_size()));
    r.finish();
    return std::make_unique<MaskedDenoisingObjective>(o);
  }
  Config to_config() const override {
    Config c;
    detail::write_core(core(), c);
    c["mask_ratio"] = format_double(options.mask_ratio());
    c["mae_weight"] = format_double(options.mae_weight());
    c["patch_size"] = std::to_string(options.patch_size());
    return c;
  }
  std::string name() const override { return "masked_denoising"; }
  Parameterization prediction_type() const override { return options.prediction_type(); }

  /// Number of patch tokens N = (H/p)(W/p) of x0 [B, C, H, W]; throws unless p divides H and W.
  int64_t num_tokens(const Tensor& x0) const {
    check(x0.defined() && x0.dim() == 4, "masked_denoising: x0 must be [B, C, H, W], got shape ",
          x0.defined() ? x0.sizes() : at::IntArrayRef{});
    const int64_t p = options.patch_size(), H = x0.size(2), W = x0.size(3);
    check(H % p == 0 && W % p == 0, "masked_denoising: patch_size=", p, " must divide H=", H, " and W=", W);
    return (H / p) * (W / p);
  }
  /// N_keep = floor(N (1 - mask_ratio)), the visible tokens per row (MaskDiT's len_keep).
  int64_t num_kept(int64_t n) const {
    return static_cast<int64_t>(std::floor(static_cast<double>(n) * (1.0 - options.mask_ratio())));
  }

  /// Fills t, eps and (mask_ratio > 0 only) extra["mask"].
  ObjectiveDraw draw(const NoiseSchedule& s, const Batch& b, at::Generator& gen) const override {
    detail::check_batch(b, "masked_denoising");
    const int64_t n = num_tokens(b.x0);
    const int64_t keep = num_kept(n);
    check(keep >= 1, "masked_denoising: mask_ratio=", options.mask_ratio(), " leaves no visible token of N=", n);
    ObjectiveDraw d;
    d.t = detail::draw_times(s, b.x0, gen, core());
    d.eps = detail::normal_like(b.x0, gen);
    if (options.mask_ratio() > 0) {
      const int64_t B = b.x0.size(0);
      const at::Tensor noise = at::rand({B, n}, gen, detail::generator_options(gen, at::kFloat));
      const at::Tensor order = noise.argsort(/*dim=*/1, /*descending=*/false);  // tokens in the order they are kept
      const at::Tensor rank = order.argsort(/*dim=*/1, /*descending=*/false);   // position of each token in that order
      d.extra["mask"] = rank.ge(keep).to(b.x0.device());
    }
    return d;
  }

  ObjectiveOutput evaluate(const Network& net, const NoiseSchedule& s, const Batch& b,
                           const ObjectiveDraw& d) const override {
    detail::check_batch(b, "masked_denoising");
    detail::check_draw(d, b, "masked_denoising");
    const at::Tensor& x0 = b.x0;
    const int64_t n = num_tokens(x0);
    const int64_t B = x0.size(0), C = x0.size(1), p = options.patch_size();
    const int64_t h = x0.size(2) / p, w = x0.size(3) / p;

    at::Tensor mask;
    if (auto it = d.extra.find("mask"); it != d.extra.end() && it->second.defined()) {
      mask = it->second;
      check(mask.scalar_type() == at::kBool && mask.dim() == 2 && mask.size(0) == B && mask.size(1) == n,
            "masked_denoising: extra[\"mask\"] must be bool [B, N] = [", B, ", ", n, "], got ",
            mask.scalar_type(), " ", mask.sizes());
      mask = mask.to(x0.device());
    }
    const bool use_mae = mask.defined() && options.mae_weight() > 0;
    if (use_mae) {
      check(p * p * C >= 2, "masked_denoising: the MAE target normalises each patch's p^2 C values and needs at "
            "least 2; patch_size=", p, " with C=", C, " gives ", p * p * C);
      check(!(options.prediction_type() == Parameterization::kEpsilon && s.at(s.t_max()).alpha == 0),
            "masked_denoising: epsilon prediction cannot give the MAE term's x0 at alpha = 0 (schedule '", s.name(),
            "' has zero terminal SNR); use prediction_type=v_prediction or sample, or mae_weight=0");
    }

    Conditioning cond = b.cond;
    if (mask.defined()) {
      cond.extra["mask"] = mask;
    } else {
      cond.extra.erase("mask");
    }
    const detail::ForwardScales f = detail::forward_scales(s, d.t, x0);
    const at::Tensor x_t = f.a * x0 + f.s * d.eps;
    const at::Tensor out = detail::call_network(net, x_t, d.t, cond, "masked_denoising");
    const at::Tensor target = detail::regression_target(options.prediction_type(), x0, d.eps, f);
    const at::Tensor diff = out - target;
    const at::Tensor err = diff * diff;
    const at::Tensor weight = detail::weights_for(f, core(), x0);

    ObjectiveOutput o;
    at::Tensor dsm, mae;
    if (!mask.defined()) {
      dsm = detail::mean_per_example(err) * weight;  // the "denoising" objective's computation
      mae = at::zeros({B}, x0.options());
    } else {
      // Mean over channels and over each p x p patch: [B, C, h, p, w, p] -> [B, N].
      const at::Tensor patch_err = err.reshape({B, C, h, p, w, p}).mean(at::IntArrayRef{1, 3, 5}).reshape({B, n});
      const at::Tensor visible = mask.logical_not().to(x0.scalar_type());
      dsm = (patch_err * visible).sum(1) / visible.sum(1).clamp_min(1) * weight;
      if (use_mae) {
        const at::Tensor x0_hat = detail::x0_from_output(options.prediction_type(), out, x_t, f);
        at::Tensor tgt = patchify(x_t);
        const at::Tensor mean = tgt.mean(-1, /*keepdim=*/true);
        const at::Tensor centred = tgt - mean;
        // Unbiased variance (torch.var's default, as in MaskDiT's mae_loss).
        const at::Tensor var = (centred * centred).sum(-1, /*keepdim=*/true) / static_cast<double>(p * p * C - 1);
        tgt = centred / (var + 1e-6).sqrt();
        const at::Tensor r = patchify(x0_hat) - tgt;
        const at::Tensor patch_mae = (r * r).mean(-1);  // [B, N]
        const at::Tensor masked = mask.to(x0.scalar_type());
        mae = (patch_mae * masked).sum(1) / masked.sum(1).clamp_min(1);
      } else {
        mae = at::zeros({B}, x0.options());
      }
    }
    o.loss = dsm + mae * options.mae_weight();
    o.terms["dsm"] = dsm;
    o.terms["mae"] = mae;
    return o;
  }

  /// [B, C, H, W] -> [B, N, p^2 C], token i (W/p) + j = patch (i, j), values ordered (py, px, c)
  /// (MaskDiT's patchify layout).
  Tensor patchify(const Tensor& x) const {
    const int64_t B = x.size(0), C = x.size(1), p = options.patch_size();
    const int64_t h = x.size(2) / p, w = x.size(3) / p;
    return x.reshape({B, C, h, p, w, p}).permute({0, 2, 4, 3, 5, 1}).reshape({B, h * w, p * p * C});
  }

  MaskedDenoisingOptions options;

 private:
  detail::DenoisingCoreOptions core() const {
    detail::DenoisingCoreOptions c;
    c.prediction_type(options.prediction_type()).time_sampling(options.time_sampling()).weighting(options.weighting());
    return c;
  }
};

DIFFUSE_REGISTER_OBJECTIVE(MaskedDenoisingObjective, "masked_denoising",
                           "MaskDiT: denoising loss on visible patches + MAE reconstruction of masked patches "
                           "(mask_ratio 0.5, mae_weight 0.1)");
// MaskDiT's network is EDM-preconditioned, so its x0 output D stays bounded at high noise; the
// same holds for v-prediction (x0 = alpha x - sigma v on VP schedules) but not for epsilon
// prediction, whose x0 = (x - sigma eps) / alpha makes the MAE term explode near t = T (measured on
// Fashion-MNIST with a fresh tiny DiT: MAE ~1200 with epsilon, ~0.7 with v). The alias therefore
// presets v_prediction.
DIFFUSE_REGISTER_OBJECTIVE_ALIAS(masked_denoising_maskdit, "maskdit", "masked_denoising",
                                 (Config{{"prediction_type", "v_prediction"}}),
                                 "MaskDiT (Zheng et al. 2024): masked_denoising with v-prediction (bounded x0 "
                                 "for the MAE term, like MaskDiT's EDM preconditioning)");

}  // namespace diffuse
