// SPDX-License-Identifier: Apache-2.0
#include <diffuse/samplers/ddim.h>
#include <diffuse/samplers/euler.h>

#include "samplers/k_sampler_fixtures.h"

namespace diffuse {
namespace {

using testing::CheckGoldenCase;
using testing::GoldenCase;

// ---------------------------------------------------------------------------------------------
// diffusers tests/schedulers/test_scheduler_euler.py (58eb52c): num_train_timesteps=1100, linear
// betas 1e-4..0.02,
// set_timesteps(10) = linspace(0, 1099, 10) reversed, fractional (our linspace round=false).

struct EulerSuiteCase {
  std::string prediction;
  std::string spacing;
  Config spacing_config;
  bool with_noise;
  double sum, mean;
};

// Runs one test_full_loop_* with our euler step and the test's scale_model_input overwrite
// (testing::run_diffusers_test_loop), in float32 (diffusers' float32 tables) and float64.
void RunSuiteCase(const EulerSuiteCase& c, double f64_sum_rtol = 0) {
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    SCOPED_TRACE(dtype == at::kFloat ? "float32" : "float64");
    auto sched = testing::discrete_schedule(1100, 1e-4, 0.02, "linear",
                                            dtype == at::kFloat ? "float32" : "float64");
    const TimeGrid grid = make_spacing(c.spacing, c.spacing_config)->grid(*sched, 10);
    DenoiserOptions dopt;
    dopt.prediction_type = parse_parameterization(c.prediction);
    Denoiser d(testing::dummy_model_fn, dopt);
    SampleContext ctx;  // no noise source: s_churn = 0 must not draw
    ctx.schedule = sched.get();
    // sample = dummy_sample_deter * init_noise_sigma (= sigma_max for linspace spacing).
    Tensor s = testing::sample_deter(dtype) * grid[0].sigma_ve();
    size_t first = 0;
    if (c.with_noise) {
      // t_start = 8: add_noise(sample, noise_deter, timesteps[8]) = sample + sigmas[8] * noise,
      // then steps 8, 9.
      first = 8;
      s = s + testing::noise_deter(dtype) * grid[8].sigma_ve();
    }
    const Tensor out = testing::run_diffusers_test_loop(
        *make_sampler("euler"), testing::network_sees_ve_state(d), grid, s, first, ctx);
    const double sum = out.abs().sum().item<double>(), mean = out.abs().mean().item<double>();
    if (dtype == at::kDouble && f64_sum_rtol > 0) {
      EXPECT_NEAR(sum, c.sum, f64_sum_rtol * c.sum);
    } else {
      EXPECT_NEAR(sum, c.sum, 1e-2);
    }
    EXPECT_NEAR(mean, c.mean, 1e-3);
  }
}

TEST(EulerSampler, DiffusersFullLoopNoNoise) {
  // test_full_loop_no_noise and test_full_loop_device: sum 10.0807, mean 0.0131.
  RunSuiteCase({"epsilon", "linspace", {{"round", "false"}}, false, 10.0807, 0.0131});
}

TEST(EulerSampler, DiffusersFullLoopWithVPrediction) {
  // test_full_loop_with_v_prediction: sum 0.0002, mean 2.2676e-06 (the loop really gives ~2.4e-10).
  RunSuiteCase({"v_prediction", "linspace", {{"round", "false"}}, false, 0.0002, 2.2676e-06});
}

TEST(EulerSampler, DiffusersFullLoopKarrasSigmas) {
  // test_full_loop_device_karras_sigmas: sum 124.52299499511719, mean 0.16213932633399963. Karras
  // sigmas between the schedule's sigma(t=0) and sigma(t=1099), rho 7, fractional t from
  // _sigma_to_t.
  RunSuiteCase({"epsilon", "karras", {}, false, 124.52299499511719, 0.16213932633399963});
}

TEST(EulerSampler, DiffusersFullLoopWithNoise) {
  // test_full_loop_with_noise: sum 57062.9297, mean 74.3007. The 1e-2 sum tolerance is
  // float32-exact at 57k; diffusers itself run in float64 gives 57062.858
  // (tests/reference/k_schedulers.py noise_suite), so the float64 run is held to 1e-5 relative on
  // the sum instead.
  RunSuiteCase({"epsilon", "linspace", {{"round", "false"}}, true, 57062.9297, 74.3007}, 1e-5);
}

// ---------------------------------------------------------------------------------------------
// Bit-compatibility with diffusers EulerDiscreteScheduler beyond its test suite (see GoldenCase).

const std::vector<GoldenCase>& EulerGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/golden_euler.inc"
  };
  return cases;
}

TEST(EulerSampler, MatchesDiffusersEulerDiscreteScheduler) {
  for (const auto& g : EulerGoldens()) CheckGoldenCase("euler", g);
}

// ---------------------------------------------------------------------------------------------
// Against k-diffusion 4601bf0 sample_euler (k_sampler_fixtures.h GoldenCase; k-diffusion run from
// source by tests/reference/kdiffusion.py euler, see tests/reference/README.md, with its
// DiscreteEps/VDDPMDenoiser wrapping the same network, fractional sigma_to_t, global
// torch.manual_seed(seed), randn_like drawn in float32).

const std::vector<GoldenCase>& KDiffusionEulerGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_euler.inc"
  };
  return cases;
}

TEST(EulerSampler, MatchesKDiffusionSampleEuler) {
  for (const auto& g : KDiffusionEulerGoldens()) CheckGoldenCase("euler", g);
}

// ---------------------------------------------------------------------------------------------
// Invariants and closed forms.

TEST(EulerSampler, EqualsDdimEtaZero) {
  // The Euler step in sigma_ve is DDIM (eta = 0) written in another variable (Song et al. 2020,
  // §4.3).
  auto sched = testing::discrete_schedule(1000, 0.00085, 0.012, "scaled_linear", "float64");
  const TimeGrid grid = make_spacing("linspace", {{"round", "false"}})->grid(*sched, 7);
  Denoiser d(testing::smooth_network);
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  SampleContext ctx;
  ctx.schedule = sched.get();
  const Tensor x = testing::sample_deter(at::kDouble) * 3 - 1;
  const Tensor a = make_sampler("euler")->sample(fn, x, grid, ctx);
  const Tensor b = make_sampler("ddim")->sample(fn, x, grid, ctx);
  testing::ExpectTensorNear(a, b, 1e-12, 1e-10, "euler vs ddim");
}

TEST(EulerSampler, StartsAtZeroTerminalSnr) {
  // Zero terminal SNR + trailing: the first point has alpha = 0 (sigma_ve = inf), where
  // k-diffusion's x / alpha is undefined. The VP-native step stays finite and still equals DDIM
  // (eta = 0).
  auto sched = make_schedule("discrete", {{"beta_schedule", "scaled_linear"},
                                          {"beta_start", "0.00085"},
                                          {"beta_end", "0.012"},
                                          {"rescale_betas_zero_snr", "true"}});
  const TimeGrid grid = make_spacing("trailing")->grid(*sched, 5);
  ASSERT_EQ(grid[0].alpha, 0.0);
  DenoiserOptions dopt;
  dopt.prediction_type = Parameterization::kVelocity;
  Denoiser d(testing::smooth_network, dopt);
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  SampleContext ctx;
  ctx.schedule = sched.get();
  const Tensor x = testing::noise_deter(at::kDouble) * 2 - 1;
  const Tensor a = make_sampler("euler")->sample(fn, x, grid, ctx);
  EXPECT_TRUE(at::isfinite(a).all().item<bool>());
  testing::ExpectTensorNear(a, make_sampler("ddim")->sample(fn, x, grid, ctx), 1e-12, 1e-10,
                            "euler vs ddim");
}

TEST(EulerSampler, ChurnEvaluatesTheModelAtSigmaHat) {
  // k-diffusion sample_euler, one step written out in VE units:
  //   sigma_hat = sigma (1 + gamma), x_hat = x_ve + z s_noise sqrt(sigma_hat^2 - sigma^2),
  //   x_ve_next = x_hat + (x_hat - D(x_hat, sigma_hat)) / sigma_hat * (sigma_next - sigma_hat).
  auto sched = testing::discrete_schedule(1000, 0.00085, 0.012, "scaled_linear", "float64");
  const TimeGrid grid = make_spacing("linspace", {{"round", "false"}})->grid(*sched, 4);
  testing::RecordingModel rec;
  rec.f = [](const Tensor& x, const Tensor& t) { return testing::smooth_network(x, t, {}); };
  Denoiser d(rec.network());
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  const Tensor z = testing::noise_deter(at::kDouble) - 0.5;
  auto noise = make_replay_noise({z});
  SampleContext ctx;
  ctx.schedule = sched.get();
  ctx.noise = noise.get();
  const double s_churn = 0.8, s_noise = 1.007;
  auto sampler = make_sampler("euler", {{"s_churn", "0.8"}, {"s_noise", "1.007"}});
  StepContext st;
  st.index = 1;
  st.num_steps = 4;
  st.now = grid[1];
  st.next = grid[2];
  st.grid = &grid;
  const Tensor x = testing::sample_deter(at::kDouble) * 2 - 0.7;
  const Tensor out = sampler->step(fn, x, st, {}, ctx).x;

  const double sigma = grid[1].sigma_ve(), sigma_next = grid[2].sigma_ve();
  const double gamma = s_churn / 4;  // below sqrt(2) - 1
  const double sigma_hat = sigma * (1 + gamma);
  const TimePoint hat = sched->at_sigma_ve(sigma_hat);
  EXPECT_NEAR(hat.sigma_ve(), sigma_hat, 1e-12 * sigma_hat);
  const Tensor x_hat_ve =
      x / grid[1].alpha + z * (s_noise * std::sqrt(sigma_hat * sigma_hat - sigma * sigma));
  ASSERT_EQ(rec.calls->size(), 1u);
  // The network sees the VP form of x_hat at sigma_hat's (fractional) model time.
  EXPECT_NEAR(rec.calls->at(0).t[0].item<double>(), hat.t, 1e-9);
  EXPECT_GT(hat.t, grid[1].t);
  testing::ExpectTensorNear(rec.calls->at(0).x, x_hat_ve * hat.alpha, 1e-12, 1e-12,
                            "network input");
  const Tensor x0 = d(x_hat_ve * hat.alpha, hat, {}).x0;
  const Tensor expect_ve = x_hat_ve + (x_hat_ve - x0) / sigma_hat * (sigma_next - sigma_hat);
  testing::ExpectTensorNear(out, expect_ve * grid[2].alpha, 1e-12, 1e-10, "euler churn step");
}

TEST(EulerSampler, ChurnWindowAndCap) {
  EulerSampler s(EulerOptions().s_churn(100).s_tmin(1.0).s_tmax(5.0));
  StepContext st;
  st.num_steps = 10;
  st.now = TimePoint{0, 1 / std::sqrt(1 + 4.0), 2 / std::sqrt(1 + 4.0)};    // sigma_ve = 2
  EXPECT_DOUBLE_EQ(s.gamma(st), std::sqrt(2.0) - 1);                        // capped
  st.now = TimePoint{0, 1 / std::sqrt(1 + 36.0), 6 / std::sqrt(1 + 36.0)};  // sigma_ve = 6 > s_tmax
  EXPECT_EQ(s.gamma(st), 0.0);
  st.now = TimePoint{0, 1 / std::sqrt(1 + 0.25), 0.5 / std::sqrt(1 + 0.25)};  // 0.5 < s_tmin
  EXPECT_EQ(s.gamma(st), 0.0);
  EulerSampler small(EulerOptions().s_churn(1.0));
  st.now = TimePoint{0, 1 / std::sqrt(1 + 4.0), 2 / std::sqrt(1 + 4.0)};
  EXPECT_DOUBLE_EQ(small.gamma(st), 0.1);
}

TEST(EulerSampler, ChurnNoiseDrawsFollowTheConvention) {
  // A window that no grid point falls in: gamma = 0 on every step, so the result is plain Euler,
  // but k-diffusion's sample_euler still draws (and discards) one tensor per step while diffusers'
  // step() draws only where gamma > 0.
  auto sched = testing::discrete_schedule(1000, 0.00085, 0.012, "scaled_linear", "float64");
  const TimeGrid grid = make_spacing("linspace", {{"round", "false"}})->grid(*sched, 5);
  Denoiser d(testing::smooth_network);
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  const Tensor x = testing::sample_deter(at::kDouble);
  const Config window{{"s_churn", "1"}, {"s_tmin", "100"}, {"s_tmax", "200"}};
  SampleContext plain;
  plain.schedule = sched.get();
  const Tensor expect = make_sampler("euler")->sample(fn, x, grid, plain);

  std::vector<Tensor> five(5, at::zeros_like(x));
  auto replay = make_replay_noise(five);
  SampleContext kd = plain;
  kd.noise = replay.get();
  testing::ExpectTensorNear(make_sampler("euler", window)->sample(fn, x, grid, kd), expect, 0, 0,
                            "k_diffusion");
  EXPECT_THROW(kd.noise->randn_like(x), Error);  // all five draws were used

  Config dwindow = window;
  dwindow["churn_convention"] = "diffusers";
  testing::ExpectTensorNear(make_sampler("euler", dwindow)->sample(fn, x, grid, plain), expect, 0,
                            0, "diffusers");
}

TEST(EulerSampler, DefaultsAreDeterministicAndDrawNoNoise) {
  auto s = make_sampler("euler");
  EXPECT_FALSE(s->is_stochastic());
  EXPECT_TRUE(make_sampler("euler", {{"s_churn", "1"}})->is_stochastic());
  auto sched = testing::discrete_schedule(1000, 1e-4, 0.02, "linear", "float64");
  const TimeGrid grid = make_spacing("karras")->grid(*sched, 6);
  Denoiser d(testing::smooth_network);
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  SampleContext ctx;  // no noise source: any draw would throw
  ctx.schedule = sched.get();
  EXPECT_NO_THROW(s->sample(fn, testing::sample_deter(at::kDouble), grid, ctx));
}

TEST(EulerSampler, ConfigRoundTripAndErrors) {
  auto s = make_sampler(
      "euler",
      {{"s_churn", "0.5"}, {"s_tmin", "0.1"}, {"s_tmax", "9"}, {"churn_convention", "diffusers"}});
  const Config c = s->to_config();
  EXPECT_EQ(make_sampler("euler", c)->to_config(), c);
  EXPECT_EQ(c.at("churn_convention"), "diffusers");
  // s_tmax = +inf (the default) is left out of the config, so the round trip needs no "inf" value.
  EXPECT_EQ(make_sampler("euler")->to_config().count("s_tmax"), 0u);
  EXPECT_EQ(make_sampler("k_euler")->name(), "euler");
  EXPECT_THROW(make_sampler("euler", {{"s_churn", "-1"}}), Error);
  EXPECT_THROW(make_sampler("euler", {{"s_noise", "-0.5"}}), Error);
  EXPECT_THROW(make_sampler("euler", {{"s_tmin", "2"}, {"s_tmax", "1"}}), Error);
  EXPECT_THROW(make_sampler("euler", {{"churn_convention", "edm"}}), Error);
  EXPECT_THROW(make_sampler("euler", {{"eta", "1"}}), Error);
  try {
    make_sampler("euler", {{"s_churn", "-1"}});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
  }
}

TEST(EulerSampler, ChurnAtSigmaHatNeedsASchedule) {
  auto s = make_sampler("euler", {{"s_churn", "1"}});
  const TimeGrid grid =
      make_spacing("linspace")
          ->grid(*testing::discrete_schedule(1000, 1e-4, 0.02, "linear", "float64"), 3);
  Denoiser d(testing::smooth_network);
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  auto noise = make_torch_noise(0);
  SampleContext ctx;
  ctx.noise = noise.get();
  EXPECT_THROW(s->sample(fn, testing::sample_deter(at::kDouble), grid, ctx), Error);
}

}  // namespace
}  // namespace diffuse
