// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/weighting.h>. Compiled into libdiffuse (the objectives use it).
#include <diffuse/training/weighting.h>

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include <diffuse/config.h>
#include <diffuse/schedule.h>

namespace diffuse {

const std::vector<std::pair<std::string, LossWeighting>>& loss_weighting_names() {
  static const std::vector<std::pair<std::string, LossWeighting>> names{
      {"none", LossWeighting::none},
      {"min_snr", LossWeighting::min_snr},
      {"snr", LossWeighting::snr},
      {"truncated_snr", LossWeighting::truncated_snr},
      {"edm", LossWeighting::edm}};
  return names;
}

namespace detail {

void validate(const WeightingOptions& o) {
  check_enum(o.weighting(), loss_weighting_names(), "loss weighting");
  check(std::isfinite(o.snr_gamma()) && o.snr_gamma() > 0,
        "loss weighting: snr_gamma must be > 0, got ", o.snr_gamma());
  check(std::isfinite(o.sigma_data()) && o.sigma_data() > 0,
        "loss weighting: sigma_data must be > 0, got ", o.sigma_data());
}

WeightingOptions read_weighting(ConfigReader& r) {
  WeightingOptions o;
  o.weighting(r.get_enum("weighting", o.weighting(), loss_weighting_names()));
  o.snr_gamma(r.get_double("snr_gamma", o.snr_gamma()));
  o.sigma_data(r.get_double("sigma_data", o.sigma_data()));
  return o;
}

void write_weighting(const WeightingOptions& o, Config& c) {
  c["weighting"] = enum_name(o.weighting(), loss_weighting_names());
  c["snr_gamma"] = format_double(o.snr_gamma());
  c["sigma_data"] = format_double(o.sigma_data());
}

}  // namespace detail

at::Tensor loss_weights_from(const at::Tensor& alpha_in, const at::Tensor& sigma_in,
                             Parameterization p, const WeightingOptions& o) {
  detail::validate(o);
  const at::Tensor alpha = alpha_in.to(at::kDouble), sigma = sigma_in.to(at::kDouble);
  if (o.weighting() == LossWeighting::none) return at::ones_like(alpha);
  const at::Tensor a2 = alpha * alpha, s2 = sigma * sigma;
  const at::Tensor snr = a2 / s2;  // +inf at sigma = 0, 0 at alpha = 0
  // The x0-space factor c(t) with |param error|^2 = c |x0 error|^2 (see the file comment).
  auto to_param = [&](const at::Tensor& w_x0) -> at::Tensor {
    switch (p) {
      case Parameterization::kEpsilon:
        return w_x0 / snr;
      case Parameterization::kVelocity:
        return w_x0 * s2 / ((a2 + s2) * (a2 + s2));
      case Parameterization::kSample:
        return w_x0;
      case Parameterization::kFlow:
        // v = eps - x0: |v error| = (alpha + sigma) / sigma |x0 error|.
        return w_x0 * s2 / ((alpha + sigma) * (alpha + sigma));
    }
    return w_x0;
  };
  if (o.weighting() == LossWeighting::min_snr) {
    // epsilon: min(SNR, gamma) / SNR = min(1, gamma / SNR), finite at SNR = 0 and SNR = inf.
    if (p == Parameterization::kEpsilon) return at::clamp_max(o.snr_gamma() / snr, 1.0);
    return to_param(at::clamp_max(snr, o.snr_gamma()));
  }
  if (o.weighting() == LossWeighting::snr) {
    if (p == Parameterization::kEpsilon) return at::ones_like(alpha);
    return to_param(snr);
  }
  if (o.weighting() == LossWeighting::truncated_snr) {
    if (p == Parameterization::kEpsilon) return at::clamp_min(1.0 / snr, 1.0);  // max(SNR, 1) / SNR
    return to_param(at::clamp_min(snr, 1.0));
  }
  // edm: w_x0 = SNR + 1 / sigma_data^2.
  const double inv_sd2 = 1.0 / (o.sigma_data() * o.sigma_data());
  if (p == Parameterization::kEpsilon) return 1.0 + inv_sd2 / snr;
  return to_param(snr + inv_sd2);
}

at::Tensor loss_weights(const NoiseSchedule& s, const at::Tensor& t, Parameterization p,
                        const WeightingOptions& o) {
  check(t.defined() && t.dim() == 1, "loss weighting: t must be a 1-D tensor [B]");
  const auto dtype = at::isFloatingType(t.scalar_type()) ? t.scalar_type() : at::kFloat;
  if (o.weighting() == LossWeighting::none) {
    detail::validate(o);
    return at::ones(t.sizes(), t.options().dtype(dtype));
  }
  return loss_weights_from(s.alpha(t), s.sigma(t), p, o).to(t.device(), dtype);
}

}  // namespace diffuse
