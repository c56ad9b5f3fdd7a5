// SPDX-License-Identifier: Apache-2.0
// The analytic Gaussian-mixture test bed of <diffuse/gaussian_mixture.h>: exact
// denoisers, densities and the probability-flow ODE solved with Dormand-Prince 5(4).
#include <diffuse/gaussian_mixture.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/noise.h>

namespace diffuse {

namespace {

/// (alpha, sigma) of the model times t [B] as 0-d tensors when all t agree (one schedule call),
/// else as [B] tensors, in x's dtype and device. Reads t on the host.
std::pair<Tensor, Tensor> gmm_alpha_sigma(const NoiseSchedule& schedule, const Tensor& t,
                                          const Tensor& x, const char* who) {
  check(t.defined() && t.numel() == x.size(0), who, ": t must have one entry per sample, got ",
        t.sizes(), " for x of shape ", x.sizes());
  const Tensor tc = t.to(at::kDouble).cpu().contiguous().reshape({-1});
  const double* tp = tc.data_ptr<double>();
  const int64_t b = tc.numel();
  if (std::all_of(tp, tp + b, [&](double v) { return v == tp[0]; })) {
    const TimePoint pt = schedule.at(tp[0]);
    return {at::scalar_tensor(pt.alpha, x.options()), at::scalar_tensor(pt.sigma, x.options())};
  }
  std::vector<double> av(b), sv(b);
  for (int64_t i = 0; i < b; ++i) {
    const TimePoint pt = schedule.at(tp[i]);
    av[i] = pt.alpha;
    sv[i] = pt.sigma;
  }
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  return {at::tensor(av, opts).to(x.options()), at::tensor(sv, opts).to(x.options())};
}

/// A 0-d or [B] per-sample scalar shaped to broadcast over x [B, ...].
Tensor per_sample(const Tensor& v, const Tensor& x) {
  if (v.dim() == 0) return v;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = -1;
  return v.reshape(shape);
}

/// An exact prediction expressed in parameterisation p (eps, x0, v = alpha eps - sigma x0 or the
/// flow velocity eps - x0).
Tensor gmm_output(const Prediction& pr, const Tensor& a, const Tensor& s, Parameterization p,
                  const Tensor& x) {
  switch (p) {
    case Parameterization::kEpsilon:
      return pr.eps;
    case Parameterization::kSample:
      return pr.x0;
    case Parameterization::kVelocity:
      return per_sample(a, x) * pr.eps - per_sample(s, x) * pr.x0;
    case Parameterization::kFlow:
      return pr.eps - pr.x0;
  }
  throw ConfigError("GaussianMixture network: unknown parameterization");
}

}  // namespace

GaussianMixture::GaussianMixture(const Tensor& weights, const Tensor& means,
                                 const Tensor& variances) {
  check(weights.defined() && means.defined() && variances.defined(),
        "GaussianMixture: weights, means and variances must be defined");
  check(weights.dim() == 1 && weights.size(0) >= 1,
        "GaussianMixture: weights must have shape [K], got ", weights.sizes());
  check(means.dim() == 2 && means.size(0) == weights.size(0) && means.size(1) >= 1,
        "GaussianMixture: means must have shape [K, D] with K = ", weights.size(0), ", got ",
        means.sizes());
  check(variances.sizes() == means.sizes(),
        "GaussianMixture: variances must have the shape of means ", means.sizes(), ", got ",
        variances.sizes());
  weights_ = weights.to(at::kDouble).cpu().contiguous();
  means_ = means.to(at::kDouble).cpu().contiguous();
  variances_ = variances.to(at::kDouble).cpu().contiguous();
  check(at::isfinite(means_).all().item<bool>(), "GaussianMixture: means must be finite");
  const double wmin = weights_.min().item<double>(), vmin = variances_.min().item<double>();
  check(std::isfinite(weights_.sum().item<double>()) && wmin > 0,
        "GaussianMixture: weights must be finite and > 0, got min ", wmin);
  check(at::isfinite(variances_).all().item<bool>() && vmin > 0,
        "GaussianMixture: variances must be finite and > 0, got min ", vmin);
  weights_ = weights_ / weights_.sum();
  log_weights_ = weights_.log();
}

GaussianMixture GaussianMixture::preset(const std::string& name) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  if (name == "mixture_2d") {
    const int64_t K = 8;
    Tensor w = at::empty({K}, f64), mu = at::empty({K, 2}, f64), v = at::empty({K, 2}, f64);
    for (int64_t k = 0; k < K; ++k) {
      const double th = 2 * kPi * static_cast<double>(k) / K + 0.3;
      w[k] = 1.0 + 0.25 * static_cast<double>(k % 4);
      mu[k][0] = 2.0 * std::cos(th);
      mu[k][1] = 2.0 * std::sin(th);
      const double s0 = 0.3 + 0.1 * static_cast<double>(k % 3),
                   s1 = 0.5 - 0.1 * static_cast<double>(k % 2);
      v[k][0] = s0 * s0;
      v[k][1] = s1 * s1;
    }
    return GaussianMixture(w, mu, v);
  }
  if (name == "mixture_16d") {
    const int64_t K = 5, D = 16;
    Tensor w = at::empty({K}, f64), mu = at::empty({K, D}, f64), v = at::empty({K, D}, f64);
    for (int64_t k = 0; k < K; ++k) {
      w[k] = 1.0 + 0.5 * static_cast<double>(k % 3);
      for (int64_t d = 0; d < D; ++d) {
        mu[k][d] = 0.6 * std::sin(1.3 * static_cast<double>((k + 1) * (d + 1)) +
                                  0.7 * static_cast<double>(k));
        v[k][d] = 0.3 + 0.25 * static_cast<double>((k + d) % 3);
      }
    }
    return GaussianMixture(w, mu, v);
  }
  throw ConfigError("unknown Gaussian mixture preset '" + name +
                    "'; valid: " + detail::join(preset_names()));
}

Tensor GaussianMixture::mean() const { return (weights_.unsqueeze(1) * means_).sum(0); }

Tensor GaussianMixture::covariance() const {
  const Tensor m = mean();
  const Tensor d = means_ - m;  // [K, D]
  return at::diag((weights_.unsqueeze(1) * variances_).sum(0)) +
         at::matmul(d.t() * weights_.unsqueeze(0), d);
}

GmmSamples GaussianMixture::sample(int64_t n, at::Generator& gen,
                                   const c10::TensorOptions& options) const {
  check(n >= 1, "GaussianMixture::sample: n must be >= 1, got ", n);
  Tensor labels = at::multinomial(weights_, n, /*replacement=*/true, gen);
  Tensor z = at::randn({n, dim()}, gen, at::TensorOptions().dtype(at::kDouble));
  Tensor x0 = means_.index_select(0, labels) + variances_.index_select(0, labels).sqrt() * z;
  return {x0.to(options.device(), options.dtype().toScalarType()), labels.to(options.device())};
}

GmmSamples GaussianMixture::sample(int64_t n, uint64_t seed,
                                   const c10::TensorOptions& options) const {
  at::Generator gen = detail::cpu_generator(seed);
  return sample(n, gen, options);
}

Tensor GaussianMixture::log_responsibilities(const Tensor& x, const Tensor& alpha,
                                             const Tensor& sigma) const {
  Parts p = parts(x, alpha, sigma);
  return at::log_softmax(p.logits, 1);
}

Tensor GaussianMixture::log_prob(const Tensor& x, const TimePoint& at) const {
  Parts p = parts(x, scalar(at.alpha, x), scalar(at.sigma, x));
  return at::logsumexp(p.logits, 1);
}

Prediction GaussianMixture::predict(const Tensor& x, const Tensor& alpha, const Tensor& sigma,
                                    const Tensor& labels) const {
  Parts p = parts(x, alpha, sigma);
  Tensor r = at::softmax(p.logits, 1);  // [B, K]
  if (labels.defined()) r = apply_labels(r, labels);
  return average(p, r, x);
}

Prediction GaussianMixture::predict_tilted(const Tensor& x, const Tensor& alpha,
                                           const Tensor& sigma, const Tensor& log_tilt) const {
  Parts p = parts(x, alpha, sigma);
  check(log_tilt.defined() && (log_tilt.sizes() == p.logits.sizes() ||
                               (log_tilt.dim() == 1 && log_tilt.size(0) == num_components())),
        "GaussianMixture::predict_tilted: log_tilt must have shape [B, K] = ", p.logits.sizes(),
        " or [K], got ", log_tilt.sizes());
  return average(p, at::softmax(p.logits + log_tilt.to(p.logits.options()), 1), x);
}

Prediction GaussianMixture::predict(const Tensor& x, const TimePoint& at,
                                    const Tensor& labels) const {
  return predict(x, scalar(at.alpha, x), scalar(at.sigma, x), labels);
}

Tensor GaussianMixture::x0(const Tensor& x, const TimePoint& at, const Tensor& labels) const {
  return predict(x, at, labels).x0;
}

Network GaussianMixture::network(std::shared_ptr<const NoiseSchedule> schedule,
                                 Parameterization p) const {
  check(schedule != nullptr,
        "GaussianMixture::network needs a schedule to map t to (alpha, sigma)");
  GaussianMixture self = *this;
  return [self, schedule, p](const Tensor& x, const Tensor& t, const Conditioning& c) {
    const auto [a, s] = gmm_alpha_sigma(*schedule, t, x, "GaussianMixture network");
    return gmm_output(self.predict(x, a, s, c.value), a, s, p, x);
  };
}

Network GaussianMixture::imperfect_network(std::shared_ptr<const NoiseSchedule> schedule,
                                           double delta, double bias, Parameterization p) const {
  check(std::isfinite(delta) && delta > -1,
        "GaussianMixture::imperfect_network: delta must be > -1, got ", delta);
  check(std::isfinite(bias), "GaussianMixture::imperfect_network: bias must be finite, got ", bias);
  check(schedule != nullptr,
        "GaussianMixture::imperfect_network needs a schedule to map t to (alpha, sigma)");
  GaussianMixture self = *this;
  return [self, schedule, delta, bias, p](const Tensor& x, const Tensor& t, const Conditioning& c) {
    const auto [a, s] = gmm_alpha_sigma(*schedule, t, x, "GaussianMixture imperfect network");
    Prediction pr = self.predict(x, a, s, c.value);
    Tensor eps = pr.eps;
    if (delta != 0.0) eps = eps * (1.0 + delta);
    if (bias != 0.0) eps = eps + at::tanh(x) * bias;
    if (p == Parameterization::kEpsilon) return eps;
    const Tensor ab = per_sample(a, x);
    pr.x0 = at::where(ab > 0, (x - per_sample(s, x) * eps) / ab, pr.x0);
    pr.eps = eps;
    return gmm_output(pr, a, s, p, x);
  };
}

Tensor GaussianMixture::solve_ode(const Tensor& x, const TimePoint& from, const TimePoint& to,
                                  const Tensor& labels, const GmmOdeOptions& options,
                                  GmmOdeStats* stats) const {
  check(options.rtol() > 0 && options.atol() > 0,
        "GmmOdeOptions: rtol and atol must be > 0, got rtol=", options.rtol(),
        " atol=", options.atol());
  check(options.lambda_limit() >= 10, "GmmOdeOptions.lambda_limit must be >= 10, got ",
        options.lambda_limit());
  check(options.max_steps() >= 1, "GmmOdeOptions.max_steps must be >= 1, got ",
        options.max_steps());
  check(x.defined() && x.dim() >= 1 && x.size(0) >= 1,
        "GaussianMixture::solve_ode: x needs a batch dimension");
  for (const TimePoint* p : {&from, &to})
    check(std::isfinite(p->alpha) && std::isfinite(p->sigma) && p->alpha >= 0 && p->sigma >= 0 &&
              (p->alpha > 0 || p->sigma > 0),
          "GaussianMixture::solve_ode: invalid time point t=", p->t, " alpha=", p->alpha,
          " sigma=", p->sigma);
  GmmOdeStats local;
  GmmOdeStats& st = stats ? *stats : local;
  st = {};
  const double lim = options.lambda_limit();
  const double l0 = std::clamp(from.log_snr(), -lim, lim), l1 = std::clamp(to.log_snr(), -lim, lim);
  Tensor u = x.to(at::kDouble).reshape({x.size(0), -1}) / std::hypot(from.alpha, from.sigma);
  check(u.size(1) == dim(), "GaussianMixture::solve_ode: x has ", u.size(1),
        " elements per sample, the mixture ", dim());
  Tensor lab = labels.defined() ? labels.to(u.device()) : labels;
  if (l0 != l1) u = dopri5(u, l0, l1, lab, options, st);
  return (u * std::hypot(to.alpha, to.sigma)).reshape(x.sizes()).to(x.scalar_type());
}

Tensor GaussianMixture::scalar(double v, const Tensor& like) {
  return at::scalar_tensor(v, like.options());
}

GaussianMixture::Parts GaussianMixture::parts(const Tensor& x_in, const Tensor& alpha,
                                              const Tensor& sigma) const {
  check(x_in.defined() && x_in.dim() >= 1, "GaussianMixture: x needs a batch dimension");
  const int64_t b = x_in.size(0);
  const Tensor x = x_in.reshape({b, -1});
  check(x.size(1) == dim(), "GaussianMixture: x has ", x.size(1),
        " elements per sample, the mixture has D = ", dim());
  const auto opts = x.options();
  auto shape_ab = [&](const Tensor& t, const char* what) {
    check(t.defined() && (t.dim() == 0 || t.numel() == b), "GaussianMixture: ", what,
          " must be a scalar or have one entry per sample, got ", t.sizes());
    Tensor o = t.to(opts);
    return o.dim() == 0 ? o : o.reshape({b, 1, 1});
  };
  Parts p;
  p.a = shape_ab(alpha, "alpha");
  p.s = shape_ab(sigma, "sigma");
  p.mu = means_.to(opts).unsqueeze(0);
  p.v = variances_.to(opts).unsqueeze(0);
  const Tensor inv_var = (p.a * p.a * p.v + p.s * p.s).reciprocal();  // [1|B, K, D]
  const Tensor diff = x.unsqueeze(1) - p.a * p.mu;                    // [B, K, D]
  p.w = diff * inv_var;
  // log N(x; a mu_k, var_k) = -0.5 (sum_d diff^2 / var + sum_d log var + D log 2 pi)
  const Tensor quad = (p.w * diff).sum(-1);      // [B, K]
  const Tensor log_det = inv_var.log().sum(-1);  // [1|B, K]: -sum_d log var
  p.logits = log_weights_.to(opts).unsqueeze(0) + 0.5 * (log_det - quad) -
             0.5 * static_cast<double>(dim()) * std::log(2 * kPi);
  return p;
}

Prediction GaussianMixture::average(const Parts& p, const Tensor& r, const Tensor& x) {
  const Tensor rb = r.unsqueeze(1);  // [B, 1, K]
  const int64_t b = p.w.size(0);
  const Tensor a = p.a.dim() == 0 ? p.a : p.a.reshape({b, 1}),
               s = p.s.dim() == 0 ? p.s : p.s.reshape({b, 1});
  const Tensor x0 = at::matmul(r, p.mu.squeeze(0)) + a * at::bmm(rb, p.v * p.w).squeeze(1);
  const Tensor eps = s * at::bmm(rb, p.w).squeeze(1);
  return {x0.reshape(x.sizes()), eps.reshape(x.sizes())};
}

Tensor GaussianMixture::apply_labels(const Tensor& r, const Tensor& labels_in) const {
  const int64_t b = r.size(0), k = r.size(1);
  check(labels_in.numel() == b,
        "GaussianMixture: Conditioning.value must hold one component index per sample (", b,
        "), got shape ", labels_in.sizes());
  const Tensor labels = labels_in.reshape({b}).to(r.device()).to(at::kLong);
  const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
  check(lo >= -1 && hi < k, "GaussianMixture: component labels must be in [-1, ", k - 1,
        "], got range [", lo, ", ", hi, "]");
  const Tensor onehot = at::one_hot(labels.clamp_min(0), k).to(r.scalar_type());
  return at::where((labels >= 0).unsqueeze(1), onehot, r);
}

Tensor GaussianMixture::ode_rhs(const Tensor& u, double lambda, const Tensor& labels,
                                GmmOdeStats& st) const {
  ++st.evaluations;
  // a^2 = sigmoid(2 lambda), s^2 = sigmoid(-2 lambda), each without overflow.
  double a, s;
  if (lambda >= 0) {
    a = 1.0 / std::sqrt(1.0 + std::exp(-2 * lambda));
    s = std::exp(-lambda) * a;
  } else {
    s = 1.0 / std::sqrt(1.0 + std::exp(2 * lambda));
    a = std::exp(lambda) * s;
  }
  const Prediction p = predict(u, scalar(a, u), scalar(s, u), labels);
  return (p.x0 * s - p.eps * a) * (a * s);
}

Tensor GaussianMixture::dopri5(Tensor u, double l0, double l1, const Tensor& labels,
                               const GmmOdeOptions& o, GmmOdeStats& st) const {
  // Butcher tableau (Dormand & Prince 1980).
  constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
  constexpr double a21 = 1.0 / 5;
  constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
  constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
  constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561,
                   a54 = -212.0 / 729;
  constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                   a65 = -5103.0 / 18656;
  constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192, b5 = -2187.0 / 6784,
                   b6 = 11.0 / 84;
  // 5th minus embedded 4th order weights.
  constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920, e5 = -17253.0 / 339200,
                   e6 = 22.0 / 525, e7 = -1.0 / 40;
  const double dir = l1 > l0 ? 1.0 : -1.0;
  double lam = l0;
  double h = dir * std::min(0.05, std::abs(l1 - l0));
  Tensor k1 = ode_rhs(u, lam, labels, st);
  while (dir * (l1 - lam) > 0) {
    check(st.accepted + st.rejected < o.max_steps(),
          "GaussianMixture::solve_ode: no convergence within max_steps=", o.max_steps(),
          " (reached lambda=", lam, " of ", l1, ")");
    bool last = false;
    if (dir * (lam + h - l1) >= 0) {
      h = l1 - lam;
      last = true;
    }
    const Tensor k2 = ode_rhs(u + k1 * (h * a21), lam + c2 * h, labels, st);
    const Tensor k3 = ode_rhs(u + (k1 * a31 + k2 * a32) * h, lam + c3 * h, labels, st);
    const Tensor k4 = ode_rhs(u + (k1 * a41 + k2 * a42 + k3 * a43) * h, lam + c4 * h, labels, st);
    const Tensor k5 =
        ode_rhs(u + (k1 * a51 + k2 * a52 + k3 * a53 + k4 * a54) * h, lam + c5 * h, labels, st);
    const Tensor k6 = ode_rhs(u + (k1 * a61 + k2 * a62 + k3 * a63 + k4 * a64 + k5 * a65) * h,
                              lam + h, labels, st);
    const Tensor u5 = u + (k1 * b1 + k3 * b3 + k4 * b4 + k5 * b5 + k6 * b6) * h;
    const double lam_next = last ? l1 : lam + h;
    const Tensor k7 = ode_rhs(u5, lam_next, labels, st);
    const Tensor err = (k1 * e1 + k3 * e3 + k4 * e4 + k5 * e5 + k6 * e6 + k7 * e7) * h;
    const Tensor scale = at::maximum(u.abs(), u5.abs()) * o.rtol() + o.atol();
    const double en = (err.abs() / scale).max().item<double>();
    check_numerics(std::isfinite(en),
                   "GaussianMixture::solve_ode: non-finite state at lambda=", lam);
    const double fac = en == 0 ? 5.0 : std::clamp(0.9 * std::pow(en, -0.2), 0.2, 5.0);
    if (en <= 1) {
      ++st.accepted;
      u = u5;
      k1 = k7;
      lam = lam_next;
      h *= fac;
    } else {
      ++st.rejected;
      h *= std::min(fac, 1.0);
    }
  }
  return u;
}

ConditionalMixture::ConditionalMixture(GaussianMixture mixture, const Tensor& component_class,
                                       const Tensor& class_embeddings, double beta)
    : mixture_(std::move(mixture)), beta_(beta) {
  const int64_t k = mixture_.num_components();
  check(component_class.defined() && component_class.dim() == 1 && component_class.size(0) == k,
        "ConditionalMixture: component_class must have shape [K] = [", k, "], got ",
        component_class.defined() ? component_class.sizes() : c10::IntArrayRef{});
  check(!at::isFloatingType(component_class.scalar_type()),
        "ConditionalMixture: component_class must hold integer class indices, got dtype ",
        component_class.scalar_type());
  check(class_embeddings.defined() && class_embeddings.dim() == 2 && class_embeddings.size(0) >= 1,
        "ConditionalMixture: class_embeddings must have shape [C, E]");
  check(std::isfinite(beta) && beta > 0, "ConditionalMixture: beta must be finite and > 0, got ",
        beta);
  component_class_ = component_class.to(at::kLong).cpu().contiguous();
  embeddings_ = class_embeddings.to(at::kDouble).cpu().contiguous();
  check(at::isfinite(embeddings_).all().item<bool>(),
        "ConditionalMixture: class_embeddings must be finite");
  const int64_t c = embeddings_.size(0);
  const int64_t lo = component_class_.min().item<int64_t>(),
                hi = component_class_.max().item<int64_t>();
  check(lo >= 0 && hi < c, "ConditionalMixture: component_class values must be in [0, ", c - 1,
        "], got range [", lo, ", ", hi, "]");
  prior_ = at::zeros({c}, at::kDouble).index_add_(0, component_class_, mixture_.weights());
  check(prior_.min().item<double>() > 0,
        "ConditionalMixture: every class needs at least one component");
}

ConditionalMixture ConditionalMixture::preset(const std::string& name) {
  check(name == "classes_2d", "unknown conditional mixture preset '", name, "'; valid: classes_2d");
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t K = 9, C = 3, E = 8;
  Tensor w = at::ones({K}, f64), mu = at::empty({K, 2}, f64), v = at::full({K, 2}, 9.0, f64);
  Tensor cls = at::empty({K}, at::kLong);
  for (int64_t k = 0; k < K; ++k) {
    const double th = 2 * GaussianMixture::kPi * static_cast<double>(k) / K;
    mu[k][0] = 24.0 * std::cos(th);
    mu[k][1] = 24.0 * std::sin(th);
    cls[k] = k / 3;
  }
  // A fixed orthonormal set: Householder reflection of the identity by a fixed vector.
  Tensor u = at::empty({E}, f64);
  for (int64_t i = 0; i < E; ++i) u[i] = std::sin(1.7 * static_cast<double>(i + 1)) + 0.3;
  u = u / u.norm();
  const Tensor h = at::eye(E, f64) - 2.0 * at::outer(u, u);
  return ConditionalMixture(GaussianMixture(w, mu, v), cls, h.narrow(0, 0, C).contiguous(), 6.0);
}

Tensor ConditionalMixture::embed(const Tensor& classes, const c10::TensorOptions& options) const {
  check(classes.defined() && !at::isFloatingType(classes.scalar_type()),
        "ConditionalMixture::embed: classes must be integer class indices");
  const Tensor c = classes.reshape({-1}).to(at::kLong).cpu();
  if (c.numel() > 0) {
    const int64_t lo = c.min().item<int64_t>(), hi = c.max().item<int64_t>();
    check(lo >= 0 && hi < num_classes(), "ConditionalMixture::embed: classes must be in [0, ",
          num_classes() - 1, "], got range [", lo, ", ", hi, "]");
  }
  return embeddings_.index_select(0, c).to(options.device(), options.dtype().toScalarType());
}

Tensor ConditionalMixture::null_embedding(int64_t n, const c10::TensorOptions& options) const {
  return at::zeros({n, embedding_dim()}, options);
}

Tensor ConditionalMixture::class_log_probs(const Tensor& embedding) const {
  const Tensor e = checked_embedding(embedding, "ConditionalMixture::class_log_probs");
  return at::log_softmax(prior_.log().to(e.options()).unsqueeze(0) +
                             at::matmul(e, embeddings_.to(e.options()).t()) * beta_,
                         1);
}

Prediction ConditionalMixture::predict(const Tensor& x, const Tensor& alpha, const Tensor& sigma,
                                       const Tensor& embedding) const {
  if (!embedding.defined()) return mixture_.predict(x, alpha, sigma);
  const Tensor e = checked_embedding(embedding, "ConditionalMixture::predict");
  check(e.size(0) == x.size(0), "ConditionalMixture: embedding has ", e.size(0),
        " rows for a batch of ", x.size(0));
  const Tensor scores =
      at::matmul(e.to(x.options()), embeddings_.to(x.options()).t()) * beta_;  // [B, C]
  return mixture_.predict_tilted(x, alpha, sigma,
                                 scores.index_select(1, component_class_.to(x.device())));
}

Prediction ConditionalMixture::predict(const Tensor& x, const TimePoint& tp,
                                       const Tensor& embedding) const {
  return predict(x, at::scalar_tensor(tp.alpha, x.options()),
                 at::scalar_tensor(tp.sigma, x.options()), embedding);
}

Network ConditionalMixture::network(std::shared_ptr<const NoiseSchedule> schedule,
                                    Parameterization p) const {
  check(schedule != nullptr,
        "ConditionalMixture::network needs a schedule to map t to (alpha, sigma)");
  ConditionalMixture self = *this;
  return [self, schedule, p](const Tensor& x, const Tensor& t, const Conditioning& c) {
    const auto [a, s] = gmm_alpha_sigma(*schedule, t, x, "ConditionalMixture network");
    return gmm_output(self.predict(x, a, s, c.value), a, s, p, x);
  };
}

Tensor ConditionalMixture::nearest_component(const Tensor& x0) const {
  const Tensor x = x0.reshape({x0.size(0), -1}).to(at::kDouble).cpu();
  check(x.size(1) == mixture_.dim(), "ConditionalMixture::nearest_component: x has ", x.size(1),
        " elements per sample, the mixture ", mixture_.dim());
  return at::cdist(x, mixture_.means()).argmin(1);
}

Tensor ConditionalMixture::nearest_class(const Tensor& x0) const {
  return component_class_.index_select(0, nearest_component(x0));
}

Tensor ConditionalMixture::checked_embedding(const Tensor& e, const char* who) const {
  check(e.defined(), who, ": the embedding is undefined");
  check(at::isFloatingType(e.scalar_type()), who,
        ": the condition must be a floating-point embedding [B, ", embedding_dim(), "], got dtype ",
        e.scalar_type(), " (an integer class label? pass embed(labels))");
  check(e.dim() == 2 && e.size(1) == embedding_dim(), who, ": the embedding must have shape [B, ",
        embedding_dim(), "], got ", e.sizes());
  return e;
}

}  // namespace diffuse
