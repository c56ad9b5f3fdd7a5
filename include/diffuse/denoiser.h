// SPDX-License-Identifier: Apache-2.0
// Turns any network (x_t, t, cond) -> tensor into the pair (x0, eps) that every sampler uses, for
// the prediction types epsilon, v_prediction and sample, with optional x0 clipping and dynamic
// thresholding (Saharia et al. 2022). This is k-diffusion's external.py idea: the wrapper always
// returns both predictions, so samplers and corrections never re-derive them inconsistently.
#pragma once

#include <cmath>
#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <string>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/detail/fused.h>
#include <diffuse/schedule.h>

namespace diffuse {

namespace detail {

/// c as a 0-dim float32 CPU tensor: rounded to float32 to nearest (beyond the float range to
/// +-Inf, like the plain `t * c`; at::scalar_tensor itself would throw there).
inline Tensor float_factor(double c) {
  return at::scalar_tensor(fused::coefficient<float>(c), at::TensorOptions().dtype(at::kFloat));
}

/// `t * c` with the bits of the plain expression. Contiguous float32/float64 CPU tensors go through
/// a fused loop (detail/fused.h). Otherwise, for float32 tensors the factor goes in as a 0-dim
/// float32 CPU tensor: a double Scalar operand (what `t * c` passes) sends LibTorch 1.13's CPU
/// kernels through their dtype-casting loop, about 1 us more per [4, 4, 32, 32] op, while the
/// product is the same (both round c to float32 first). Other dtypes use the Scalar as before
/// (double needs no cast; half and bfloat16 multiply by the unrounded factor in float). A CPU 0-dim
/// operand is allowed next to CUDA tensors and passed as a kernel argument: no copy, no sync.
inline Tensor scaled(const Tensor& t, double c) {
  if (fused::can_fuse(t)) return fused::mul(t, c);
  if (t.scalar_type() == at::kFloat)
    return at::mul(t, float_factor(c));
  return t * c;
}

/// `t / c` with the bits of the plain expression (see scaled()).
inline Tensor divided(const Tensor& t, double c) {
  if (fused::can_fuse(t)) return fused::div(t, c);
  if (t.scalar_type() == at::kFloat)
    return at::div(t, float_factor(c));
  return t / c;
}

/// In place `t *= c` on a tensor the caller owns (see scaled()).
inline Tensor& scale_(Tensor& t, double c) {
  if (fused::can_fuse(t)) {
    fused::mul_(t, c);
  } else if (t.scalar_type() == at::kFloat) {
    t.mul_(float_factor(c));
  } else {
    t.mul_(c);
  }
  return t;
}

/// In place `t /= c` on a tensor the caller owns.
inline Tensor& divide_(Tensor& t, double c) {
  if (fused::can_fuse(t)) {
    fused::div_(t, c);
  } else if (t.scalar_type() == at::kFloat) {
    t.div_(float_factor(c));
  } else {
    t.div_(c);
  }
  return t;
}

/// a * ca + b * cb in a fresh tensor, rounded exactly like that expression (two products, then one
/// sum; at::add with alpha or addcmul would fuse a multiply-add and change the last bit).
inline Tensor lincomb(const Tensor& a, double ca, const Tensor& b, double cb) {
  if (fused::can_fuse(a, b)) return fused::lincomb(a, ca, b, cb);
  Tensor out = scaled(a, ca);
  if (out.scalar_type() != b.scalar_type() || out.device() != b.device() ||
      out.sizes() != b.sizes()) {
    return out + scaled(b, cb);
  }
  out.add_(scaled(b, cb));
  return out;
}

/// In place `x += e * c` (x.add_(scaled(e, c))) on a tensor x the caller owns; e is not changed.
inline Tensor& add_scaled_(Tensor& x, const Tensor& e, double c) {
  if (fused::can_fuse(x, e) && !fused::may_overlap(x, e)) {
    fused::add_scaled_(x, e, c, false);
  } else {
    x.add_(scaled(e, c));
  }
  return x;
}

/// In place `x -= e * c` (x.sub_(scaled(e, c))) on a tensor x the caller owns.
inline Tensor& sub_scaled_(Tensor& x, const Tensor& e, double c) {
  if (fused::can_fuse(x, e) && !fused::may_overlap(x, e)) {
    fused::add_scaled_(x, e, c, true);
  } else {
    x.sub_(scaled(e, c));
  }
  return x;
}

/// (a - b) * c in a fresh tensor: the rounded difference, then the rounded product.
inline Tensor diff_scaled(const Tensor& a, const Tensor& b, double c) {
  if (fused::can_fuse(a, b)) return fused::diff_scaled(a, b, c, false);
  Tensor d = a - b;
  return scale_(d, c);
}

/// (a - b) / c in a fresh tensor.
inline Tensor diff_divided(const Tensor& a, const Tensor& b, double c) {
  if (fused::can_fuse(a, b)) return fused::diff_scaled(a, b, c, true);
  Tensor d = a - b;
  return divide_(d, c);
}

/// (x - u * cu) / d in a fresh tensor, rounded like that expression.
inline Tensor solve(const Tensor& x, const Tensor& u, double cu, double d) {
  if (fused::can_fuse(x, u)) return fused::solve(x, u, cu, d);
  Tensor r = scaled(u, cu);
  // at::sub_out into r: only for one dtype, device and shape, and not under autograd (out= ops
  // do not record gradients).
  if (r.scalar_type() != x.scalar_type() || r.device() != x.device() || r.sizes() != x.sizes() ||
      r.requires_grad() || x.requires_grad()) {
    return divided(x - r, d);
  }
  at::sub_out(r, x, r);
  return divide_(r, d);
}

/// (a * ca + b * cb) / d in a fresh tensor, rounded like that expression.
inline Tensor lincomb_divided(const Tensor& a, double ca, const Tensor& b, double cb, double d) {
  if (fused::can_fuse(a, b)) return fused::lincomb_div(a, ca, b, cb, d);
  Tensor r = lincomb(a, ca, b, cb);
  return divide_(r, d);
}

}  // namespace detail

enum class Parameterization { kEpsilon, kSample, kVelocity };

/// "epsilon" | "v_prediction" (also "v") | "sample" (also "x0").
inline Parameterization parse_parameterization(const std::string& s) {
  if (s == "epsilon" || s == "eps") return Parameterization::kEpsilon;
  if (s == "v_prediction" || s == "v") return Parameterization::kVelocity;
  if (s == "sample" || s == "x0") return Parameterization::kSample;
  throw Error("unknown prediction_type '" + s + "'; valid: epsilon, v_prediction, sample");
}
inline std::string to_string(Parameterization p) {
  switch (p) {
    case Parameterization::kEpsilon: return "epsilon";
    case Parameterization::kVelocity: return "v_prediction";
    case Parameterization::kSample: return "sample";
  }
  return "?";
}

/// What the network is conditioned on. An undefined `value` means unconditional.
struct Conditioning {
  Tensor value;
  std::map<std::string, Tensor> extra;
};

/// Both predictions at one point: x0 (data) and eps (noise), related by x = alpha*x0 + sigma*eps.
struct Prediction {
  Tensor x0, eps;
};

/// A user network: (x_t, t of shape [B] in x's dtype, conditioning) -> output shaped like x_t.
using Network = std::function<Tensor(const Tensor& x_t, const Tensor& t, const Conditioning& c)>;

struct DenoiserOptions {
  /// What the network predicts. Default epsilon.
  Parameterization prediction_type = Parameterization::kEpsilon;
  /// Clamp x0 to [-clip_sample_range, clip_sample_range] (pixel-space models). Default off.
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  /// Dynamic thresholding: per sample, s = quantile(|x0|, ratio) clamped to [1, sample_max_value];
  /// x0 <- clamp(x0, -s, s) / s. Default off; ratio in (0, 1], sample_max_value finite and > 0.
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  /// After clipping/thresholding x0, re-derive eps from the clipped x0 (GLIDE/ADM). Default false,
  /// as in diffusers (DDIMScheduler.step's use_clipped_model_output): eps stays the model's own.
  bool use_clipped_model_output = false;
  /// The dtype the network computes in (its weights' dtype), if it differs from the sampler's.
  /// Samplers compute float16 / bfloat16 runs in float32 (Sampler::compute_dtype, as diffusers'
  /// schedulers upcast); with this set, x_t is cast to it for each network call and the output cast
  /// back, while t stays in the sampler's dtype (bfloat16 cannot hold t = 999; diffusers also feeds
  /// float32 timesteps to half-precision models). Default unset: the network gets x_t as is.
  std::optional<at::ScalarType> network_dtype = std::nullopt;
};

/// Network + parameterisation. Stateless and const: safe to share between threads.
class Denoiser {
 public:
  Denoiser(Network net, DenoiserOptions options = {}) : net_(std::move(net)), options_(options) {
    check(static_cast<bool>(net_), "Denoiser needs a network, got an empty function");
    check(options_.clip_sample_range > 0, "DenoiserOptions.clip_sample_range must be > 0, got ",
          options_.clip_sample_range);
    check(options_.dynamic_thresholding_ratio > 0 && options_.dynamic_thresholding_ratio <= 1,
          "DenoiserOptions.dynamic_thresholding_ratio must be in (0, 1], got ",
          options_.dynamic_thresholding_ratio);
    // Dividing by s = clamp(quantile, 1, sample_max_value) must stay finite.
    check(std::isfinite(options_.sample_max_value) && options_.sample_max_value > 0,
          "DenoiserOptions.sample_max_value must be finite and > 0, got ",
          options_.sample_max_value);
  }

  const DenoiserOptions& options() const { return options_; }

  /// Calls the network at `at` and checks that its output has x's shape.
  Tensor call_network(const Tensor& x, const TimePoint& at, const Conditioning& c) const {
    Tensor t = at::full({x.size(0)}, at.t, x.options());
    const bool cast = options_.network_dtype.has_value() && *options_.network_dtype != x.scalar_type();
    Tensor out = net_(cast ? x.to(*options_.network_dtype) : x, t, c);
    check(out.defined(), "the network returned an undefined tensor at t=", at.t);
    check(out.sizes() == x.sizes(), "the network returned shape ", out.sizes(), " at t=", at.t,
          " but its input x_t has shape ", x.sizes());
    return cast ? out.to(x.scalar_type()) : out;
  }

  /// Raw network output -> (x0, eps) at `at`, without clipping. Returns fresh tensors except the
  /// one that is `out` itself (eps for epsilon, x0 for sample prediction); never writes to `out` or
  /// x.
  Prediction convert(const Tensor& out, const Tensor& x, const TimePoint& at) const {
    const double a = at.alpha, s = at.sigma;
    Prediction p;
    switch (options_.prediction_type) {
      case Parameterization::kEpsilon:
        check(a > 0, "epsilon prediction cannot give x0 at alpha = 0 (t=", at.t,
              ", zero terminal SNR); use prediction_type=v_prediction or sample");
        p.eps = out;
        p.x0 = detail::solve(x, out, s, a);
        break;
      case Parameterization::kSample:
        check(s > 0, "sample prediction cannot give eps at sigma = 0 (t=", at.t, ")");
        p.x0 = out;
        p.eps = detail::solve(x, out, a, s);
        break;
      case Parameterization::kVelocity: {
        // v = alpha*eps - sigma*x0 and x = alpha*x0 + sigma*eps; solve for (x0, eps).
        const double n = a * a + s * s;
        p.x0 = detail::lincomb_divided(x, a, out, -s, n);
        p.eps = detail::lincomb_divided(x, s, out, a, n);
        break;
      }
    }
    return p;
  }

  /// Clipping / thresholding of x0 (eps re-derived from the clipped x0 if use_clipped_model_output).
  void finalize(Prediction& p, const Tensor& x, const TimePoint& at) const {
    if (!options_.clip_sample && !options_.thresholding) return;
    if (options_.thresholding) {
      p.x0 = threshold(p.x0);
    } else {
      p.x0 = p.x0.clamp(-options_.clip_sample_range, options_.clip_sample_range);
    }
    if (options_.use_clipped_model_output && at.sigma > 0) {
      p.eps = detail::solve(x, p.x0, at.alpha, at.sigma);
    }
  }

  /// The finished prediction for one branch.
  Prediction operator()(const Tensor& x, const TimePoint& at, const Conditioning& c) const {
    Prediction p = convert(call_network(x, at, c), x, at);
    finalize(p, x, at);
    return p;
  }

  Tensor threshold(const Tensor& x0) const {
    const auto dtype = x0.scalar_type();
    Tensor v = (dtype == at::kFloat || dtype == at::kDouble) ? x0 : x0.to(at::kFloat);
    const int64_t b = v.size(0);
    Tensor flat = v.reshape({b, -1});
    Tensor s = at::quantile(flat.abs(), options_.dynamic_thresholding_ratio, /*dim=*/1);
    s = at::clamp(s, 1.0, options_.sample_max_value).unsqueeze(1);
    flat = at::max(at::min(flat, s), -s) / s;
    return flat.reshape(x0.sizes()).to(dtype);
  }

 private:
  Network net_;
  DenoiserOptions options_;
};

namespace detail {
/// Checks that every defined tensor of `c` has one row per sample: dim >= 1 and size(0) == batch.
/// `which` names the conditioning in the error ("cond", "uncond").
inline void check_conditioning_batch(const Conditioning& c, int64_t batch, const char* which) {
  auto one = [&](const Tensor& v, const std::string& what) {
    if (!v.defined()) return;
    check(v.dim() >= 1 && v.size(0) == batch, "SampleOptions.", which, what, " has shape ",
          v.sizes(), " but the batch has ", batch,
          " samples: conditioning tensors need one row per sample");
  };
  one(c.value, ".value");
  for (const auto& kv : c.extra) one(kv.second, ".extra['" + kv.first + "']");
}
}  // namespace detail

}  // namespace diffuse
