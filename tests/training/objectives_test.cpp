// SPDX-License-Identifier: Apache-2.0
// Training objectives (training/objectives/), time sampling and loss weighting.
// Hand-computed values come from tests/reference/objectives.py (a PyTorch re-implementation
// from the paper formulas: DDPM simple loss, v = alpha eps - sigma x0, DDPM-IP's perturbed input,
// Min-SNR weights, MaskDiT train_utils/loss.py semantics), pasted here as literals; run
// /usr/bin/python3 tests/reference/objectives.py to print them.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <diffuse/all.h>
#include <diffuse/training/time_sampling.h>
#include <diffuse/training/weighting.h>

#include "test_util.h"

namespace diffuse {
namespace {

using testing::ExpectTensorNear;

// The fixed tiny problem of objectives.py: T = 10 linear betas 0.05..0.5, x0 [2, 1, 4, 4],
// t = {2, 7}, eps = sin(0.7 k + 0.3), xi = cos(1.3 k - 0.2), net(x, t) = 0.5 x + 0.01 t.
DiscreteSchedule tiny_schedule() {
  return DiscreteSchedule(
      DiscreteScheduleOptions().num_train_timesteps(10).beta_start(0.05).beta_end(0.5));
}
const at::TensorOptions kD = at::TensorOptions().dtype(at::kDouble);
Tensor fixed_x0() { return (at::arange(32, kD) / 16 - 1).reshape({2, 1, 4, 4}); }
Tensor fixed_eps() { return at::sin(at::arange(32, kD) * 0.7 + 0.3).reshape({2, 1, 4, 4}); }
Tensor fixed_xi() { return at::cos(at::arange(32, kD) * 1.3 - 0.2).reshape({2, 1, 4, 4}); }
Tensor fixed_t() { return at::tensor(std::vector<double>{2.0, 7.0}, kD); }
Tensor fixed_mask() {
  return at::tensor(std::vector<int64_t>{1, 0, 0, 1, 0, 1, 0, 0}).reshape({2, 4}).to(at::kBool);
}
Network simple_net() {
  return [](const Tensor& x, const Tensor& t, const Conditioning&) {
    return x * 0.5 + t.reshape({-1, 1, 1, 1}) * 0.01;
  };
}
ObjectiveDraw fixed_draw(bool with_xi = false, bool with_mask = false) {
  ObjectiveDraw d;
  d.t = fixed_t();
  d.eps = fixed_eps();
  if (with_xi) d.extra["xi"] = fixed_xi();
  if (with_mask) d.extra["mask"] = fixed_mask();
  return d;
}
Tensor vec(std::vector<double> v) { return at::tensor(v, kD); }
at::Generator gen(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }
Tensor random_data(std::vector<int64_t> shape, uint64_t seed) {
  at::Generator g = gen(seed);
  return at::randn(shape, g, at::TensorOptions().dtype(at::kFloat));
}

// The tiny schedule's alpha, sigma computed here from the betas (not through DiscreteSchedule).
std::pair<std::vector<double>, std::vector<double>> tiny_alpha_sigma() {
  std::vector<double> a, s;
  double ac = 1;
  for (int i = 0; i < 10; ++i) {
    ac *= 1 - (0.05 + (0.5 - 0.05) * i / 9.0);
    a.push_back(std::sqrt(ac));
    s.push_back(std::sqrt(1 - ac));
  }
  return {a, s};
}

const std::map<std::string, std::vector<double>> kDenoisingExpected = {
    // objectives.py "denoising <prediction_type> <weighting>" (min_snr with gamma = 1)
    {"epsilon/none", {0.39435493254577947, 0.1361374512928768}},
    {"epsilon/min_snr", {0.14827311361284384, 0.1361374512928768}},
    {"v_prediction/none", {0.59681018918035944, 0.48472869587659506}},
    {"v_prediction/min_snr", {0.16307838419353324, 0.057702903759498075}},
    {"sample/none", {0.19833954653385213, 0.20167801622302312}},
    {"sample/min_snr", {0.19833954653385213, 0.027252234818950789}},
};

TEST(DenoisingObjective, MatchesHandComputedLoss) {
  const auto s = tiny_schedule();
  const Batch b{fixed_x0(), {}};
  for (const auto& [key, expected] : kDenoisingExpected) {
    const auto slash = key.find('/');
    auto obj = make_objective("denoising", {{"prediction_type", key.substr(0, slash)},
                                            {"weighting", key.substr(slash + 1)},
                                            {"snr_gamma", "1"}});
    const ObjectiveOutput out = obj->evaluate(simple_net(), s, b, fixed_draw());
    ExpectTensorNear(out.loss, vec(expected), 1e-14, 1e-12, key);
    EXPECT_EQ(out.loss.sizes(), (at::IntArrayRef{2}));
    ASSERT_TRUE(out.terms.count("mse"));
    if (key.find("none") != std::string::npos) {
      EXPECT_TRUE(at::equal(out.terms.at("mse"), out.loss)) << key;
    }
  }
}

TEST(DenoisingObjective, InputPerturbationMatchesHandComputedLoss) {
  // objectives.py "ip0.1": input from eps + 0.1 xi, target from the unperturbed eps.
  const std::map<std::string, std::vector<double>> expected = {
      {"epsilon", {0.39718581153675192, 0.13248308513482571}},
      {"v_prediction", {0.59783481670722138, 0.48687734978511044}},
      {"sample", {0.19887325404660175, 0.20622275599926329}},
  };
  const auto s = tiny_schedule();
  for (const auto& [p, e] : expected) {
    auto obj = make_objective("ddpm_ip", {{"prediction_type", p}});
    EXPECT_EQ(obj->to_config().at("input_perturbation"), "0.1");
    ExpectTensorNear(obj->evaluate(simple_net(), s, {fixed_x0(), {}}, fixed_draw(true)).loss,
                     vec(e), 1e-14, 1e-12, p);
  }
}

TEST(DenoisingObjective, InputPerturbationChangesTheInputButNotTheTarget) {
  const auto s = tiny_schedule();
  const auto [a, sg] = tiny_alpha_sigma();
  const Tensor av = vec({a[2], a[7]}).reshape({2, 1, 1, 1}),
               sv = vec({sg[2], sg[7]}).reshape({2, 1, 1, 1});
  const Tensor x0 = fixed_x0(), eps = fixed_eps(), xi = fixed_xi();
  for (const char* p : {"epsilon", "v_prediction", "sample"}) {
    // The network returns the exact target built from the UNPERTURBED eps, whatever it is fed.
    const Parameterization pt = parse_parameterization(p);
    const Tensor exact = pt == Parameterization::kEpsilon  ? eps
                         : pt == Parameterization::kSample ? x0
                                                           : av * eps - sv * x0;
    testing::RecordingModel rec{[exact](const Tensor&, const Tensor&) { return exact.clone(); }};
    auto obj = make_objective("input_perturbation",
                              {{"prediction_type", p}, {"input_perturbation", "0.25"}});
    const ObjectiveOutput out = obj->evaluate(rec.network(), s, {x0, {}}, fixed_draw(true));
    EXPECT_LT(out.loss.abs().max().item<double>(), 1e-28) << p;  // target untouched by xi
    ASSERT_EQ(rec.calls->size(), 1u);
    ExpectTensorNear(rec.calls->at(0).x, av * x0 + sv * (eps + xi * 0.25), 1e-15, 1e-13,
                     p);  // perturbed input
    ExpectTensorNear(rec.calls->at(0).t, fixed_t(), 0, 0, p);
  }
}

TEST(DenoisingObjective, LossIsZeroForTheExactTarget) {
  // An oracle that knows x0 recovers eps from x_t with the schedule's scales (computed here) and
  // returns the target of its parameterisation.
  const auto s = tiny_schedule();
  const auto [a, sg] = tiny_alpha_sigma();
  const Tensor x0 = fixed_x0();
  for (const char* p : {"epsilon", "v_prediction", "sample"}) {
    const Parameterization pt = parse_parameterization(p);
    Network oracle = [&, pt](const Tensor& x, const Tensor& t, const Conditioning&) {
      std::vector<double> av, sv;
      for (int64_t i = 0; i < t.size(0); ++i) {
        av.push_back(a[static_cast<size_t>(t[i].item<double>())]);
        sv.push_back(sg[static_cast<size_t>(t[i].item<double>())]);
      }
      const Tensor A = vec(av).reshape({-1, 1, 1, 1}), S = vec(sv).reshape({-1, 1, 1, 1});
      const Tensor e = (x - A * x0) / S;
      return pt == Parameterization::kEpsilon  ? e
             : pt == Parameterization::kSample ? x0
                                               : A * e - S * x0;
    };
    for (const char* w : {"none", "min_snr", "edm"}) {
      auto obj = make_objective("denoising", {{"prediction_type", p}, {"weighting", w}});
      auto g = gen(3);
      const ObjectiveOutput out = obj->loss(oracle, s, {x0, {}}, g);
      EXPECT_LT(out.loss.abs().max().item<double>(), 1e-25) << p << " " << w;
      EXPECT_EQ(obj->prediction_type(), pt);
    }
    auto masked = make_objective("masked_denoising", {{"prediction_type", p}});
    auto g = gen(4);
    EXPECT_LT(masked->loss(oracle, s, {x0, {}}, g).terms.at("dsm").abs().max().item<double>(),
              1e-25)
        << p;
  }
}

TEST(DenoisingObjective, PerturbationZeroIsTheStandardObjectiveBitForBit) {
  const auto s = tiny_schedule();
  const Batch b{random_data({4, 2, 4, 4}, 0), {}};
  for (const char* p : {"epsilon", "v_prediction", "sample"}) {
    auto standard = make_objective("denoising", {{"prediction_type", p}});
    auto ip0 = make_objective("ddpm_ip", {{"prediction_type", p}, {"input_perturbation", "0"}});
    auto g1 = gen(42), g2 = gen(42);
    EXPECT_TRUE(at::equal(standard->loss(simple_net(), s, b, g1).loss,
                          ip0->loss(simple_net(), s, b, g2).loss))
        << p;
  }
  // With gamma > 0, t and eps are still the standard draws (xi comes last).
  auto g1 = gen(7), g2 = gen(7);
  const ObjectiveDraw d0 = make_objective("denoising")->draw(s, b, g1);
  const ObjectiveDraw d1 = make_objective("ddpm_ip")->draw(s, b, g2);
  EXPECT_TRUE(at::equal(d0.t, d1.t));
  EXPECT_TRUE(at::equal(d0.eps, d1.eps));
  EXPECT_EQ(d0.extra.count("xi"), 0u);
  ASSERT_EQ(d1.extra.count("xi"), 1u);
  EXPECT_FALSE(at::equal(d1.extra.at("xi"), d1.eps));
}

TEST(MaskedDenoisingObjective, MatchesHandComputedLoss) {
  // objectives.py "masked": MaskDiT's loss with the fixed mask, patch 2 (N = 4), mae_weight 0.1.
  struct Case {
    const char* p;
    const char* w;
    std::vector<double> dsm, mae, loss;
  };
  const std::vector<Case> cases = {
      {"epsilon",
       "none",
       {0.3468898504018324, 0.1495835263350829},
       {0.57503063607722149, 0.044797999955390785},
       {0.40439291400955457, 0.15406332633062197}},
      {"epsilon",
       "min_snr",
       {0.13042676521816401, 0.1495835263350829},
       {0.57503063607722149, 0.044797999955390785},
       {0.18792982882588616, 0.15406332633062197}},
      {"v_prediction",
       "none",
       {0.50809204746398873, 0.58999237973466268},
       {0.58084530099792009, 0.86403178031055172},
       {0.5661765775637807, 0.67639555776571791}},
      {"v_prediction",
       "min_snr",
       {0.13883615196953492, 0.070233666371040795},
       {0.58084530099792009, 0.86403178031055172},
       {0.19692068206932692, 0.15663684440209596}},
      {"sample",
       "none",
       {0.17205879894785492, 0.22545093755603482},
       {0.58132997970997158, 0.43026769456680602},
       {0.23019179691885208, 0.26847770701271545}},
      {"sample",
       "min_snr",
       {0.17205879894785492, 0.030464608912234445},
       {0.58132997970997158, 0.43026769456680602},
       {0.23019179691885208, 0.073491378368915047}},
  };
  const auto s = tiny_schedule();
  for (const auto& c : cases) {
    auto obj = make_objective("maskdit",
                              {{"prediction_type", c.p}, {"weighting", c.w}, {"snr_gamma", "1"}});
    testing::RecordingModel rec{[](const Tensor& x, const Tensor& t) {
      return x * 0.5 + t.reshape({-1, 1, 1, 1}) * 0.01;
    }};
    const ObjectiveOutput out =
        obj->evaluate(rec.network(), s, {fixed_x0(), {}}, fixed_draw(false, true));
    const std::string what = std::string(c.p) + "/" + c.w;
    ExpectTensorNear(out.terms.at("dsm"), vec(c.dsm), 1e-14, 1e-12, what + " dsm");
    ExpectTensorNear(out.terms.at("mae"), vec(c.mae), 1e-14, 1e-12, what + " mae");
    ExpectTensorNear(out.loss, vec(c.loss), 1e-14, 1e-12, what + " loss");
    ASSERT_EQ(rec.calls->size(), 1u);
    ASSERT_EQ(rec.calls->at(0).c.extra.count("mask"), 1u);  // the network sees the mask
    EXPECT_TRUE(at::equal(rec.calls->at(0).c.extra.at("mask"), fixed_mask()));
  }
}

TEST(MaskedDenoisingObjective, RatioZeroIsTheDenoisingObjective) {
  const auto s = tiny_schedule();
  const Batch b{random_data({3, 2, 4, 4}, 1), {}};
  for (const char* p : {"epsilon", "v_prediction", "sample"}) {
    for (const char* w : {"none", "min_snr"}) {
      const Config c{{"prediction_type", p}, {"weighting", w}};
      Config cm = c;
      cm["mask_ratio"] = "0";
      auto plain = make_objective("denoising", c);
      auto masked = make_objective("masked_denoising", cm);
      testing::RecordingModel rec{[](const Tensor& x, const Tensor& t) {
        return x * 0.5 + t.reshape({-1, 1, 1, 1}) * 0.01;
      }};
      auto g1 = gen(11), g2 = gen(11);
      const ObjectiveOutput a = plain->loss(simple_net(), s, b, g1);
      const ObjectiveOutput m = masked->loss(rec.network(), s, b, g2);
      EXPECT_TRUE(at::equal(a.loss, m.loss)) << p << " " << w;
      EXPECT_TRUE(at::equal(a.loss, m.terms.at("dsm"))) << p << " " << w;
      EXPECT_TRUE(at::equal(m.terms.at("mae"), at::zeros_like(m.loss)));
      ASSERT_EQ(rec.calls->size(), 1u);
      EXPECT_EQ(rec.calls->at(0).c.extra.count("mask"), 0u);  // no mask: the DiT runs unmasked
    }
  }
}

TEST(MaskedDenoisingObjective, MaskHasTheMaskDiTCountAndIsReproducible) {
  const auto s = tiny_schedule();
  const Batch b{at::zeros({5, 3, 8, 8}, kD), {}};  // N = 16 patch tokens
  for (double ratio : {0.5, 0.3, 0.75}) {
    auto obj = make_objective("masked_denoising", {{"mask_ratio", format_double(ratio)}});
    const int64_t keep = static_cast<int64_t>(std::floor(16 * (1 - ratio)));  // MaskDiT's len_keep
    auto g1 = gen(5), g2 = gen(5), g3 = gen(6);
    const Tensor m1 = obj->draw(s, b, g1).extra.at("mask");
    ASSERT_EQ(m1.scalar_type(), at::kBool);
    ASSERT_EQ(m1.sizes(), (at::IntArrayRef{5, 16}));
    EXPECT_TRUE(at::equal(m1.sum(1), at::full({5}, 16 - keep, at::kLong))) << ratio;
    EXPECT_TRUE(at::equal(m1, obj->draw(s, b, g2).extra.at("mask"))) << ratio;
    EXPECT_FALSE(at::equal(m1, obj->draw(s, b, g3).extra.at("mask"))) << ratio;
    EXPECT_FALSE(at::equal(m1[0], m1[1])) << "rows are masked independently";
  }
  // patch_size 4 on 8x8: N = 4, ratio 0.5 -> 2 masked per row.
  auto p4 = make_objective("masked_denoising", {{"patch_size", "4"}});
  auto g = gen(9);
  EXPECT_TRUE(at::equal(p4->draw(s, b, g).extra.at("mask").sum(1), at::full({5}, 2, at::kLong)));
}

TEST(Weighting, MinSnrMatchesTheFormulasForEveryParameterization) {
  // objectives.py "minsnr_all" (gamma 5) at t = 0..9 of the tiny schedule.
  const std::map<Parameterization, std::vector<double>> expected = {
      {Parameterization::kEpsilon,
       {0.26315789473684237, 0.84795321637426901, 1, 1, 1, 1, 1, 1, 1, 1}},
      {Parameterization::kVelocity,
       {0.25000000000000022, 0.72500000000000009, 0.72675000000000001, 0.58140000000000003,
        0.4360500000000001, 0.30523500000000003, 0.19840275000000002, 0.11904165,
        0.06547290750000001, 0.032736453750000005}},
      {Parameterization::kSample,
       {5, 5, 2.6596523330283626, 1.3889154323936934, 0.77320684457842026, 0.4393356026858003,
        0.24750926977356774, 0.13512744387972483, 0.07005993515377941, 0.033844399364492232}},
  };
  const auto s = tiny_schedule();
  const Tensor t = at::arange(10, kD);
  for (const auto& [p, e] : expected)
    ExpectTensorNear(loss_weights(s, t, p, WeightingOptions().weighting(LossWeighting::min_snr)),
                     vec(e), 1e-14, 1e-12, to_string(p));
}

TEST(Weighting, MinSnrIsFiniteAtZeroTerminalSnr) {
  const DiscreteSchedule s(DiscreteScheduleOptions().rescale_betas_zero_snr(true));
  ASSERT_EQ(s.alphas_cumprod().back(), 0.0);
  const Tensor t = at::tensor(std::vector<double>{999, 998, 500, 0}, kD);
  const auto& ac = s.alphas_cumprod();
  for (auto p :
       {Parameterization::kEpsilon, Parameterization::kVelocity, Parameterization::kSample}) {
    const Tensor w =
        loss_weights(s, t, p, WeightingOptions().weighting(LossWeighting::min_snr).snr_gamma(5));
    ASSERT_TRUE(at::isfinite(w).all().item<bool>()) << to_string(p) << " " << w;
    std::vector<double> e;
    for (int i : {999, 998, 500, 0}) {
      const double snr = ac[i] / (1 - ac[i]), m = std::min(snr, 5.0);
      e.push_back(p == Parameterization::kEpsilon    ? (snr == 0 ? 1.0 : m / snr)
                  : p == Parameterization::kVelocity ? m / (snr + 1)
                                                     : m);
    }
    ExpectTensorNear(w, vec(e), 1e-15, 1e-12, to_string(p));
  }
  // The whole objective stays finite at t = T - 1 for every parameterisation.
  for (const char* p : {"epsilon", "v_prediction", "sample"}) {
    auto obj = make_objective("denoising", {{"prediction_type", p}, {"weighting", "min_snr"}});
    ObjectiveDraw d;
    d.t = at::tensor(std::vector<double>{999, 0}, kD);
    d.eps = fixed_eps();
    EXPECT_TRUE(
        at::isfinite(obj->evaluate(simple_net(), s, {fixed_x0(), {}}, d).loss).all().item<bool>())
        << p;
  }
}

TEST(Weighting, EdmAndTruncatedSnrMatchTheirDefinitions) {
  // EDM (sample): lambda = (sigma_ve^2 + sd^2) / (sigma_ve sd)^2; truncated (sample): max(SNR, 1);
  // converted with |eps err|^2 = SNR |x0 err|^2 and |v err|^2 = (SNR + 1) |x0 err|^2 (VP).
  const auto s = tiny_schedule();
  const auto [a, sg] = tiny_alpha_sigma();
  const Tensor t = at::arange(10, kD);
  std::vector<double> edm, trunc, snr;
  for (int i = 0; i < 10; ++i) {
    const double sv = sg[i] / a[i], sd = 0.5;
    edm.push_back((sv * sv + sd * sd) / (sv * sd * sv * sd));
    snr.push_back(a[i] * a[i] / (sg[i] * sg[i]));
    trunc.push_back(std::max(snr.back(), 1.0));
  }
  const Tensor S = vec(snr);
  const WeightingOptions we = WeightingOptions().weighting(LossWeighting::edm),
                         wt = WeightingOptions().weighting(LossWeighting::truncated_snr);
  ExpectTensorNear(loss_weights(s, t, Parameterization::kSample, we), vec(edm), 0, 1e-12, "edm x0");
  ExpectTensorNear(loss_weights(s, t, Parameterization::kEpsilon, we), vec(edm) / S, 0, 1e-12,
                   "edm eps");
  ExpectTensorNear(loss_weights(s, t, Parameterization::kVelocity, we), vec(edm) / (S + 1), 0,
                   1e-12, "edm v");
  ExpectTensorNear(loss_weights(s, t, Parameterization::kEpsilon, wt), vec(trunc) / S, 0, 1e-12,
                   "trunc eps");
  ExpectTensorNear(loss_weights(s, t, Parameterization::kVelocity, wt), vec(trunc) / (S + 1), 0,
                   1e-12, "trunc v");
  ExpectTensorNear(loss_weights(s, t, Parameterization::kEpsilon,
                                WeightingOptions().weighting(LossWeighting::snr)),
                   at::ones({10}, kD), 0, 1e-12, "snr eps");
}

TEST(TimeSampling, DiscreteUniformGivesEveryIndexInRange) {
  const auto s = tiny_schedule();
  auto g = gen(1);
  const Tensor t = sample_times(s, 20000, g, kD);
  ASSERT_EQ(t.sizes(), (at::IntArrayRef{20000}));
  EXPECT_TRUE(at::equal(t, t.round()));
  EXPECT_EQ(t.min().item<double>(), 0.0);
  EXPECT_EQ(t.max().item<double>(), 9.0);
  // Each index has probability 1/10: count ~ Binomial(20000, 0.1), sd = 42.4; allow 5 sd.
  const Tensor counts = at::bincount(t.to(at::kLong));
  EXPECT_LT((counts.to(at::kDouble) - 2000).abs().max().item<double>(),
            5 * std::sqrt(20000 * 0.1 * 0.9));
}

TEST(TimeSampling, ContinuousUniformAndLogNormalHaveTheRightMoments) {
  const int64_t n = 20000;
  auto g = gen(2);
  // VP: t ~ U[t_min, 1]; mean (1 + t_min) / 2, sd of the sample mean (1 - t_min) / sqrt(12 n).
  const auto vp = make_schedule("vp");
  const Tensor u = sample_times(*vp, n, g, kD);
  EXPECT_GE(u.min().item<double>(), vp->t_min());
  EXPECT_LE(u.max().item<double>(), 1.0);
  EXPECT_NEAR(u.mean().item<double>(), (1 + vp->t_min()) / 2,
              5 * (1 - vp->t_min()) / std::sqrt(12.0 * n));
  // EDM (t = sigma): ln t ~ N(-1.2, 1.2^2). Standard errors: mean 1.2/sqrt(n) = 0.0085, sd
  // 1.2/sqrt(2n) = 0.006; allow 5 of each. Clamping to [0.002, 80] touches < 1e-4 of the mass.
  const auto edm = make_schedule("edm");
  const TimeSamplingOptions ln = TimeSamplingOptions().distribution(TimeDistribution::log_normal);
  const Tensor l = at::log(sample_times(*edm, n, g, kD, ln));
  EXPECT_NEAR(l.mean().item<double>(), -1.2, 5 * 1.2 / std::sqrt(double(n)));
  EXPECT_NEAR(l.std().item<double>(), 1.2, 5 * 1.2 / std::sqrt(2.0 * n));
  // VP: the drawn t's sigma_ve is log-normal too (t_min clamps ~0.1 % of the mass at ln sigma <
  // -4.6).
  const Tensor tv = sample_times(*vp, 4000, g, kD, ln);
  std::vector<double> ls;
  for (int64_t i = 0; i < tv.size(0); ++i)
    ls.push_back(std::log(vp->at(tv[i].item<double>()).sigma_ve()));
  const Tensor lv = vec(ls);
  EXPECT_NEAR(lv.mean().item<double>(), -1.2, 5 * 1.2 / std::sqrt(4000.0));
  // Discrete: nearest training index, in range.
  const auto d = tiny_schedule();
  const Tensor td = sample_times(d, 1000, g, kD, ln);
  EXPECT_TRUE(at::equal(td, td.round()));
  EXPECT_GE(td.min().item<double>(), 0.0);
  EXPECT_LE(td.max().item<double>(), 9.0);
  // Draws follow x0's dtype; float32 and float64 see the same stream.
  auto g1 = gen(3), g2 = gen(3);
  EXPECT_TRUE(at::equal(sample_times(*vp, 8, g1, at::TensorOptions().dtype(at::kFloat)),
                        sample_times(*vp, 8, g2, kD).to(at::kFloat)));
}

// objectives.py "flow", "flow ip0.1", "flow masked": the flow schedule (t = 1000 sigma), t = {250,
// 700}, velocity target eps - x0, the same tensors and network.
TEST(FlowMatchingObjective, MatchesHandComputedLoss) {
  const auto flow = make_schedule("flow");
  ObjectiveDraw d = fixed_draw();
  d.t = vec({250.0, 700.0});
  auto fm = make_objective("flow_matching");
  EXPECT_EQ(fm->prediction_type(), Parameterization::kFlow);
  EXPECT_EQ(fm->to_config().at("time_sampling"), "logit_normal");
  ExpectTensorNear(fm->evaluate(simple_net(), *flow, {fixed_x0(), {}}, d).loss,
                   vec({3.5803125886739862, 56.11421915731448}), 1e-13, 1e-12, "flow");
  d.extra["xi"] = fixed_xi();
  auto ip = make_objective("flow_matching", {{"input_perturbation", "0.1"}});
  ExpectTensorNear(ip->evaluate(simple_net(), *flow, {fixed_x0(), {}}, d).loss,
                   vec({3.5861345042675237, 56.090675977365898}), 1e-13, 1e-12, "flow ip0.1");
  d.extra.erase("xi");
  d.extra["mask"] = fixed_mask();
  auto masked = make_objective("masked_denoising", {{"prediction_type", "flow_prediction"}});
  const ObjectiveOutput m = masked->evaluate(simple_net(), *flow, {fixed_x0(), {}}, d);
  ExpectTensorNear(m.terms.at("dsm"), vec({3.4906502535965256, 57.302726089190038}), 1e-13, 1e-12,
                   "flow masked dsm");
  ExpectTensorNear(m.terms.at("mae"), vec({1.5481487793870741, 23.275351986895366}), 1e-13, 1e-12,
                   "flow masked mae");
  ExpectTensorNear(m.loss, vec({3.6454651315352331, 59.630261287879577}), 1e-13, 1e-12,
                   "flow masked loss");
}

// SD3's densities of the flow noise level tau = t / 1000 on the flow schedule: logit(tau) ~
// N(m, s^2); a static shift s adds log s to logit(tau) exactly; the mode density's quantiles are
// f(1 - q) with f(u) = 1 - u - scale (cos^2(pi u / 2) - 1 + u) (f decreasing), e.g. median 0.5.
TEST(TimeSampling, LogitNormalModeAndShiftOnTheFlowSchedule) {
  const int64_t n = 20000;
  auto g = gen(5);
  const auto flow = make_schedule("flow");
  auto logit = [](const Tensor& t) {
    const Tensor tau = t / 1000.0;
    return at::log(tau) - at::log1p(-tau);
  };
  const TimeSamplingOptions ln = TimeSamplingOptions()
                                     .distribution(TimeDistribution::logit_normal)
                                     .logit_mean(0.3)
                                     .logit_std(0.8);
  // Clamping to [t_min, t_max] = [1, 1000] touches logit < -6.9 only (z < -9): none of 20000.
  const Tensor l = logit(sample_times(*flow, n, g, kD, ln));
  EXPECT_NEAR(l.mean().item<double>(), 0.3, 5 * 0.8 / std::sqrt(double(n)));
  EXPECT_NEAR(l.std().item<double>(), 0.8, 5 * 0.8 / std::sqrt(2.0 * n));
  auto g1 = gen(6), g2 = gen(6);
  const Tensor plain = logit(sample_times(*flow, 64, g1, kD, ln));
  const Tensor shifted = logit(sample_times(*flow, 64, g2, kD, TimeSamplingOptions(ln).shift(3.0)));
  ExpectTensorNear(shifted, plain + std::log(3.0), 1e-9, 1e-9, "shift adds log s");
  const TimeSamplingOptions mode = TimeSamplingOptions().distribution(TimeDistribution::mode);
  const Tensor tau = sample_times(*flow, n, g, kD, mode) / 1000.0;
  auto f = [](double u) {
    const double c = std::cos(M_PI * u / 2);
    return 1 - u - 1.29 * (c * c - 1 + u);
  };
  // The sample q-quantile has sd ~ sqrt(q (1 - q) / n) / density; 0.01 is > 5 of them here.
  for (double q : {0.25, 0.5, 0.75}) {
    const double got = at::quantile(tau, q).item<double>();
    EXPECT_NEAR(got, f(1 - q), 0.01) << "quantile " << q;
  }
  // On a VP schedule tau is the noise level with the same log-SNR: sigma / (alpha + sigma) = tau.
  const auto vp = make_schedule("vp");
  auto g3 = gen(7), g4 = gen(7);
  const Tensor tv = sample_times(*vp, 16, g3, kD, ln);
  const Tensor tf = sample_times(*flow, 16, g4, kD, ln);
  for (int64_t i = 0; i < 16; ++i) {
    const TimePoint p = vp->at(tv[i].item<double>());
    EXPECT_NEAR(p.sigma / (p.alpha + p.sigma), tf[i].item<double>() / 1000.0, 1e-9) << i;
  }
  EXPECT_ERROR_NAMING(sample_times(*flow, 4, g, kD, TimeSamplingOptions(mode).mode_scale(2.0)),
                      "mode_scale must be in [-1, ");
  EXPECT_ERROR_NAMING(sample_times(*flow, 4, g, kD, TimeSamplingOptions(ln).logit_std(0.0)),
                      "logit_std must be > 0, got 0");
  EXPECT_ERROR_NAMING(sample_times(*flow, 4, g, kD, TimeSamplingOptions(ln).shift(-1.0)),
                      "shift must be finite and > 0, got -1");
}

TEST(ObjectiveConformance, EveryRegisteredObjective) {
  const auto s = tiny_schedule();
  const Batch b{random_data({3, 2, 4, 4}, 0), {}};
  const auto keys = Registry<Objective>::get().keys();
  ASSERT_GE(keys.size(), 2u);
  for (const auto& key : keys) {
    auto obj = make_objective(key);
    EXPECT_EQ(obj->name(), key);
    auto g1 = gen(21), g2 = gen(21), g3 = gen(22);
    const ObjectiveOutput o1 = obj->loss(simple_net(), s, b, g1);
    ASSERT_EQ(o1.loss.sizes(), (at::IntArrayRef{3})) << key;
    EXPECT_EQ(o1.loss.scalar_type(), at::kFloat) << key;
    EXPECT_TRUE(at::isfinite(o1.loss).all().item<bool>()) << key;
    for (const auto& [name, term] : o1.terms)
      EXPECT_EQ(term.sizes(), (at::IntArrayRef{3})) << key << " " << name;
    EXPECT_TRUE(at::equal(o1.loss, obj->loss(simple_net(), s, b, g2).loss))
        << key << ": not deterministic";
    EXPECT_FALSE(at::equal(o1.loss, obj->loss(simple_net(), s, b, g3).loss))
        << key << ": ignores the seed";
    auto again = make_objective(key, obj->to_config());
    EXPECT_EQ(again->to_config(), obj->to_config()) << key;
    auto g4 = gen(21);
    EXPECT_TRUE(at::equal(o1.loss, again->loss(simple_net(), s, b, g4).loss))
        << key << ": config round trip";
    // float64 data gives a float64 loss.
    auto g5 = gen(21);
    const Batch b64{b.x0.to(at::kDouble), {}};
    EXPECT_EQ(obj->loss(simple_net(), s, b64, g5).loss.scalar_type(), at::kDouble) << key;
  }
  for (const char* alias : {"input_perturbation", "ddpm_ip", "maskdit"})
    EXPECT_NO_THROW(make_objective(alias)) << alias;
  // maskdit presets v-prediction (bounded x0 for the MAE term); the key keeps epsilon.
  EXPECT_EQ(make_objective("maskdit")->prediction_type(), Parameterization::kVelocity);
  EXPECT_EQ(make_objective("masked_denoising")->prediction_type(), Parameterization::kEpsilon);
}

TEST(ObjectiveConformance, NonDefaultOptionsRoundTrip) {
  for (const char* key : {"denoising", "masked_denoising"}) {
    auto custom = make_objective(key, {{"prediction_type", "v"},
                                       {"weighting", "min_snr"},
                                       {"snr_gamma", "2.5"},
                                       {"time_sampling", "log_normal"},
                                       {"p_mean", "-0.5"}});
    auto again = make_objective(key, custom->to_config());
    EXPECT_EQ(again->to_config(), custom->to_config()) << key;
    EXPECT_EQ(again->to_config().at("prediction_type"), "v_prediction") << key;
    EXPECT_EQ(again->prediction_type(), Parameterization::kVelocity) << key;
    EXPECT_EQ(objective_from_spec(std::string(key) + ":prediction_type=sample")->prediction_type(),
              Parameterization::kSample);
  }
}

// The same losses on a CUDA device from a CPU generator (draws are made on the generator's device).
TEST(ObjectiveConformance, CudaMatchesCpuFromACpuGenerator) {
  if (!at::hasCUDA()) GTEST_SKIP() << "CUDA not available";
  const auto s = tiny_schedule();
  const Batch cpu{random_data({3, 2, 4, 4}, 0), {}};
  const Batch cuda{cpu.x0.to(at::kCUDA), {}};
  for (const auto& key : Registry<Objective>::get().keys()) {
    auto obj = make_objective(key);
    auto g1 = gen(5), g2 = gen(5);
    const Tensor a = obj->loss(simple_net(), s, cpu, g1).loss;
    const Tensor b = obj->loss(simple_net(), s, cuda, g2).loss;
    EXPECT_TRUE(b.is_cuda()) << key;
    ExpectTensorNear(b, a, 1e-6, 1e-5, key);
  }
}

void ExpectObjectiveError(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error naming '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ObjectiveConformance, BadOptionsAreErrorsNamingTheValue) {
  for (const char* key : {"denoising", "masked_denoising"}) {
    ExpectObjectiveError([&] { make_objective(key, {{"prediction_type", "score"}}); }, "score");
    ExpectObjectiveError([&] { make_objective(key, {{"weighting", "p2"}}); }, "p2");
    ExpectObjectiveError([&] { make_objective(key, {{"time_sampling", "cosine"}}); }, "cosine");
    ExpectObjectiveError([&] { make_objective(key, {{"snr_gamma", "-1"}}); }, "-1");
    ExpectObjectiveError([&] { make_objective(key, {{"p_std", "0"}}); }, "p_std");
    ExpectObjectiveError([&] { make_objective(key, {{"sigma_data", "0"}}); }, "sigma_data");
    ExpectObjectiveError([&] { make_objective(key, {{"no_such_option", "1"}}); }, "no_such_option");
  }
  ExpectObjectiveError(
      [] {
        make_objective("denoising", {{"input_perturbation", "-0.1"}});
      },
      "-0.1");
  ExpectObjectiveError([] { make_objective("denoising", {{"mask_ratio", "0.5"}}); }, "mask_ratio");
  ExpectObjectiveError(
      [] {
        make_objective("maskdit", {{"mask_ratio", "1"}});
      },
      "mask_ratio must be in [0, 1), got 1");
  ExpectObjectiveError([] { make_objective("maskdit", {{"mask_ratio", "-0.25"}}); }, "-0.25");
  ExpectObjectiveError([] { make_objective("maskdit", {{"mae_weight", "-2"}}); }, "-2");
  ExpectObjectiveError(
      [] {
        make_objective("maskdit", {{"patch_size", "0"}});
      },
      "patch_size must be >= 1, got 0");
  const auto s = tiny_schedule();
  auto g = gen(0);
  ExpectObjectiveError(
      [&] {
        make_objective("maskdit", {{"patch_size", "3"}})->draw(s, {fixed_x0(), {}}, g);
      },
      "patch_size=3");
  ExpectObjectiveError(
      [&] {
        make_objective("maskdit", {{"mask_ratio", "0.9"}})->draw(s, {fixed_x0(), {}}, g);
      },
      "0.9");  // N = 4, floor(0.4) = 0 visible tokens
  // Unmasked with p^2 C = 1 is fine ...
  EXPECT_NO_THROW(make_objective("maskdit", {{"patch_size", "1"}})
                      ->evaluate(simple_net(), s, {fixed_x0(), {}}, fixed_draw()));
  ObjectiveDraw d = fixed_draw();
  d.extra["mask"] = at::zeros({2, 16}, at::kBool);
  ExpectObjectiveError(
      [&] {
        make_objective("maskdit", {{"patch_size", "1"}})
            ->evaluate(simple_net(), s, {fixed_x0(), {}}, d);
      },
      "gives 1");  // ... but the MAE term needs two values per patch
  ExpectObjectiveError(
      [&] {
        make_objective("ddpm_ip")->evaluate(simple_net(), s, {fixed_x0(), {}}, fixed_draw());
      },
      "xi");
  // Epsilon + MAE on a zero-terminal-SNR schedule cannot form x0 at t = T - 1.
  const DiscreteSchedule z(DiscreteScheduleOptions().rescale_betas_zero_snr(true));
  ExpectObjectiveError(
      [&] {
        make_objective("masked_denoising")
            ->evaluate(simple_net(), z, {fixed_x0(), {}}, fixed_draw(false, true));
      },
      "zero terminal SNR");
  // A network with the wrong output shape.
  Network bad = [](const Tensor& x, const Tensor&, const Conditioning&) { return x.sum(1); };
  ExpectObjectiveError(
      [&] {
        make_objective("denoising")->evaluate(bad, s, {fixed_x0(), {}}, fixed_draw());
      },
      "[2, 4, 4]");
}

}  // namespace
}  // namespace diffuse
