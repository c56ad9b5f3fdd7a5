// SPDX-License-Identifier: Apache-2.0
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/euler_ancestral.h>

#include "samplers/k_sampler_fixtures.h"

namespace diffuse {
namespace {

using testing::CheckGoldenCase;
using testing::GoldenCase;

// ---------------------------------------------------------------------------------------------
// diffusers tests/schedulers/test_scheduler_euler_ancestral.py (58eb52c): the same fixture as the
// Euler tests (num_train_timesteps=1100, linear 1e-4..0.02, set_timesteps(10), linspace spacing),
// with generator = torch.manual_seed(0) feeding the ancestral noise: make_torch_noise(0) gives the
// same float32 stream. diffusers also draws (and multiplies by sigma_up = 0) on the last step; we
// draw nothing there, which changes no result.

void RunSuiteCase(const std::string& prediction, bool with_noise, double sum, double mean) {
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    SCOPED_TRACE(dtype == at::kFloat ? "float32" : "float64");
    auto sched = testing::discrete_schedule(1100, 1e-4, 0.02, "linear",
                                            dtype == at::kFloat ? "float32" : "float64");
    const TimeGrid grid = make_spacing("linspace", {{"round", "false"}})->grid(*sched, 10);
    DenoiserOptions dopt;
    dopt.prediction_type = parse_parameterization(prediction);
    Denoiser d(testing::dummy_model_fn, dopt);
    auto noise = make_torch_noise(0);
    SampleContext ctx;
    ctx.schedule = sched.get();
    ctx.noise = noise.get();
    Tensor s = testing::sample_deter(dtype) * grid[0].sigma_ve();  // * init_noise_sigma
    size_t first = 0;
    if (with_noise) {  // add_noise(sample, noise_deter, timesteps[8]), then steps 8 and 9
      first = 8;
      s = s + testing::noise_deter(dtype) * grid[8].sigma_ve();
    }
    const Tensor out = testing::run_diffusers_test_loop(
        *make_sampler("euler_ancestral"), testing::network_sees_ve_state(d), grid, s, first, ctx);
    EXPECT_NEAR(out.abs().sum().item<double>(), sum, 1e-2);
    EXPECT_NEAR(out.abs().mean().item<double>(), mean, 1e-3);
  }
}

TEST(EulerAncestralSampler, DiffusersFullLoopNoNoise) {
  // test_full_loop_no_noise / test_full_loop_device: sum 152.3192, mean 0.1983.
  RunSuiteCase("epsilon", false, 152.3192, 0.1983);
}

TEST(EulerAncestralSampler, DiffusersFullLoopWithVPrediction) {
  // test_full_loop_with_v_prediction: sum 108.4439, mean 0.1412.
  RunSuiteCase("v_prediction", false, 108.4439, 0.1412);
}

TEST(EulerAncestralSampler, DiffusersFullLoopWithNoise) {
  // test_full_loop_with_noise: sum 56163.0508, mean 73.1290 (diffusers in float64: 56163.0585,
  // tests/reference/k_schedulers.py noise_suite).
  RunSuiteCase("epsilon", true, 56163.0508, 73.1290);
}

// ---------------------------------------------------------------------------------------------
// Bit-compatibility with diffusers EulerAncestralDiscreteScheduler (see GoldenCase).

const std::vector<GoldenCase>& AncestralGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/golden_euler_ancestral.inc"
  };
  return cases;
}

TEST(EulerAncestralSampler, MatchesDiffusersEulerAncestralDiscreteScheduler) {
  for (const auto& g : AncestralGoldens()) CheckGoldenCase("euler_ancestral", g);
}

// ---------------------------------------------------------------------------------------------
// Against k-diffusion 4601bf0 sample_euler_ancestral (k_sampler_fixtures.h GoldenCase; k-diffusion
// run from source by tests/reference/kdiffusion.py euler_ancestral, see tests/reference/README.md,
// with its DiscreteEps/VDDPMDenoiser wrapping the same network, fractional sigma_to_t, global
// torch.manual_seed(seed), randn_like drawn in float32).

const std::vector<GoldenCase>& KDiffusionAncestralGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_euler_ancestral.inc"
  };
  return cases;
}

TEST(EulerAncestralSampler, MatchesKDiffusionSampleEulerAncestral) {
  for (const auto& g : KDiffusionAncestralGoldens()) CheckGoldenCase("euler_ancestral", g);
}

// ---------------------------------------------------------------------------------------------
// Invariants.

struct AncestralFixture {
  std::unique_ptr<NoiseSchedule> sched =
      testing::discrete_schedule(1000, 0.00085, 0.012, "scaled_linear", "float64");
  TimeGrid grid = make_spacing("linspace", {{"round", "false"}})->grid(*sched, 6);
  Denoiser d{testing::smooth_network};
  ModelFn fn = [this](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  Tensor x = testing::sample_deter(at::kDouble) * 2 - 1;
};

TEST(EulerAncestralSampler, AncestralSplitKeepsTheNoiseLevel) {
  // sigma_down^2 + sigma_up^2 = sigma_next^2 (k-diffusion get_ancestral_step), sigma_up <=
  // sigma_next.
  for (double eta : {0.0, 0.3, 1.0, 2.5}) {
    const auto s = ancestral_split(3.0, 1.2, eta);
    EXPECT_NEAR(s.sigma_down * s.sigma_down + s.sigma_up * s.sigma_up, 1.44, 1e-12) << eta;
    EXPECT_LE(s.sigma_up, 1.2) << eta;
  }
  // eta = 1: sigma_up = sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2) (diffusers' formula).
  EXPECT_NEAR(ancestral_split(3.0, 1.2, 1.0).sigma_up, std::sqrt(1.44 * (9 - 1.44) / 9), 1e-14);
  EXPECT_EQ(ancestral_split(3.0, 1.2, 0.0).sigma_up, 0.0);
  EXPECT_EQ(ancestral_split(3.0, 0.0, 1.0).sigma_down, 0.0);
  // From alpha = 0 (sigma = inf) all of sigma_next is re-drawn at eta = 1.
  EXPECT_EQ(ancestral_split(std::numeric_limits<double>::infinity(), 1.2, 1.0).sigma_up, 1.2);
}

TEST(EulerAncestralSampler, EtaZeroIsEulerAndDrawsNoNoise) {
  AncestralFixture u;
  SampleContext ctx;  // no noise source: a draw would throw
  ctx.schedule = u.sched.get();
  auto s = make_sampler("euler_ancestral", {{"eta", "0"}});
  EXPECT_FALSE(s->is_stochastic());
  const Tensor a = s->sample(u.fn, u.x, u.grid, ctx);
  testing::ExpectTensorNear(a, make_sampler("euler")->sample(u.fn, u.x, u.grid, ctx), 1e-12, 1e-12,
                            "eta=0 vs euler");
}

TEST(EulerAncestralSampler, LastStepDrawsNoNoise) {
  // 6 steps onto sigma = 0: 5 draws. A replay source with exactly 5 throws on a 6th.
  AncestralFixture u;
  std::vector<Tensor> draws;
  for (int i = 0; i < 5; ++i) draws.push_back(testing::noise_deter(at::kDouble) * (0.1 * i) - 0.2);
  auto noise = make_replay_noise(draws);
  SampleContext ctx;
  ctx.schedule = u.sched.get();
  ctx.noise = noise.get();
  EXPECT_NO_THROW(make_sampler("euler_a")->sample(u.fn, u.x, u.grid, ctx));
}

TEST(EulerAncestralSampler, OneStepClosedForm) {
  // k-diffusion sample_euler_ancestral, one step in VE units with known noise z:
  //   x_ve_next = x_ve + (x_ve - x0) / sigma * (sigma_down - sigma) + s_noise * sigma_up * z.
  AncestralFixture u;
  const double eta = 0.7, s_noise = 0.9;
  const Tensor z = testing::noise_deter(at::kDouble) - 0.4;
  auto noise = make_replay_noise({z});
  SampleContext ctx;
  ctx.noise = noise.get();
  StepContext st;
  st.index = 2;
  st.num_steps = 6;
  st.now = u.grid[2];
  st.next = u.grid[3];
  const Tensor out = make_sampler("euler_ancestral", {{"eta", "0.7"}, {"s_noise", "0.9"}})
                         ->step(u.fn, u.x, st, {}, ctx)
                         .x;
  const double sigma = st.now.sigma_ve(), sigma_next = st.next.sigma_ve();
  const double up = std::min(
      sigma_next, eta * std::sqrt(sigma_next * sigma_next *
                                  (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma)));
  const double down = std::sqrt(sigma_next * sigma_next - up * up);
  const Tensor x_ve = u.x / st.now.alpha;
  const Tensor x0 = u.d(u.x, st.now, {}).x0;
  const Tensor expect_ve = x_ve + (x_ve - x0) / sigma * (down - sigma) + z * (s_noise * up);
  testing::ExpectTensorNear(out, expect_ve * st.next.alpha, 1e-12, 1e-10, "ancestral step");
}

TEST(EulerAncestralSampler, SameSeedSameSample) {
  AncestralFixture u;
  auto run = [&](uint64_t seed) {
    auto noise = make_torch_noise(seed);
    SampleContext ctx;
    ctx.noise = noise.get();
    return make_sampler("euler_ancestral")->sample(u.fn, u.x, u.grid, ctx);
  };
  EXPECT_TRUE(at::equal(run(5), run(5)));
  EXPECT_FALSE(at::allclose(run(5), run(6)));
}

TEST(EulerAncestralSampler, ConfigRoundTripAndErrors) {
  auto s = make_sampler("euler_a", {{"eta", "0.5"}, {"s_noise", "1.01"}});
  EXPECT_EQ(s->name(), "euler_ancestral");
  const Config c = s->to_config();
  EXPECT_EQ(make_sampler("euler_ancestral", c)->to_config(), c);
  EXPECT_EQ(make_sampler("k_euler_a")->name(), "euler_ancestral");
  EXPECT_THROW(make_sampler("euler_ancestral", {{"eta", "-0.1"}}), Error);
  EXPECT_THROW(make_sampler("euler_ancestral", {{"s_noise", "-1"}}), Error);
  EXPECT_THROW(make_sampler("euler_ancestral", {{"s_churn", "1"}}), Error);
  try {
    make_sampler("euler_ancestral", {{"eta", "-0.1"}});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-0.1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace diffuse
