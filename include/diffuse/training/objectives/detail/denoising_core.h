// SPDX-License-Identifier: Apache-2.0
// Pieces shared by the "denoising" and "masked_denoising" objectives: the common options
// (prediction type, time sampling, loss weighting), the draws of t and eps, the forward process,
// the regression target of each parameterisation and the x0 a network output stands for.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/arg.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/objective.h>
#include <diffuse/schedule.h>
#include <diffuse/training/time_sampling.h>
#include <diffuse/training/weighting.h>

namespace diffuse::detail {

/// The options every denoising-score-matching objective shares.
struct DenoisingCoreOptions {
  /// What the network is trained to predict: epsilon, v_prediction (v = alpha eps - sigma x0) or
  /// sample (x0). Default epsilon.
  TORCH_ARG(Parameterization, prediction_type) = Parameterization::kEpsilon;
  /// How t is drawn. Default uniform.
  TORCH_ARG(TimeSamplingOptions, time_sampling) = {};
  /// Per-example loss weight. Default none.
  TORCH_ARG(WeightingOptions, weighting) = {};
};

/// The shared options of an objective's options `o` (any type with the three fields).
template <class O>
DenoisingCoreOptions core_of(const O& o) {
  DenoisingCoreOptions c;
  c.prediction_type(o.prediction_type()).time_sampling(o.time_sampling()).weighting(o.weighting());
  return c;
}

/// Sets the shared fields of an objective's options `o` from `c`.
template <class O>
void apply_core(const DenoisingCoreOptions& c, O& o) {
  o.prediction_type(c.prediction_type()).time_sampling(c.time_sampling()).weighting(c.weighting());
}

inline void validate(const DenoisingCoreOptions& o) {
  validate(o.time_sampling());
  validate(o.weighting());
}

/// Config keys: prediction_type, time_sampling, p_mean, p_std, weighting, snr_gamma, sigma_data.
inline DenoisingCoreOptions read_core(ConfigReader& r) {
  DenoisingCoreOptions o;
  o.prediction_type(
      parse_parameterization(r.get_string("prediction_type", to_string(o.prediction_type()))));
  o.time_sampling(read_time_sampling(r));
  o.weighting(read_weighting(r));
  return o;
}
inline void write_core(const DenoisingCoreOptions& o, Config& c) {
  c["prediction_type"] = to_string(o.prediction_type());
  write_time_sampling(o.time_sampling(), c);
  write_weighting(o.weighting(), c);
}

inline void check_batch(const Batch& b, const std::string& owner) {
  check(b.x0.defined(), owner, ": the batch has no data (x0 is undefined)");
  check(b.x0.dim() >= 2 && b.x0.size(0) > 0, owner, ": x0 must be [B, ...] with B > 0, got shape ",
        b.x0.sizes());
  check(at::isFloatingType(b.x0.scalar_type()), owner, ": x0 must be floating point, got ",
        b.x0.scalar_type());
}

inline void check_draw(const ObjectiveDraw& d, const Batch& b, const std::string& owner) {
  check(d.t.defined() && d.t.dim() == 1 && d.t.size(0) == b.x0.size(0), owner,
        ": the draw's t must have shape [B] = [", b.x0.size(0), "], got ",
        d.t.defined() ? d.t.sizes() : at::IntArrayRef{});
  check(d.eps.defined() && d.eps.sizes() == b.x0.sizes(), owner,
        ": the draw's eps must have x0's shape ", b.x0.sizes(), ", got ",
        d.eps.defined() ? d.eps.sizes() : at::IntArrayRef{});
}

/// N(0, I) shaped like x: drawn in float32 on the generator's device, then moved to x's device
/// and dtype (a CPU generator gives the same noise on every device; see src/noise.cpp).
inline at::Tensor normal_like(const at::Tensor& x, at::Generator& gen) {
  return at::randn(x.sizes(), gen, generator_options(gen, at::kFloat))
      .to(x.device(), x.scalar_type());
}

/// [B] -> [B, 1, ..., 1] so it broadcasts against like.
inline at::Tensor per_example(const at::Tensor& v, const at::Tensor& like) {
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return v.reshape(shape);
}

/// alpha(t), sigma(t) as [B, 1, ..., 1] in x0's dtype on x0's device.
struct ForwardScales {
  at::Tensor alpha, sigma;  // [B]
  at::Tensor a, s;          // broadcastable against x0
};
inline ForwardScales forward_scales(const NoiseSchedule& sched, const at::Tensor& t,
                                    const at::Tensor& x0) {
  ForwardScales f;
  f.alpha = sched.alpha(t).to(x0.device(), x0.scalar_type());
  f.sigma = sched.sigma(t).to(x0.device(), x0.scalar_type());
  f.a = per_example(f.alpha, x0);
  f.s = per_example(f.sigma, x0);
  return f;
}

/// The regression target: eps, v = alpha eps - sigma x0, x0, or the flow velocity eps - x0.
inline at::Tensor regression_target(Parameterization p, const at::Tensor& x0, const at::Tensor& eps,
                                    const ForwardScales& f) {
  switch (p) {
    case Parameterization::kEpsilon:
      return eps;
    case Parameterization::kVelocity:
      return f.a * eps - f.s * x0;
    case Parameterization::kSample:
      return x0;
    case Parameterization::kFlow:
      return eps - x0;
  }
  return eps;
}

/// The x0 that network output `out` at x_t stands for (Denoiser::convert with per-example scales).
inline at::Tensor x0_from_output(Parameterization p, const at::Tensor& out, const at::Tensor& x_t,
                                 const ForwardScales& f) {
  switch (p) {
    case Parameterization::kEpsilon:
      return (x_t - f.s * out) / f.a;
    case Parameterization::kVelocity:
      return (f.a * x_t - f.s * out) / (f.a * f.a + f.s * f.s);
    case Parameterization::kSample:
      return out;
    case Parameterization::kFlow:
      return (x_t - f.s * out) / (f.a + f.s);
  }
  return out;
}

/// Calls the network and checks that its output has x_t's shape.
inline at::Tensor call_network(const Network& net, const at::Tensor& x_t, const at::Tensor& t,
                               const Conditioning& c, const std::string& owner) {
  check(static_cast<bool>(net), owner, ": the network is an empty function");
  at::Tensor out = net(x_t, t, c);
  check(out.defined(), owner, ": the network returned an undefined tensor");
  check(out.sizes() == x_t.sizes(), owner, ": the network returned shape ", out.sizes(),
        " but its input x_t has shape ", x_t.sizes());
  return out;
}

/// Mean over every dimension but the first: [B, ...] -> [B].
inline at::Tensor mean_per_example(const at::Tensor& v) {
  return v.reshape({v.size(0), -1}).mean(1);
}

/// The per-example weights in x0's dtype on x0's device.
inline at::Tensor weights_for(const ForwardScales& f, const DenoisingCoreOptions& o,
                              const at::Tensor& x0) {
  if (o.weighting().weighting() == LossWeighting::none) return at::ones({x0.size(0)}, x0.options());
  return loss_weights_from(f.alpha, f.sigma, o.prediction_type(), o.weighting())
      .to(x0.device(), x0.scalar_type());
}

/// Draws t (shape [B], x0's dtype and device) with the core's time-sampling options.
inline at::Tensor draw_times(const NoiseSchedule& s, const at::Tensor& x0, at::Generator& gen,
                             const DenoisingCoreOptions& o) {
  return sample_times(s, x0.size(0), gen, x0.options(), o.time_sampling());
}

}  // namespace diffuse::detail
