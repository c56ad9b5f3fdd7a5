// SPDX-License-Identifier: Apache-2.0
// The Gaussian-mixture test bed checked against things it does not use itself: numerical
// quadrature of the posterior, Tweedie's formula on finite differences of the marginal density,
// the closed-form probability-flow ODE solution of a single Gaussian, and invariants.
#include "test_util.h"

#include <diffuse/gaussian_mixture.h>

namespace diffuse {
namespace {

using testing::ExpectTensorNear;

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

TimePoint vp_point(double lambda) {
  const double a = 1.0 / std::sqrt(1.0 + std::exp(-2 * lambda));
  return TimePoint{0.0, a, a * std::exp(-lambda)};
}

// E[x0 | x_t] by brute-force quadrature over a 2-D grid:
//   p(x0 | x_t) ∝ p(x0) N(x_t; alpha x0, sigma^2 I).
TEST(GaussianMixture, DenoiserMatchesQuadratureIn2D) {
  const auto gmm = GaussianMixture::preset("mixture_2d");
  const int64_t n = 801;
  const Tensor g = at::linspace(-6.0, 6.0, n, kF64);
  const Tensor gx = g.repeat_interleave(n), gy = g.repeat({n});
  const Tensor pts = at::stack({gx, gy}, 1);   // [n*n, 2]
  const Tensor log_prior = gmm.log_prob(pts);  // clean point: data density
  for (const auto& at :
       {TimePoint{0, 0.9, 0.35}, TimePoint{0, 0.6, 0.8}, TimePoint{0, 0.2, 0.98}}) {
    const Tensor xt = at::tensor({1.3, -0.4, -2.0, 0.7, 0.1, 2.2}, kF64).reshape({3, 2});
    for (int64_t i = 0; i < 3; ++i) {
      const Tensor d = xt[i].unsqueeze(0) - pts * at.alpha;
      const Tensor logw = log_prior - 0.5 * (d * d).sum(1) / (at.sigma * at.sigma);
      const Tensor w = at::softmax(logw, 0).unsqueeze(1);
      const Tensor expected = (w * pts).sum(0);
      ExpectTensorNear(gmm.x0(xt[i].unsqueeze(0), at).squeeze(0), expected, 1e-8, 1e-7,
                       "quadrature E[x0|x_t]");
    }
  }
  // The clean-point density integrates to one.
  const double h = 12.0 / (n - 1);
  EXPECT_NEAR(log_prior.exp().sum().item<double>() * h * h, 1.0, 1e-6);
}

// Tweedie: E[x0 | x_t] = (x_t + sigma^2 grad log p_t(x_t)) / alpha, the gradient by central
// differences of log_prob (which uses only the marginal density, not the posterior formula).
TEST(GaussianMixture, DenoiserSatisfiesTweedieOnFiniteDifferences) {
  for (const auto& name : GaussianMixture::preset_names()) {
    const auto gmm = GaussianMixture::preset(name);
    const Tensor x0 = gmm.sample(6, uint64_t{3}).x0;
    const Tensor eps = at::randn(x0.sizes(), detail::cpu_generator(4), kF64);
    for (double lambda : {-2.0, 0.0, 1.5, 3.0}) {
      const TimePoint at = vp_point(lambda);
      const Tensor xt = x0 * at.alpha + eps * at.sigma;
      const double step = 1e-5;
      Tensor grad = at::zeros_like(xt);
      for (int64_t d = 0; d < gmm.dim(); ++d) {
        Tensor e = at::zeros_like(xt);
        e.select(1, d).fill_(step);
        grad.select(1, d).copy_((gmm.log_prob(xt + e, at) - gmm.log_prob(xt - e, at)) / (2 * step));
      }
      const Tensor expected = (xt + grad * (at.sigma * at.sigma)) / at.alpha;
      const Prediction p = gmm.predict(xt, at);
      ExpectTensorNear(p.x0, expected, 1e-7, 1e-7, name + " Tweedie x0");
      ExpectTensorNear(p.x0 * at.alpha + p.eps * at.sigma, xt, 1e-12, 1e-12,
                       name + " x = alpha x0 + sigma eps");
    }
  }
}

TEST(GaussianMixture, ClassConditionalDenoiser) {
  const auto gmm = GaussianMixture::preset("mixture_2d");
  const int64_t K = gmm.num_components();
  const TimePoint at{0, 0.7, 0.714142842854285};
  const Tensor xt = at::tensor({0.5, -1.0, 2.0, 0.3, -0.7, -0.2}, kF64).reshape({3, 2});
  const Tensor uncond = gmm.x0(xt, at);
  // -1 is unconditional.
  ExpectTensorNear(gmm.x0(xt, at, at::full({3}, -1, at::kLong)), uncond, 0, 0, "label -1");
  // Label k: the conditional mean of component k alone (a one-component mixture).
  Tensor total = at::zeros_like(xt);
  const Tensor resp = gmm.log_responsibilities(xt, at::scalar_tensor(at.alpha, kF64),
                                               at::scalar_tensor(at.sigma, kF64))
                          .exp();
  for (int64_t k = 0; k < K; ++k) {
    const GaussianMixture one(at::ones({1}, kF64), gmm.means().narrow(0, k, 1),
                              gmm.variances().narrow(0, k, 1));
    const Tensor cond = gmm.x0(xt, at, at::full({3}, k, at::kLong));
    ExpectTensorNear(cond, one.x0(xt, at), 1e-14, 1e-14, "label k");
    total = total + resp.select(1, k).unsqueeze(1) * cond;
  }
  // Law of total expectation over the responsibilities.
  ExpectTensorNear(total, uncond, 1e-13, 1e-13, "sum_k p(k|x) E[x0|x,k]");
  // Mixed labels per sample, and float labels as a Conditioning would carry them.
  const Tensor mixed = gmm.x0(xt, at, at::tensor({2.0, -1.0, 5.0}, kF64));
  ExpectTensorNear(mixed[1], uncond[1], 0, 0, "mixed -1");
  ExpectTensorNear(mixed[0], gmm.x0(xt, at, at::full({3}, 2, at::kLong))[0], 0, 0, "mixed 2");
  EXPECT_THROW(gmm.x0(xt, at, at::full({3}, K, at::kLong)), Error);
  EXPECT_THROW(gmm.x0(xt, at, at::full({3}, -2, at::kLong)), Error);
}

TEST(GaussianMixture, NetworkAgreesForEveryParameterization) {
  const auto gmm = GaussianMixture::preset("mixture_16d");
  std::shared_ptr<const NoiseSchedule> vp = make_schedule("vp");
  const TimePoint at = vp->at(0.37);
  const Tensor xt = gmm.sample(5, uint64_t{1}).x0 * at.alpha +
                    at::randn({5, 16}, detail::cpu_generator(2), kF64) * at.sigma;
  const Prediction exact = gmm.predict(xt, at);
  for (auto p :
       {Parameterization::kEpsilon, Parameterization::kVelocity, Parameterization::kSample}) {
    DenoiserOptions o;
    o.prediction_type = p;
    const Denoiser d(gmm.network(vp, p), o);
    const Prediction got = d(xt, at, {});
    ExpectTensorNear(got.x0, exact.x0, 1e-12, 1e-12, to_string(p) + " x0");
    ExpectTensorNear(got.eps, exact.eps, 1e-12, 1e-12, to_string(p) + " eps");
  }
  // Per-sample times: each row at its own t.
  const Tensor ts = at::tensor({0.1, 0.37, 0.9, 0.37, 0.5}, kF64);
  const Tensor out = gmm.network(vp, Parameterization::kSample)(xt, ts, {});
  for (int64_t i = 0; i < 5; ++i) {
    const double t = ts[i].item<double>();
    ExpectTensorNear(out[i], gmm.x0(xt[i].unsqueeze(0), vp->at(t)).squeeze(0), 1e-14, 1e-14,
                     "per-sample t");
  }
  // Conditioning.value carries component indices; float32 input stays float32.
  Conditioning c;
  c.value = at::tensor({0, 1, -1, 4, 2}, at::kLong);
  const Tensor cond = gmm.network(vp, Parameterization::kSample)(xt, at::full({5}, at.t, kF64), c);
  ExpectTensorNear(cond, gmm.x0(xt, at, c.value), 0, 0, "conditional network");
  const Tensor f32 = gmm.network(vp)(xt.to(at::kFloat), at::full({5}, at.t, at::kFloat), {});
  EXPECT_EQ(f32.scalar_type(), at::kFloat);
  ExpectTensorNear(f32, exact.eps, 1e-4, 1e-4, "float32 network");
}

// One Gaussian N(mu, diag(v)): in VE units y = x / alpha the PF-ODE
//   dy/dsigma_ve = (y - E[x0|y]) / sigma_ve
// has the solution (y - mu) / sqrt(v + sigma_ve^2) = const.
Tensor single_gaussian_flow(const Tensor& x, const Tensor& mu, const Tensor& v,
                            const TimePoint& from, const TimePoint& to) {
  Tensor z;  // (y - mu) / sqrt(v + sigma_ve^2) at `from`
  if (from.alpha == 0) {
    z = x / from.sigma;  // the limit sigma_ve -> inf
  } else {
    const double s = from.sigma_ve();
    z = (x / from.alpha - mu) / (v + s * s).sqrt();
  }
  const double s1 = to.sigma_ve();
  return (mu + z * (v + s1 * s1).sqrt()) * to.alpha;
}

TEST(GaussianMixture, OdeMatchesSingleGaussianClosedForm) {
  const Tensor mu = at::tensor({0.5, -1.0, 2.0}, kF64);
  const Tensor v = at::tensor({0.04, 1.0, 2.5}, kF64);
  const GaussianMixture one(at::ones({1}, kF64), mu.unsqueeze(0), v.unsqueeze(0));
  const Tensor x = at::randn({16, 3}, detail::cpu_generator(11), kF64);
  struct Case {
    TimePoint from, to;
  };
  const Case cases[] = {
      {vp_point(-3.0), TimePoint{0, 1, 0}},                  // VP noisy -> clean
      {vp_point(-3.0), vp_point(2.5)},                       // VP -> VP
      {TimePoint{80, 1, 80}, TimePoint{0.1, 1, 0.1}},        // EDM scaling (alpha = 1)
      {TimePoint{1, 0, 1}, TimePoint{0, 1, 0}},              // flow matching: pure noise -> data
      {TimePoint{700, 0.3, 0.7}, TimePoint{200, 0.8, 0.2}},  // flow -> flow (alpha = 1 - sigma)
      {TimePoint{0, 1, 0}, vp_point(-1.0)},                  // clean -> noisy (encoding)
  };
  for (const auto& c : cases) {
    const Tensor xin =
        c.from.alpha == 0 ? x * c.from.sigma : (mu + x * 0.7) * c.from.alpha + x * c.from.sigma;
    GmmOdeStats st;
    const Tensor got = one.solve_ode(xin, c.from, c.to, {}, {}, &st);
    ExpectTensorNear(
        got, single_gaussian_flow(xin, mu, v, c.from, c.to), 1e-10, 1e-10,
        detail::cat("closed form from lambda ", c.from.log_snr(), " to ", c.to.log_snr()));
    EXPECT_GT(st.accepted, 5);
  }
  // A labelled solve in a mixture is the closed form of that component.
  const auto gmm = GaussianMixture::preset("mixture_2d");
  const Tensor xm = at::randn({8, 2}, detail::cpu_generator(5), kF64);
  const TimePoint from = vp_point(-2.5), to{0, 1, 0};
  const Tensor labels = at::arange(8, at::kLong);
  const Tensor got = gmm.solve_ode(xm, from, to, labels);
  for (int64_t k = 0; k < 8; ++k) {
    ExpectTensorNear(got[k],
                     single_gaussian_flow(xm[k], gmm.means()[k], gmm.variances()[k], from, to),
                     1e-10, 1e-10, "labelled solve");
  }
}

TEST(GaussianMixture, OdeInvariants) {
  const auto gmm = GaussianMixture::preset("mixture_16d");
  const TimePoint a = vp_point(-2.0), b = vp_point(0.5), c = vp_point(3.0);
  const Tensor x = at::randn({32, 16}, detail::cpu_generator(8), kF64);
  const Tensor ab = gmm.solve_ode(x, a, b), ac = gmm.solve_ode(x, a, c);
  // Composition: a -> b -> c equals a -> c; and the flow is invertible: c -> a returns x.
  ExpectTensorNear(gmm.solve_ode(ab, b, c), ac, 1e-9, 1e-9, "composition");
  ExpectTensorNear(gmm.solve_ode(ac, c, a), x, 1e-9, 1e-9, "round trip");
  // The endpoint depends on (alpha, sigma) only through lambda: rescaling both ends by constants
  // rescales the state and nothing else.
  const TimePoint a2{0, a.alpha * 3, a.sigma * 3}, c2{0, c.alpha * 0.5, c.sigma * 0.5};
  ExpectTensorNear(gmm.solve_ode(x * 3, a2, c2), ac * 0.5, 1e-9, 1e-9, "scale invariance");
  // Same lambda: identity. float32 in, float32 out.
  ExpectTensorNear(gmm.solve_ode(x, a, a), x, 0, 0, "identity");
  EXPECT_EQ(gmm.solve_ode(x.to(at::kFloat), a, c).scalar_type(), at::kFloat);
  // The flow carries the noise distribution onto the data distribution: moments of 4000 solves.
  const int64_t n = 4000;
  const Tensor z = at::randn({n, 16}, detail::cpu_generator(9), kF64);
  const Tensor data = gmm.solve_ode(z, TimePoint{1, 0, 1}, TimePoint{0, 1, 0}, {},
                                    GmmOdeOptions().rtol(1e-8).atol(1e-8));
  const Tensor m = data.mean(0);
  const Tensor cov = at::matmul((data - m).t(), data - m) / (n - 1);
  ExpectTensorNear(m, gmm.mean(), 0.06, 0, "pushed-forward mean");
  ExpectTensorNear(cov, gmm.covariance(), 0.1, 0, "pushed-forward covariance");
}

// Class-conditional sampling through diffuse::sample(): the guidance path batches the conditional
// labels with the unconditional ones (-1) into one network call.
struct ScaledGuidance final : Guidance {
  double w;
  explicit ScaledGuidance(double scale) : w(scale) {}
  Tensor combine(const Tensor& c, const Tensor& u, const StepContext&) const override {
    return u + (c - u) * w;
  }
  std::string name() const override { return "scaled"; }
  Config to_config() const override { return {}; }
};

TEST(GaussianMixture, ClassConditionalSamplingFollowsTheLabelledOde) {
  const auto gmm = GaussianMixture::preset("mixture_2d");
  std::shared_ptr<const NoiseSchedule> vp = make_schedule("vp");
  const Denoiser d(gmm.network(vp));
  const auto ddim = make_sampler("ddim");
  const Tensor noise = at::randn({8, 2}, detail::cpu_generator(21), kF64);
  const Tensor labels = at::tensor({0, 1, 2, 3, 4, 5, 6, 7}, at::kLong);
  auto run = [&](int64_t steps, double scale) {
    SampleOptions o;
    o.num_steps = steps;
    o.spacing =
        make_spacing("exponential", {{"final", "min"}, {"sigma_max", "20"}, {"sigma_min", "0.02"}});
    o.cond.value = labels;
    if (scale > 0) {
      o.guidance = std::make_shared<ScaledGuidance>(scale);
      o.uncond.value = at::full({8}, -1, at::kLong);
    }
    return std::make_pair(sample(*ddim, d, *vp, noise, o), make_grid(*vp, o));
  };
  // Guidance scale 1 is the conditional model alone.
  const auto [plain, grid] = run(50, 0);
  ExpectTensorNear(run(50, 1.0).first, plain, 1e-12, 1e-12, "guidance scale 1");
  // DDIM on the conditional model converges (first order) to the labelled ODE solution.
  const Tensor start = noise * std::hypot(grid.front().alpha, grid.front().sigma);
  const Tensor exact = gmm.solve_ode(start, grid.front(), grid.back(), labels);
  const double e50 = (plain - exact).pow(2).mean().sqrt().item<double>();
  const double e200 = (run(200, 0).first - exact).pow(2).mean().sqrt().item<double>();
  EXPECT_LT(e200, 0.02);
  EXPECT_NEAR(e50 / e200, 4.0, 0.8);
  // Scale 3 moves the samples (the unconditional branch is really used).
  EXPECT_GT((run(50, 3.0).first - plain).abs().max().item<double>(), 1e-3);
}

TEST(GaussianMixture, SamplingMatchesMomentsAndWeights) {
  const auto gmm = GaussianMixture::preset("mixture_2d");
  const int64_t n = 200000;
  const GmmSamples s = gmm.sample(n, uint64_t{7});
  ASSERT_EQ(s.x0.sizes(), (std::vector<int64_t>{n, 2}));
  const Tensor m = s.x0.mean(0);
  const Tensor cov = at::matmul((s.x0 - m).t(), s.x0 - m) / (n - 1);
  ExpectTensorNear(m, gmm.mean(), 0.015, 0, "sample mean");
  ExpectTensorNear(cov, gmm.covariance(), 0.03, 0, "sample covariance");
  const Tensor freq = at::bincount(s.labels, {}, gmm.num_components()).to(at::kDouble) / n;
  ExpectTensorNear(freq, gmm.weights(), 0.004, 0, "label frequencies");
  // Each draw sits near its own component: the standardised residuals have unit variance.
  const Tensor zres = (s.x0 - gmm.means().index_select(0, s.labels)) /
                      gmm.variances().index_select(0, s.labels).sqrt();
  EXPECT_NEAR(zres.var().item<double>(), 1.0, 0.01);
  // Seeded: the same seed gives the same draws; float32 options give float32.
  ExpectTensorNear(gmm.sample(10, uint64_t{7}).x0, gmm.sample(10, uint64_t{7}).x0, 0, 0,
                   "same seed");
  EXPECT_FALSE(at::equal(gmm.sample(10, uint64_t{7}).x0, gmm.sample(10, uint64_t{8}).x0));
  EXPECT_EQ(gmm.sample(3, uint64_t{1}, at::kFloat).x0.scalar_type(), at::kFloat);
}

TEST(GaussianMixture, BadInputIsAnError) {
  const Tensor w = at::ones({2}, kF64), mu = at::zeros({2, 3}, kF64), v = at::ones({2, 3}, kF64);
  EXPECT_THROW(GaussianMixture(at::tensor({1.0, -1.0}, kF64), mu, v), Error);
  EXPECT_THROW(GaussianMixture(w, mu, at::zeros({2, 3}, kF64)), Error);
  EXPECT_THROW(GaussianMixture(w, at::zeros({3, 3}, kF64), v), Error);
  EXPECT_THROW(GaussianMixture(w, mu, at::ones({2, 2}, kF64)), Error);
  try {
    GaussianMixture::preset("nope");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixture_2d"), std::string::npos) << e.what();
  }
  const GaussianMixture g(w, mu, v);
  EXPECT_THROW(g.x0(at::zeros({4, 2}, kF64), TimePoint{0, 1, 1}), Error);  // wrong D
  EXPECT_THROW(g.solve_ode(at::zeros({4, 3}, kF64), TimePoint{0, 1, 1}, TimePoint{0, 1, 0}, {},
                           GmmOdeOptions().rtol(0)),
               Error);
  EXPECT_THROW(g.solve_ode(at::zeros({4, 3}, kF64), TimePoint{0, 0, 0}, TimePoint{0, 1, 0}), Error);
  EXPECT_THROW(g.sample(0, uint64_t{1}), Error);
}

}  // namespace
}  // namespace diffuse

namespace diffuse {
namespace {

TEST(GaussianMixture, ImperfectNetworkIsScaledExactEpsPlusBias) {
  const auto gmm = GaussianMixture::preset("mixture_2d");
  std::shared_ptr<const NoiseSchedule> vp = make_schedule("vp");
  const Tensor x = randn({5, 2}, 3, at::kDouble);
  const Tensor t = at::full({5}, 0.4, at::kDouble);
  const Tensor exact = gmm.network(vp)(x, t, {});
  testing::ExpectTensorNear(gmm.imperfect_network(vp, 0.0, 0.0)(x, t, {}), exact, 0, 0, "identity");
  testing::ExpectTensorNear(gmm.imperfect_network(vp, 0.05, 0.1)(x, t, {}),
                            exact * 1.05 + at::tanh(x) * 0.1, 1e-15, 1e-14, "scaled + bias");
  EXPECT_THROW(gmm.imperfect_network(vp, -1.0), Error);
  // In another parameterisation the same eps_hat, with the x0 it implies: a flow Denoiser on the
  // flow schedule reads back exactly eps_hat (per-sample times, one of them pure noise, where
  // x0 is the exact one).
  std::shared_ptr<const NoiseSchedule> flow = make_schedule("flow");
  const Tensor tf = at::tensor({1000.0, 800.0, 500.0, 200.0, 10.0}, at::kDouble);
  const Tensor eps_hat = gmm.imperfect_network(flow, 0.05, 0.1)(x, tf, {});
  const Tensor v_hat = gmm.imperfect_network(flow, 0.05, 0.1, Parameterization::kFlow)(x, tf, {});
  const Tensor sigma = (tf / 1000).unsqueeze(1), alpha = 1 - sigma;
  Tensor x0_hat = (x - sigma * eps_hat) / alpha;
  x0_hat[0] = gmm.x0(x.narrow(0, 0, 1), flow->at(1000.0))[0];
  testing::ExpectTensorNear(v_hat, eps_hat - x0_hat, 1e-13, 1e-12, "flow velocity");
  testing::ExpectTensorNear(eps_hat, gmm.network(flow)(x, tf, {}) * 1.05 + at::tanh(x) * 0.1, 1e-15,
                            1e-14, "eps on flow");
}

}  // namespace
}  // namespace diffuse

namespace diffuse {
namespace {

TEST(Metrics, SlicedWassersteinMeanAndCovarianceErrors) {
  const Tensor a = randn({1000, 3}, 1, at::kDouble);
  const Tensor b = randn({1000, 3}, 2, at::kDouble);
  EXPECT_EQ(sliced_wasserstein(a, a), 0.0);
  EXPECT_LT(sliced_wasserstein(a, b), 0.1);  // two draws of N(0, I): MC noise only
  // A shift by m moves every projection by <m, u>; E<m, u>^2 = |m|^2 / D for random unit u, so
  // m = 0.6 (1, 1, 1) gives SW2 = 0.6.
  EXPECT_NEAR(sliced_wasserstein(a, a + 0.6, 0, 512), 0.6, 0.05);
  EXPECT_NEAR(mean_error(a + 0.5, at::zeros({3}, at::kDouble)), 0.5 * std::sqrt(3.0), 0.1);
  EXPECT_NEAR(covariance_error(a * 2, at::eye(3, at::kDouble)), 3.0 * std::sqrt(3.0), 0.6);
  EXPECT_THROW(sliced_wasserstein(a, a.narrow(0, 0, 10)), Error);
}

}  // namespace
}  // namespace diffuse
