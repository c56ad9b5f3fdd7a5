// SPDX-License-Identifier: Apache-2.0
// Per-example loss weights w(t), shape [B], for a squared error measured in the space of the
// network's parameterisation (epsilon, v or x0).
//
// Every weighting is defined as a weight w_x0 on the x0 (data) error and converted. At a fixed
// x_t = alpha x0 + sigma eps, with SNR = alpha^2 / sigma^2 and v = alpha eps - sigma x0:
//   eps = (x_t - alpha x0) / sigma            =>  eps_hat - eps = -(alpha / sigma) (x0_hat - x0)
//   v_hat - v = alpha (eps_hat - eps) - sigma (x0_hat - x0)
//             = -((alpha^2 + sigma^2) / sigma) (x0_hat - x0)
// so  |eps error|^2 = SNR |x0 error|^2  and  |v error|^2 = ((alpha^2 + sigma^2)^2 / sigma^2) |x0 error|^2,
// which is (SNR + 1) |x0 error|^2 on variance-preserving schedules (alpha^2 + sigma^2 = 1,
// 1 / sigma^2 = SNR + 1). The weight in the parameterisation's space is therefore
//   epsilon:  w = w_x0 / SNR
//   v:        w = w_x0 sigma^2 / (alpha^2 + sigma^2)^2      (= w_x0 / (SNR + 1) when VP)
//   sample:   w = w_x0
//
// Weightings (w_x0):
//   none           w = 1 in the parameterisation's own space (the plain "simple" loss).
//   min_snr        w_x0 = min(SNR, gamma), gamma default 5 (Hang et al., "Efficient Diffusion Training
//                  via Min-SNR Weighting Strategy", ICCV 2023, Eq. 8-9). Checked against
//                  TiankaiHang/Min-SNR-Diffusion-Training guided_diffusion/gaussian_diffusion.py
//                  (eps: min(snr,k)/snr, START_X: min(snr,k)) and diffusers'
//                  examples/text_to_image/train_text_to_image.py (epsilon: min(snr,gamma)/snr,
//                  v_prediction: min(snr,gamma)/(snr+1), sample: min(snr,gamma)).
//                  epsilon is computed as min(1, gamma / SNR), so zero terminal SNR (alpha = 0,
//                  SNR = 0) gives gamma / 0 = inf -> weight 1 (the limit), never NaN; v gives 0 there.
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

#include <cmath>
#include <string>

#include <ATen/ATen.h>
#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/schedule.h>

namespace diffuse {

struct WeightingOptions {
  /// "none" | "min_snr" | "snr" | "truncated_snr" | "edm". Default none.
  TORCH_ARG(std::string, weighting) = "none";
  /// min_snr: gamma. Default 5 (Hang et al. 2023); must be > 0.
  TORCH_ARG(double, snr_gamma) = 5.0;
  /// edm: sigma_data. Default 0.5 (EDM); must be > 0.
  TORCH_ARG(double, sigma_data) = 0.5;
};

namespace detail {

inline const std::vector<std::string>& weighting_names() {
  static const std::vector<std::string> names{"none", "min_snr", "snr", "truncated_snr", "edm"};
  return names;
}

inline void validate(const WeightingOptions& o) {
  bool known = false;
  for (const auto& n : weighting_names()) known = known || n == o.weighting();
  check(known, "loss weighting '", o.weighting(), "' is not one of: ", join(weighting_names()));
  check(std::isfinite(o.snr_gamma()) && o.snr_gamma() > 0, "loss weighting: snr_gamma must be > 0, got ",
        o.snr_gamma());
  check(std::isfinite(o.sigma_data()) && o.sigma_data() > 0, "loss weighting: sigma_data must be > 0, got ",
        o.sigma_data());
}

inline WeightingOptions read_weighting(ConfigReader& r) {
  WeightingOptions o;
  o.weighting(r.get_choice("weighting", o.weighting(), weighting_names()));
  o.snr_gamma(r.get_double("snr_gamma", o.snr_gamma()));
  o.sigma_data(r.get_double("sigma_data", o.sigma_data()));
  return o;
}
inline void write_weighting(const WeightingOptions& o, Config& c) {
  c["weighting"] = o.weighting();
  c["snr_gamma"] = format_double(o.snr_gamma());
  c["sigma_data"] = format_double(o.sigma_data());
}

}  // namespace detail

/// The weights from per-example alpha and sigma (any shape; returned in float64).
inline at::Tensor loss_weights_from(const at::Tensor& alpha_in, const at::Tensor& sigma_in, Parameterization p,
                                    const WeightingOptions& o = {}) {
  detail::validate(o);
  const at::Tensor alpha = alpha_in.to(at::kDouble), sigma = sigma_in.to(at::kDouble);
  if (o.weighting() == "none") return at::ones_like(alpha);
  const at::Tensor a2 = alpha * alpha, s2 = sigma * sigma;
  const at::Tensor snr = a2 / s2;  // +inf at sigma = 0, 0 at alpha = 0
  // The x0-space factor c(t) with |param error|^2 = c |x0 error|^2 (see the file comment).
  auto to_param = [&](const at::Tensor& w_x0) -> at::Tensor {
    switch (p) {
      case Parameterization::kEpsilon: return w_x0 / snr;
      case Parameterization::kVelocity: return w_x0 * s2 / ((a2 + s2) * (a2 + s2));
      case Parameterization::kSample: return w_x0;
    }
    return w_x0;
  };
  if (o.weighting() == "min_snr") {
    // epsilon: min(SNR, gamma) / SNR = min(1, gamma / SNR), finite at SNR = 0 and SNR = inf.
    if (p == Parameterization::kEpsilon) return at::clamp_max(o.snr_gamma() / snr, 1.0);
    return to_param(at::clamp_max(snr, o.snr_gamma()));
  }
  if (o.weighting() == "snr") {
    if (p == Parameterization::kEpsilon) return at::ones_like(alpha);
    return to_param(snr);
  }
  if (o.weighting() == "truncated_snr") {
    if (p == Parameterization::kEpsilon) return at::clamp_min(1.0 / snr, 1.0);  // max(SNR, 1) / SNR
    return to_param(at::clamp_min(snr, 1.0));
  }
  // edm: w_x0 = SNR + 1 / sigma_data^2.
  const double inv_sd2 = 1.0 / (o.sigma_data() * o.sigma_data());
  if (p == Parameterization::kEpsilon) return 1.0 + inv_sd2 / snr;
  return to_param(snr + inv_sd2);
}

/// The weights at model times t (shape [B]) for schedule s, in t's dtype and on t's device.
inline at::Tensor loss_weights(const NoiseSchedule& s, const at::Tensor& t, Parameterization p,
                               const WeightingOptions& o = {}) {
  check(t.defined() && t.dim() == 1, "loss weighting: t must be a 1-D tensor [B]");
  const auto dtype = at::isFloatingType(t.scalar_type()) ? t.scalar_type() : at::kFloat;
  if (o.weighting() == "none") {
    detail::validate(o);
    return at::ones(t.sizes(), t.options().dtype(dtype));
  }
  return loss_weights_from(s.alpha(t), s.sigma(t), p, o).to(t.device(), dtype);
}

}  // namespace diffuse
