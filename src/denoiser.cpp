// SPDX-License-Identifier: Apache-2.0
#include <diffuse/denoiser.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include <diffuse/detail/aten.h>
#include <diffuse/detail/fused.h>
#include <diffuse/detail/step_buffers.h>

namespace diffuse {

namespace fused = detail::fused;

const EnumNames<Parameterization>& parameterization_names() {
  static const EnumNames<Parameterization> names{
      {"epsilon", Parameterization::kEpsilon}, {"v_prediction", Parameterization::kVelocity},
      {"sample", Parameterization::kSample},   {"flow_prediction", Parameterization::kFlow},
      {"eps", Parameterization::kEpsilon},     {"v", Parameterization::kVelocity},
      {"x0", Parameterization::kSample},       {"flow", Parameterization::kFlow}};
  return names;
}

Parameterization parse_parameterization(const std::string& s) {
  return parse_enum(s, parameterization_names(), "prediction_type");
}

std::string to_string(Parameterization p) { return enum_name(p, parameterization_names()); }

Denoiser::Denoiser(Network net, DenoiserOptions options) : net_(std::move(net)), options_(options) {
  check(static_cast<bool>(net_), "Denoiser needs a network, got an empty function");
  check(!options_.learned_variance || !options_.edm_preconditioning,
        "DenoiserOptions: learned_variance and edm_preconditioning cannot be combined");
  check(options_.guided_channels >= 0, "DenoiserOptions.guided_channels must be >= 0, got ",
        options_.guided_channels);
  check(options_.clip_sample_range > 0, "DenoiserOptions.clip_sample_range must be > 0, got ",
        options_.clip_sample_range);
  check(options_.dynamic_thresholding_ratio > 0 && options_.dynamic_thresholding_ratio <= 1,
        "DenoiserOptions.dynamic_thresholding_ratio must be in (0, 1], got ",
        options_.dynamic_thresholding_ratio);
  // Dividing by s = clamp(quantile, 1, sample_max_value) must stay finite.
  check(std::isfinite(options_.sample_max_value) && options_.sample_max_value > 0,
        "DenoiserOptions.sample_max_value must be finite and > 0, got ", options_.sample_max_value);
  if (options_.edm_preconditioning) {
    check(std::isfinite(options_.sigma_data) && options_.sigma_data > 0,
          "DenoiserOptions.sigma_data must be finite and > 0, got ", options_.sigma_data);
    check(options_.prediction_type == Parameterization::kEpsilon ||
              options_.prediction_type == Parameterization::kVelocity,
          "EDM preconditioning takes prediction_type epsilon or v_prediction (the sign of c_out), "
          "got ",
          to_string(options_.prediction_type));
  }
}

namespace {
/// sigma_ve of an EDM-preconditioned call, checked.
double edm_sigma(const TimePoint& at) {
  const double s = at.sigma_ve();
  check(s > 0 && std::isfinite(s), "EDM preconditioning needs 0 < sigma_ve < inf at every model ",
        "call, got sigma_ve=", s, " at t=", at.t);
  return s;
}
}  // namespace

namespace {

/// at::full({n}, v, o), without LibTorch's fill dispatch for CPU float32/float64 (the same value:
/// v rounded to the dtype).
Tensor time_tensor(int64_t n, double v, const at::TensorOptions& o) {
  const auto dtype = o.dtype().toScalarType();
  if (!o.device().is_cpu() || (dtype != at::kFloat && dtype != at::kDouble))
    return at::full({n}, v, o);
  Tensor t = detail::step_empty({n}, o);
  if (dtype == at::kFloat) {
    std::fill_n(t.data_ptr<float>(), n, static_cast<float>(v));
  } else {
    std::fill_n(t.data_ptr<double>(), n, v);
  }
  return t;
}

}  // namespace

Tensor Denoiser::call_network(const Tensor& x, const TimePoint& at, const Conditioning& c) const {
  Tensor t;
  Tensor in = x;
  if (options_.edm_preconditioning) {
    const double s = edm_sigma(at);
    const double sd = options_.sigma_data;
    const double c_in = 1.0 / std::sqrt(s * s + sd * sd);
    t = time_tensor(x.size(0), 0.25 * std::log(s), x.options());
    in = at.alpha == 1.0 ? scaled(x, c_in) : scaled(divided(x, at.alpha), c_in);
  } else {
    t = time_tensor(x.size(0), at.t, x.options());
  }
  const bool cast =
      options_.network_dtype.has_value() && *options_.network_dtype != x.scalar_type();
  Tensor out = net_(cast ? in.to(*options_.network_dtype) : in, t, c);
  check(out.defined(), "the network returned an undefined tensor at t=", at.t);
  if (options_.learned_variance) {
    std::vector<int64_t> want(x.sizes().begin(), x.sizes().end());
    if (want.size() >= 2) want[1] *= 2;
    check(out.sizes() == at::IntArrayRef(want), "the network returned shape ", out.sizes(),
          " at t=", at.t, "; with learned_variance it must be x_t's ", x.sizes(),
          " with twice the channels (prediction, then variance)");
  } else {
    check(out.sizes() == x.sizes(), "the network returned shape ", out.sizes(), " at t=", at.t,
          " but its input x_t has shape ", x.sizes());
  }
  return cast ? out.to(x.scalar_type()) : out;
}

Prediction Denoiser::convert(const Tensor& raw, const Tensor& x, const TimePoint& at) const {
  return convert_checked(raw, x, at, nullptr);
}

Prediction Denoiser::convert_checked(const Tensor& raw, const Tensor& x, const TimePoint& at,
                                     int8_t* out_nonfinite) const {
  return convert_checked(raw, x, at, out_nonfinite, nullptr);
}

Prediction Denoiser::convert_checked(const Tensor& raw, const Tensor& x, const TimePoint& at,
                                     int8_t* out_nonfinite, const LinearUpdate* update) const {
  if (out_nonfinite != nullptr) *out_nonfinite = -1;
  // The step's update in the conversion pass: epsilon prediction, nothing that changes x0 later.
  // A second-order term needs its tensor fusable alongside x (else the step computes it all).
  const bool diff_ok =
      update == nullptr || update->diff == nullptr ||
      (update->form == LinearUpdate::Form::kXX0 && fused::can_fuse(x, *update->diff));
  if (update != nullptr && diff_ok && options_.prediction_type == Parameterization::kEpsilon &&
      !options_.edm_preconditioning && !options_.learned_variance && !options_.clip_sample &&
      !options_.thresholding && at.alpha > 0 && fused::can_fuse(x, raw)) {
    bool bad = false;
    Prediction p;
    p.eps = raw;
    p.x0 = fused::solve_update_checked(
        x, raw, at.sigma, at.alpha, update->form == LinearUpdate::Form::kXX0, update->ca,
        update->cb, &p.update, &bad, update->diff, update->c_diff, update->c_out);
    if (out_nonfinite != nullptr) *out_nonfinite = bad ? 1 : 0;
    return p;
  }
  // A learned-variance output [B, 2C, ...]: the prediction, then v.
  if (options_.learned_variance && raw.dim() >= 2 && x.dim() >= 2 && raw.size(1) == 2 * x.size(1)) {
    Prediction p = convert(raw.narrow(1, 0, x.size(1)), x, at);
    p.variance = raw.narrow(1, x.size(1), x.size(1));
    return p;
  }
  const Tensor& out = raw;
  // With a flag wanted and both operands fusable, each first pass over `out` below reads it too.
  const bool probe = out_nonfinite != nullptr && fused::can_fuse(x, out);
  bool bad = false;
  auto solve_ = [&](const Tensor& xs, const Tensor& u, double cu, double d) {
    return probe ? fused::solve_checked(xs, u, cu, d, &bad) : solve(xs, u, cu, d);
  };
  auto lincomb_div_ = [&](const Tensor& a, double ca, const Tensor& u, double cu, double d) {
    return probe ? fused::lincomb_div_checked(a, ca, u, cu, d, &bad)
                 : lincomb_divided(a, ca, u, cu, d);
  };
  auto done = [&](Prediction p) {
    if (probe) *out_nonfinite = bad ? 1 : 0;
    return p;
  };
  const double a = at.alpha, s = at.sigma;
  Prediction p;
  if (options_.edm_preconditioning) {
    const double sv = edm_sigma(at);
    const double sd = options_.sigma_data;
    const double c_skip = sd * sd / (sv * sv + sd * sd);
    double c_out = sv * sd / std::sqrt(sv * sv + sd * sd);
    if (options_.prediction_type == Parameterization::kVelocity) c_out = -c_out;
    const Tensor xa = a == 1.0 ? x : divided(x, a);
    p.x0 = probe ? fused::lincomb_checked(xa, c_skip, out, c_out, &bad)
                 : lincomb(xa, c_skip, out, c_out);
    p.eps = solve(x, p.x0, a, s);
    return done(std::move(p));
  }
  switch (options_.prediction_type) {
    case Parameterization::kEpsilon:
      check(a > 0, "epsilon prediction cannot give x0 at alpha = 0 (t=", at.t,
            ", zero terminal SNR); use prediction_type=v_prediction or sample");
      p.eps = out;
      p.x0 = solve_(x, out, s, a);
      break;
    case Parameterization::kSample:
      check(s > 0, "sample prediction cannot give eps at sigma = 0 (t=", at.t, ")");
      p.x0 = out;
      p.eps = solve_(x, out, a, s);
      break;
    case Parameterization::kVelocity: {
      // v = alpha*eps - sigma*x0 and x = alpha*x0 + sigma*eps; solve for (x0, eps).
      const double n = a * a + s * s;
      p.x0 = lincomb_div_(x, a, out, -s, n);
      p.eps = lincomb_divided(x, s, out, a, n);
      break;
    }
    case Parameterization::kFlow: {
      // v = eps - x0 and x = alpha*x0 + sigma*eps; alpha + sigma = 1 on the flow schedule.
      const double n = a + s;
      check(n > 0, "flow prediction needs alpha + sigma > 0 (t=", at.t, ")");
      p.x0 = lincomb_div_(x, 1.0, out, -s, n);
      p.eps = lincomb_divided(x, 1.0, out, a, n);
      break;
    }
  }
  return done(std::move(p));
}

void Denoiser::finalize(Prediction& p, const Tensor& x, const TimePoint& at) const {
  if (!options_.clip_sample && !options_.thresholding) return;
  if (options_.thresholding) {
    p.x0 = threshold(p.x0);
  } else {
    p.x0 = p.x0.clamp(-options_.clip_sample_range, options_.clip_sample_range);
  }
  if (options_.use_clipped_model_output && at.sigma > 0) {
    p.eps = solve(x, p.x0, at.alpha, at.sigma);
  }
}

Prediction Denoiser::operator()(const Tensor& x, const TimePoint& at, const Conditioning& c) const {
  Prediction p = convert(call_network(x, at, c), x, at);
  finalize(p, x, at);
  return p;
}

Tensor Denoiser::threshold(const Tensor& x0) const {
  const auto dtype = x0.scalar_type();
  Tensor v = (dtype == at::kFloat || dtype == at::kDouble) ? x0 : x0.to(at::kFloat);
  const int64_t b = v.size(0);
  Tensor flat = v.reshape({b, -1});
  Tensor s = at::quantile(flat.abs(), options_.dynamic_thresholding_ratio, /*dim=*/1);
  s = at::clamp(s, 1.0, options_.sample_max_value).unsqueeze(1);
  flat = at::max(at::min(flat, s), -s) / s;
  return flat.reshape(x0.sizes()).to(dtype);
}

namespace detail {
void check_conditioning_batch(const Conditioning& c, int64_t batch, const char* which) {
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
