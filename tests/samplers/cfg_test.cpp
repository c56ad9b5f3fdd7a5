// SPDX-License-Identifier: Apache-2.0
// Classifier-free guidance: batching of the two branches, the combine formula, guidance rescale.
#include "test_util.h"

#include <cmath>

#include <diffuse/samplers/guidance/cfg.h>

namespace diffuse {
namespace {

using testing::ExpectTensorNear;
using testing::RecordingModel;

// eps-predictor whose output depends on the conditioning: 0.1 x + c (c broadcast over [B, C]).
Tensor cond_net(const Tensor& x, const Tensor& /*t*/, const Conditioning& c) {
  Tensor out = x * 0.1;
  if (c.value.defined()) out = out + c.value;
  return out;
}

struct Fixture {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  std::unique_ptr<Sampler> sampler = make_sampler("ddim");
  Tensor noise = randn({3, 4}, /*seed=*/5, at::kDouble);
  Tensor c = at::linspace(-1, 1, 12, at::kDouble).reshape({3, 4});
  Tensor u = at::full({3, 4}, 0.25, at::kDouble);
  SampleOptions options(double scale) const {
    SampleOptions o;
    o.num_steps = 4;
    o.cond.value = c;
    o.uncond.value = u;
    o.guidance = std::make_shared<CfgGuidance>(CfgOptions().scale(scale));
    return o;
  }
};

TEST(CfgGuidance, OneBatchedNetworkCallPerModelEvaluation) {
  Fixture f;
  RecordingModel rec;
  rec.f = [](const Tensor& x, const Tensor&) { return x * 0.1; };
  Denoiser d(rec.network());
  sample(*f.sampler, d, *f.schedule, f.noise, f.options(3.0));
  ASSERT_EQ(static_cast<int64_t>(rec.calls->size()), f.sampler->model_calls(4));
  for (const auto& call : *rec.calls) {
    ASSERT_EQ(call.x.size(0), 6);
    EXPECT_TRUE(at::equal(call.x.narrow(0, 0, 3), call.x.narrow(0, 3, 3)));
    EXPECT_EQ(call.t.size(0), 6);
    EXPECT_TRUE(at::equal(call.c.value, at::cat({f.c, f.u}, 0)));
  }
}

TEST(CfgGuidance, ScaleOneIsConditionalOnlyWithOneBranch) {
  Fixture f;
  RecordingModel rec;
  rec.f = [](const Tensor& x, const Tensor&) { return x * 0.1; };
  SampleOptions guided = f.options(1.0);
  const Tensor a = sample(*f.sampler, Denoiser(rec.network()), *f.schedule, f.noise, guided);
  for (const auto& call : *rec.calls) EXPECT_EQ(call.x.size(0), 3);  // no unconditional half
  SampleOptions plain = guided;
  plain.guidance = nullptr;
  const Tensor b = sample(*f.sampler, Denoiser(cond_net), *f.schedule, f.noise, plain);
  const Tensor a2 = sample(*f.sampler, Denoiser(cond_net), *f.schedule, f.noise, guided);
  EXPECT_TRUE(at::equal(a2, b));
  EXPECT_FALSE(at::equal(a, b));  // the conditioning reaches the network
  // combine() itself at scale 1 returns the conditional output (up to rounding).
  const Tensor cond = at::randn({2, 5}, at::kDouble), uncond = at::randn({2, 5}, at::kDouble);
  ExpectTensorNear(CfgGuidance(CfgOptions().scale(1.0)).combine(cond, uncond, StepContext{}), cond,
                   1e-15, 1e-15);
}

TEST(CfgGuidance, CombineIsUncondPlusScaleTimesDifference) {
  const Tensor c = at::tensor({1.0, 2.0, -3.0, 0.5}, at::kDouble).reshape({2, 2});
  const Tensor u = at::tensor({0.0, 1.0, 1.0, 0.5}, at::kDouble).reshape({2, 2});
  // Hand computation of u + 4 (c - u).
  const Tensor expected = at::tensor({4.0, 5.0, -15.0, 0.5}, at::kDouble).reshape({2, 2});
  ExpectTensorNear(CfgGuidance(CfgOptions().scale(4.0)).combine(c, u, StepContext{}), expected, 0,
                   1e-15);
  // scale 0 is the unconditional output.
  ExpectTensorNear(CfgGuidance(CfgOptions().scale(0.0)).combine(c, u, StepContext{}), u, 0, 0);
}

TEST(CfgGuidance, GuidedSamplingEqualsNetworkThatReturnsTheCombination) {
  // The driver's batching, halving and conversion must give what a single network computing
  // u_out + w (c_out - u_out) itself would give.
  Fixture f;
  const double w = 2.5;
  const Tensor guided = sample(*f.sampler, Denoiser(cond_net), *f.schedule, f.noise, f.options(w));
  const Tensor c = f.c, u = f.u;
  Network combined = [c, u, w](const Tensor& x, const Tensor&, const Conditioning&) {
    const Tensor co = x * 0.1 + c, uo = x * 0.1 + u;
    return uo + (co - uo) * w;
  };
  SampleOptions plain;
  plain.num_steps = 4;
  const Tensor expected = sample(*f.sampler, Denoiser(combined), *f.schedule, f.noise, plain);
  ExpectTensorNear(guided, expected, 1e-12, 1e-12);
}

TEST(CfgGuidance, RescaleMatchesHandComputation) {
  // Per sample: out = u + w (c - u); r = out * std(c) / std(out) (unbiased, over all non-batch
  // dims); result = phi r + (1 - phi) out. Computed here with plain loops.
  const double w = 3.0, phi = 0.7;
  const Tensor c =
      at::tensor({0.3, -1.2, 2.0, 0.1, 0.0, 0.7, 1.5, -0.4, 0.9, 0.2, -2.0, 0.6}, at::kDouble)
          .reshape({2, 3, 2});
  const Tensor u =
      at::tensor({0.1, 0.4, -0.5, 0.2, 0.3, 0.3, -1.0, 0.8, 0.0, 0.5, 0.1, -0.3}, at::kDouble)
          .reshape({2, 3, 2});
  const Tensor c2 = c.reshape({2, 6}).contiguous(), u2 = u.reshape({2, 6}).contiguous();
  auto cv = c2.accessor<double, 2>();
  auto uv = u2.accessor<double, 2>();
  std::vector<double> expected;
  for (int b = 0; b < 2; ++b) {
    double out[6], mc = 0, mo = 0;
    for (int i = 0; i < 6; ++i) {
      out[i] = uv[b][i] + w * (cv[b][i] - uv[b][i]);
      mc += cv[b][i] / 6;
      mo += out[i] / 6;
    }
    double vc = 0, vo = 0;
    for (int i = 0; i < 6; ++i) {
      vc += (cv[b][i] - mc) * (cv[b][i] - mc) / 5;
      vo += (out[i] - mo) * (out[i] - mo) / 5;
    }
    const double ratio = std::sqrt(vc) / std::sqrt(vo);
    for (int i = 0; i < 6; ++i) expected.push_back(phi * out[i] * ratio + (1 - phi) * out[i]);
  }
  const Tensor got =
      CfgGuidance(CfgOptions().scale(w).guidance_rescale(phi)).combine(c, u, StepContext{});
  ExpectTensorNear(got, at::tensor(expected, at::kDouble).reshape({2, 3, 2}), 1e-14, 1e-13);
  // phi = 1: every sample has exactly the conditional output's standard deviation.
  const Tensor full =
      CfgGuidance(CfgOptions().scale(w).guidance_rescale(1.0)).combine(c, u, StepContext{});
  ExpectTensorNear(full.reshape({2, -1}).std(1), c.reshape({2, -1}).std(1), 1e-14, 1e-13);
}

TEST(CfgGuidance, Float32OutputStaysFloat32) {
  const Tensor c = at::randn({2, 3, 4}), u = at::randn({2, 3, 4});
  const Tensor out =
      CfgGuidance(CfgOptions().scale(5.0).guidance_rescale(0.5)).combine(c, u, StepContext{});
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  const Tensor ref = CfgGuidance(CfgOptions().scale(5.0).guidance_rescale(0.5))
                         .combine(c.to(at::kDouble), u.to(at::kDouble), StepContext{});
  ExpectTensorNear(out, ref, 1e-5, 1e-5);
}

TEST(CfgGuidance, ConditioningConcatErrors) {
  Fixture f;
  Denoiser d(cond_net);
  SampleOptions o = f.options(3.0);
  o.uncond.value = Tensor();
  EXPECT_THROW(sample(*f.sampler, d, *f.schedule, f.noise, o), Error);
  o.uncond.value = at::zeros({3, 5}, at::kDouble);
  try {
    sample(*f.sampler, d, *f.schedule, f.noise, o);
    ADD_FAILURE() << "expected an error for mismatched conditioning shapes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 5]"), std::string::npos) << e.what();
  }
  o = f.options(3.0);
  o.cond.extra["pooled"] = at::zeros({3, 2}, at::kDouble);
  try {
    sample(*f.sampler, d, *f.schedule, f.noise, o);
    ADD_FAILURE() << "expected an error for a missing unconditional extra";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pooled"), std::string::npos) << e.what();
  }
}

TEST(CfgGuidance, RegistryConfigRoundTripAndBadOptions) {
  auto g = make_guidance("cfg", {{"scale", "4.5"}, {"guidance_rescale", "0.7"}});
  EXPECT_EQ(g->name(), "cfg");
  const Config c = g->to_config();
  EXPECT_EQ(make_guidance("cfg", c)->to_config(), c);
  const auto* cfg = dynamic_cast<const CfgGuidance*>(g.get());
  ASSERT_NE(cfg, nullptr);
  EXPECT_EQ(cfg->options.scale(), 4.5);
  EXPECT_EQ(cfg->options.guidance_rescale(), 0.7);
  EXPECT_EQ(dynamic_cast<const CfgGuidance&>(*make_guidance("cfg")).options.scale(), 7.5);
  EXPECT_THROW(make_guidance("cfg", {{"guidance_rescale", "1.5"}}), Error);
  EXPECT_THROW(make_guidance("cfg", {{"guidance_rescale", "-0.1"}}), Error);
  EXPECT_THROW(make_guidance("cfg", {{"scale", "nan"}}), Error);
  EXPECT_THROW(make_guidance("cfg", {{"w", "2"}}), Error);
  // Rescale needs a standard deviation: one element per sample is an error, not a NaN.
  EXPECT_THROW(CfgGuidance(CfgOptions().guidance_rescale(0.5))
                   .combine(at::ones({2, 1}), at::zeros({2, 1}), StepContext{}),
               Error);
}

}  // namespace
}  // namespace diffuse
