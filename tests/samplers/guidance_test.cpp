// SPDX-License-Identifier: Apache-2.0
// Guidance beyond CFG (samplers/guidance/): the guidance interval of cfg, CFG-Zero*, APG and CFG++.
// APG and CFG-Zero* against diffusers' guider functions (58eb52c; tests/reference/guiders.py), the
// interval by its calls, CFG++ against its DDIM update written out, and each one's limit cases.
#include "test_util.h"

#include <cmath>

#include <diffuse/samplers/guidance/apg.h>
#include <diffuse/samplers/guidance/cfg.h>
#include <diffuse/samplers/guidance/cfg_pp.h>
#include <diffuse/samplers/guidance/cfg_zero_star.h>

namespace diffuse {
namespace {

using testing::ExpectTensorNear;
using testing::RecordingModel;

struct GuiderGolden {
  const char* name;
  const char* config;  // the guidance's config (apg / cfg_zero_star by the name's prefix)
  int calls;           // 2: the momentum case's second call (c2, u2) is the one printed
  double sum, abs_sum;
  std::vector<double> elems;  // 0, 17, 50, 95
};

// `/usr/bin/python3 tests/reference/guiders.py --diffusers PATH` (diffusers 58eb52c, torch 1.13.1).
const GuiderGolden kGuiderGolden[] = {
    {"ApgDefaults",
     "scale=7.5",
     1,
     64.214919714728708,
     505.68958427255706,
     {-3.7099800190370411, 5.4117848869321019, -3.2400524391221217, 0.54974491331470099}},
    {"ApgThresholdOrthogonal",
     "scale=5,eta=0,norm_threshold=2",
     1,
     0.085639745720732519,
     30.396319808061598,
     {-0.49373600825135244, 0.39239553088616641, -0.23553453808341962, 0.48064608956618127}},
    {"ApgMomentum",
     "scale=5,eta=0.3,norm_threshold=3,momentum=-0.5",
     2,
     16.374558034189469,
     85.218095652121832,
     {0.19545268122783777, 1.306623319987489, -1.5629756167535671, 0.29730478366443291}},
    {"ApgOriginal",
     "scale=3,eta=0.5,norm_threshold=0,original_formulation=true",
     1,
     21.251766841389717,
     189.46809097097744,
     {-1.8847870260783144, 2.3040889385941634, -1.4024265195011087, 0.8419825929016449}},
    {"ZeroStar",
     "scale=4,zero_init_steps=0",
     1,
     36.827891831247854,
     242.35515218499719,
     {0.56052187092881045, 1.0605695009660323, -0.39019688855913093, -2.4473642633314756}},
    {"ZeroStarOriginal",
     "scale=4,zero_init_steps=0,original_formulation=true",
     1,
     46.107973887937121,
     302.91758256371213,
     {0.68113938430672694, 1.3397420506154138, -0.48795728725188608, -3.0587727316933142}},
};

// The generator's inputs (float64, [2, 3, 4, 4]).
std::vector<Tensor> guider_inputs() {
  const Tensor i = at::arange(96, at::TensorOptions().dtype(at::kDouble));
  const Tensor c = (at::sin(i * 0.37 + 0.2) + i * 0.1 / 96).reshape({2, 3, 4, 4});
  const Tensor u = (at::cos(i * 0.23) * 0.8).reshape({2, 3, 4, 4});
  const Tensor c2 = c + (at::sin(i * 0.11) * 0.5).reshape({2, 3, 4, 4});
  const Tensor u2 = u - (at::cos(i * 0.07) * 0.3).reshape({2, 3, 4, 4});
  return {c, u, c2, u2};
}

StepContext step_at(int64_t index) {
  StepContext st;
  st.index = index;
  st.num_steps = 10;
  st.call = TimePoint{500, 0.6, 0.8};
  return st;
}

TEST(Guidance, ApgAndCfgZeroStarMatchDiffusersGuiders) {
  const auto in = guider_inputs();
  for (const auto& g : kGuiderGolden) {
    SCOPED_TRACE(g.name);
    const std::string name(g.name);
    auto guide =
        make_guidance(name.rfind("Apg", 0) == 0 ? "apg" : "cfg_zero_star", parse_config(g.config));
    Tensor out = guide->combine(in[0], in[1], step_at(3));
    if (g.calls == 2) out = guide->combine(in[2], in[3], step_at(4));
    const Tensor f = out.reshape({-1});
    EXPECT_NEAR(out.sum().item<double>(), g.sum, 1e-12 * g.abs_sum);
    EXPECT_NEAR(out.abs().sum().item<double>(), g.abs_sum, 1e-12 * g.abs_sum);
    int k = 0;
    for (int64_t e : {0, 17, 50, 95}) EXPECT_NEAR(f[e].item<double>(), g.elems[k++], 1e-12) << e;
  }
}

TEST(Guidance, ApgLimitsAndProjection) {
  const auto in = guider_inputs();
  const Tensor& c = in[0];
  const Tensor& u = in[1];
  // eta = 1 without threshold or momentum is CFG.
  ExpectTensorNear(
      make_guidance("apg", {{"scale", "4"}, {"norm_threshold", "0"}})->combine(c, u, step_at(0)),
      u + (c - u) * 4.0, 1e-12, 0, "cfg");
  // eta = 0: the update (out - u) / scale is orthogonal to c, per sample; with a threshold its
  // norm is at most the threshold.
  const Tensor upd =
      (make_guidance("apg", {{"scale", "2"}, {"eta", "0"}, {"norm_threshold", "0.5"}})
           ->combine(c, u, step_at(0)) -
       u) /
      2.0;
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_NEAR((upd[b] * c[b]).sum().item<double>(), 0.0, 1e-12) << b;
    EXPECT_LE(upd[b].norm().item<double>(), 0.5 + 1e-12) << b;
  }
  // Momentum is per run: a clone starts afresh, and without momentum there is no copy.
  auto apg = make_guidance("apg", {{"momentum", "-0.5"}});
  const Tensor first = apg->combine(c, u, step_at(0));
  EXPECT_FALSE(at::allclose(apg->combine(c, u, step_at(1)), first));
  ExpectTensorNear(apg->clone()->combine(c, u, step_at(0)), first, 0, 0, "fresh copy");
  EXPECT_EQ(make_guidance("apg")->clone(), nullptr);
}

TEST(Guidance, CfgZeroStarLimits) {
  const auto in = guider_inputs();
  const Tensor& u = in[1];
  // c parallel to u: s* = k makes the guided output c itself at any scale.
  const Tensor c = u * 1.7;
  ExpectTensorNear(make_guidance("cfg_zero_star", {{"scale", "6"}, {"zero_init_steps", "0"}})
                       ->combine(c, u, step_at(2)),
                   c, 1e-6, 1e-6, "parallel");  // s* in float32, as diffusers
  // Zero-init: the first steps output zeros and need no unconditional branch.
  auto z = make_guidance("cfg_zero_star", {{"zero_init_steps", "2"}});
  EXPECT_FALSE(z->needs_uncond(step_at(1)));
  EXPECT_TRUE(z->needs_uncond(step_at(2)));
  EXPECT_EQ(z->combine(in[0], u, step_at(1)).abs().max().item<double>(), 0.0);
}

// eps-predictor whose output depends on the conditioning: 0.1 x + c.
Tensor guided_net(const Tensor& x, const Tensor&, const Conditioning& c) {
  Tensor out = x * 0.1 + x.pow(3) * 0.02;
  if (c.value.defined()) out = out + c.value;
  return out;
}

SampleOptions guided_options(std::shared_ptr<const Guidance> g, int64_t steps) {
  SampleOptions o;
  o.num_steps = steps;
  o.cond.value = at::linspace(-1, 1, 12, at::kDouble).reshape({3, 4});
  o.uncond.value = at::full({3, 4}, 0.25, at::kDouble);
  o.guidance = std::move(g);
  o.spacing = make_spacing("leading");
  return o;
}

TEST(Guidance, CfgIntervalGuidesOnlyInsideItsNoiseLevels) {
  auto schedule = make_schedule("discrete");
  auto ddim = make_sampler("ddim");
  const Tensor noise = randn({3, 4}, 5, at::kDouble);
  RecordingModel rec;
  rec.f = [](const Tensor& x, const Tensor&) { return x * 0.1; };
  const double lo = 0.5, hi = 3.0;
  SampleOptions o = guided_options(
      std::make_shared<CfgGuidance>(CfgOptions().scale(3.0).sigma_lo(lo).sigma_hi(hi)), 10);
  (void)sample(*ddim, Denoiser(rec.network()), *schedule, noise, o);
  const TimeGrid grid = make_spacing("leading")->grid(*schedule, 10);
  ASSERT_EQ(rec.calls->size(), 10u);
  int guided = 0;
  for (size_t i = 0; i < 10; ++i) {
    const double s = grid[i].sigma_ve();
    const bool inside = s > lo && s <= hi;
    guided += inside;
    EXPECT_EQ((*rec.calls)[i].x.size(0), inside ? 6 : 3) << "step " << i << " sigma " << s;
  }
  EXPECT_GT(guided, 0);
  EXPECT_LT(guided, 10);
  // Everywhere / nowhere: plain cfg / conditional only.
  const Denoiser d(guided_net);
  const Tensor all =
      sample(*ddim, d, *schedule, noise,
             guided_options(std::make_shared<CfgGuidance>(CfgOptions().scale(3.0)), 6));
  const Tensor wide = sample(
      *ddim, d, *schedule, noise,
      guided_options(
          std::make_shared<CfgGuidance>(CfgOptions().scale(3.0).sigma_lo(1e-9).sigma_hi(1e9)), 6));
  ExpectTensorNear(wide, all, 0, 0, "interval covering every step");
  const Tensor none = sample(
      *ddim, d, *schedule, noise,
      guided_options(
          std::make_shared<CfgGuidance>(CfgOptions().scale(3.0).sigma_lo(1e3).sigma_hi(1e4)), 6));
  const Tensor cond_only =
      sample(*ddim, d, *schedule, noise,
             guided_options(std::make_shared<CfgGuidance>(CfgOptions().scale(1.0)), 6));
  ExpectTensorNear(none, cond_only, 0, 0, "interval covering no step");
}

// guided_channels = k (DiT's / SiT's forward_with_cfg guides 3 of 4 latent channels): channels
// below k are the guided prediction, the others the conditional branch's, for every guidance.
TEST(Guidance, GuidedChannelsKeepTheConditionalPredictionElsewhere) {
  auto schedule = make_schedule("discrete");
  const TimePoint at = schedule->at(400);
  const Tensor x = randn({3, 4}, 7, at::kDouble) * at.sigma;
  DenoiserOptions partial_opts;
  partial_opts.guided_channels = 3;
  const Denoiser full(guided_net), partial(guided_net, partial_opts);
  StepContext st;
  st.now = at;
  st.index = 5;  // past cfg_zero_star's zero-init steps
  st.num_steps = 10;
  for (const char* name : {"cfg", "cfg_pp", "apg", "cfg_zero_star"}) {
    SCOPED_TRACE(name);
    const std::string scale = std::string(name) == "cfg_pp" ? "0.8" : "3";  // cfg_pp: [0, 2]
    SampleOptions o = guided_options(make_guidance(name, {{"scale", scale}}), 10);
    const Prediction pf = make_model_fn(full, o, {})(x, at, st);
    const Prediction pp = make_model_fn(partial, o, {})(x, at, st);
    const Prediction pc = full(x, at, o.cond);
    ExpectTensorNear(pp.x0.narrow(1, 0, 3), pf.x0.narrow(1, 0, 3), 0, 1e-15, "guided x0");
    ExpectTensorNear(pp.eps.narrow(1, 0, 3), pf.eps.narrow(1, 0, 3), 0, 1e-15, "guided eps");
    ExpectTensorNear(pp.x0.narrow(1, 3, 1), pc.x0.narrow(1, 3, 1), 0, 1e-15, "conditional x0");
    ExpectTensorNear(pp.eps.narrow(1, 3, 1), pc.eps.narrow(1, 3, 1), 0, 1e-15, "conditional eps");
    EXPECT_GT((pf.x0.narrow(1, 3, 1) - pc.x0.narrow(1, 3, 1)).abs().max().item<double>(), 1e-3);
  }
  // More channels than the sample has, and a negative count: named.
  DenoiserOptions too_many;
  too_many.guided_channels = 5;
  const Denoiser bad(guided_net, too_many);
  SampleOptions o = guided_options(make_guidance("cfg", {{"scale", "3"}}), 10);
  EXPECT_ERROR_NAMING(make_model_fn(bad, o, {})(x, at, st), "guided_channels=5");
  DenoiserOptions negative;
  negative.guided_channels = -1;
  EXPECT_ERROR_NAMING(Denoiser(guided_net, negative), "guided_channels must be >= 0");
}

// CFG++ with DDIM is x' = alpha' x0_g + sigma' eps_u, x0_g = x0_u + lambda (x0_c - x0_u): the
// update written out with the denoiser's two branches; Euler and DPM-Solver++ order 1 (first-order
// steps) give the same, and onto sigma = 0 the last step lands on x0_g.
TEST(Guidance, CfgPPIsTheDdimUpdateWithUnconditionalRenoising) {
  auto schedule = make_schedule("discrete");
  const Denoiser d(guided_net);
  const Tensor noise = randn({3, 4}, 7, at::kDouble);
  const double lambda = 0.7;
  const SampleOptions o =
      guided_options(std::make_shared<CfgPPGuidance>(CfgPPOptions().scale(lambda)), 8);
  const TimeGrid grid = make_spacing("leading")->grid(*schedule, 8);
  Tensor x = noise * std::hypot(grid[0].alpha, grid[0].sigma);
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const Prediction pc = d(x, grid[i], o.cond), pu = d(x, grid[i], o.uncond);
    const Tensor g = pu.x0 + (pc.x0 - pu.x0) * lambda;
    x = g * grid[i + 1].alpha + pu.eps * grid[i + 1].sigma;
  }
  for (const char* s : {"ddim", "euler", "dpm_solver_pp:order=1"}) {
    ExpectTensorNear(sample(*sampler_from_spec(s), d, *schedule, noise, o), x, 1e-10, 1e-10, s);
  }
  // Higher-order samplers run with it too.
  EXPECT_TRUE(
      at::isfinite(sample(*make_sampler("unipc"), d, *schedule, noise, o)).all().item<bool>());
}

TEST(Guidance, ApgInX0SpaceAndGuidedSamplingRunsPerRun) {
  auto schedule = make_schedule("discrete");
  const Denoiser d(guided_net);
  const Tensor noise = randn({3, 4}, 9, at::kDouble);
  // space=x0 with eta = 1 and no threshold is CFG on x0: DDIM then equals CFG on x0 written out.
  const SampleOptions o = guided_options(
      make_guidance("apg", {{"scale", "2.5"}, {"norm_threshold", "0"}, {"space", "x0"}}), 6);
  const TimeGrid grid = make_spacing("leading")->grid(*schedule, 6);
  Tensor x = noise * std::hypot(grid[0].alpha, grid[0].sigma);
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const Prediction pc = d(x, grid[i], o.cond), pu = d(x, grid[i], o.uncond);
    const Tensor g = pu.x0 + (pc.x0 - pu.x0) * 2.5;
    const Tensor eps = (x - g * grid[i].alpha) / grid[i].sigma;
    x = g * grid[i + 1].alpha + eps * grid[i + 1].sigma;
  }
  ExpectTensorNear(sample(*make_sampler("ddim"), d, *schedule, noise, o), x, 1e-10, 1e-10,
                   "x0 cfg");
  // With momentum, two runs of the same options agree: each run has its own momentum.
  const SampleOptions m = guided_options(make_guidance("apg", {{"momentum", "-0.5"}}), 6);
  ExpectTensorNear(sample(*make_sampler("euler"), d, *schedule, noise, m),
                   sample(*make_sampler("euler"), d, *schedule, noise, m), 0, 0, "per run");
}

TEST(Guidance, ConfigRoundTripsAndBadOptions) {
  for (const auto& [name, config] : std::vector<std::pair<std::string, Config>>{
           {"cfg",
            {{"scale", "3"}, {"guidance_rescale", "0"}, {"sigma_lo", "0.28"}, {"sigma_hi", "2.9"}}},
           {"cfg_zero_star",
            {{"scale", "4"}, {"zero_init_steps", "2"}, {"original_formulation", "true"}}},
           {"apg",
            {{"scale", "5"},
             {"eta", "0"},
             {"norm_threshold", "2"},
             {"momentum", "-0.5"},
             {"original_formulation", "false"},
             {"space", "x0"}}},
           {"cfg_pp", {{"scale", "0.8"}}}}) {
    EXPECT_EQ(make_guidance(name, config)->to_config(), config) << name;
  }
  EXPECT_ERROR_NAMING(make_guidance("cfg", {{"sigma_lo", "2"}, {"sigma_hi", "1"}}), "sigma_hi");
  EXPECT_ERROR_NAMING(make_guidance("cfg", {{"sigma_lo", "-1"}}), "sigma_lo");
  EXPECT_ERROR_NAMING(make_guidance("cfg_pp", {{"scale", "3"}}), "3");
  EXPECT_ERROR_NAMING(make_guidance("apg", {{"norm_threshold", "-1"}}), "norm_threshold");
  EXPECT_ERROR_NAMING(make_guidance("apg", {{"space", "eps"}}), "eps");
  EXPECT_ERROR_NAMING(make_guidance("cfg_zero_star", {{"zero_init_steps", "-1"}}),
                      "zero_init_steps");
  EXPECT_THROW(make_guidance("cfg_pp")->combine(Tensor(), Tensor(), StepContext{}), Error);
}

}  // namespace
}  // namespace diffuse
