// SPDX-License-Identifier: Apache-2.0
// DDIM sampler: diffusers' DDIMScheduler test-suite (tests/schedulers/test_scheduler_ddim.py at
// 58eb52c), bit-compatibility with diffusers 58eb52c run in float64 and float32, and invariants.
//
// How the golden values were made (tests/reference/ddim_ddpm.py ddim; see
// tests/reference/README.md): diffusers 58eb52c,
//   s = DDIMScheduler(**cfg); s.set_timesteps(10); g = torch.manual_seed(0); x = sample_deter *
//   scale for t in s.timesteps: x = s.step(x * t / (t + 1), t, x, eta=eta, generator=g).prev_sample
// float64 run: the scheduler file with every float32 replaced by float64 (betas, alphas_cumprod
// and final_alpha_cumprod in float64), sample in float64, randn_tensor replaced by
// torch.randn(shape, generator=g, dtype=float32).to(float64) (what make_torch_noise does for
// double tensors). float32 run: stock diffusers.
#include <cmath>
#include <memory>

#include "samplers/diffusers_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

using namespace testing::diffusers_suite;  // NOLINT
using testing::ExpectTensorNear;

// DDIMSchedulerTest.full_loop: config linear 1e-4..0.02, clip_sample=True (+ changes),
// set_timesteps(10) with the default "leading" spacing (900, ..., 0), eta = 0.
// set_alpha_to_one=True lands on the clean point ("zero"), False on alphas_cumprod[0] ("min").
Tensor suite_full_loop(const std::string& prediction_type, double beta_start,
                       const char* final_kind, at::ScalarType dtype = at::kFloat) {
  Config c = linear_betas();
  c["beta_start"] = format_double(beta_start);
  c["precision"] = "float32";
  auto sched = make_schedule("discrete", c);
  const TimeGrid grid = make_spacing("leading", {{"final", final_kind}})->grid(*sched, 10);
  EXPECT_EQ(grid.front().t, 900);
  EXPECT_EQ(grid[9].t, 0);
  return run_loop(*make_sampler("ddim"), *sched, grid, denoiser_options(prediction_type, true),
                  sample_deter(dtype));
}

TEST(DdimSampler, DiffusersFullLoopNoNoise) {
  // test_full_loop_no_noise: sum 172.0067, mean 0.223967 (tolerances 1e-2, 1e-3).
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const Tensor out = suite_full_loop("epsilon", 1e-4, "zero", dtype);
    EXPECT_NEAR(abs_sum(out), 172.0067, 1e-2);
    EXPECT_NEAR(abs_mean(out), 0.223967, 1e-3);
  }
}

TEST(DdimSampler, DiffusersFullLoopWithVPrediction) {
  // test_full_loop_with_v_prediction: sum 52.5302, mean 0.0684.
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const Tensor out = suite_full_loop("v_prediction", 1e-4, "zero", dtype);
    EXPECT_NEAR(abs_sum(out), 52.5302, 1e-2);
    EXPECT_NEAR(abs_mean(out), 0.0684, 1e-3);
  }
}

TEST(DdimSampler, DiffusersFullLoopWithSetAlphaToOne) {
  // test_full_loop_with_set_alpha_to_one: beta_start=0.01, set_alpha_to_one=True: 149.8295 /
  // 0.1951.
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const Tensor out = suite_full_loop("epsilon", 0.01, "zero", dtype);
    EXPECT_NEAR(abs_sum(out), 149.8295, 1e-2);
    EXPECT_NEAR(abs_mean(out), 0.1951, 1e-3);
  }
}

TEST(DdimSampler, DiffusersFullLoopWithNoSetAlphaToOne) {
  // test_full_loop_with_no_set_alpha_to_one: beta_start=0.01, set_alpha_to_one=False: the last step
  // goes from t = 0 onto alphas_cumprod[0] itself (final="min"): 149.0784 / 0.1941.
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    const Tensor out = suite_full_loop("epsilon", 0.01, "min", dtype);
    EXPECT_NEAR(abs_sum(out), 149.0784, 1e-2);
    EXPECT_NEAR(abs_mean(out), 0.1941, 1e-3);
  }
}

TEST(DdimSampler, DiffusersFullLoopWithNoise) {
  // test_full_loop_with_noise: set_timesteps(10), timesteps[8:] = [100, 0],
  // x = add_noise(sample_deter, noise_deter, 100), then 2 steps (eta = 0): 354.5418 / 0.4616.
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    Config c = linear_betas();
    c["precision"] = "float32";
    auto sched = make_schedule("discrete", c);
    const TimeGrid full = make_spacing("leading")->grid(*sched, 10);
    const TimeGrid grid(full.begin() + 8, full.end());
    ASSERT_EQ(grid.size(), 3u);
    EXPECT_EQ(grid[0].t, 100);
    const Tensor x = add_noise(sample_deter(dtype), noise_deter(dtype), grid.front());
    const Tensor out =
        run_loop(*make_sampler("ddim"), *sched, grid, denoiser_options("epsilon", true), x);
    EXPECT_NEAR(abs_sum(out), 354.5418, 1e-2);
    EXPECT_NEAR(abs_mean(out), 0.4616, 1e-3);
  }
}

TEST(DdimSampler, DiffusersStepsOffset) {
  // test_steps_offset: steps_offset=1, set_timesteps(5) -> [801, 601, 401, 201, 1].
  auto sched = make_schedule("discrete", linear_betas());
  const TimeGrid grid = make_spacing("leading", {{"steps_offset", "1"}})->grid(*sched, 5);
  ASSERT_EQ(grid.size(), 6u);
  const std::vector<double> expected{801, 601, 401, 201, 1};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(grid[i].t, expected[i]);
  EXPECT_TRUE(grid.back().is_clean());
}

TEST(DdimSampler, DiffusersVariance) {
  // test_variance: _get_variance(t, prev) = (1 - abar_prev)/(1 - abar_t) * (1 - abar_t/abar_prev),
  // tolerance 1e-5. Measured black-box: with x0 = eps = 0 and z = 1 a DDIM step with eta = 1
  // returns exactly sigma_eta = sqrt(variance).
  Config c = linear_betas();
  c["precision"] = "float32";
  auto sched = make_schedule("discrete", c);
  DdimSampler ddim(DdimOptions().eta(1.0));
  const Tensor x = at::zeros({1, 1}, at::kDouble);
  ModelFn zero = [](const Tensor& xx, const TimePoint&, const StepContext&) {
    return Prediction{at::zeros_like(xx), at::zeros_like(xx)};
  };
  auto variance = [&](double t, double prev, size_t draws) {
    auto ones = make_replay_noise(std::vector<Tensor>(draws, at::ones({1, 1}, at::kDouble)));
    SampleContext ctx;
    ctx.noise = ones.get();
    StepContext st;
    st.now = sched->at(t);
    st.next = sched->at(prev);
    st.num_steps = 1;
    const double s = ddim.step(zero, x, st, History{}, ctx).x.item<double>();
    return s * s;
  };
  EXPECT_NEAR(variance(0, 0, 0), 0.0, 1e-5);  // zero-length step: no draw at all
  EXPECT_NEAR(variance(420, 400, 1), 0.14771, 1e-5);
  EXPECT_NEAR(variance(980, 960, 1), 0.32460, 1e-5);
  EXPECT_NEAR(variance(487, 486, 1), 0.00979, 1e-5);
  EXPECT_NEAR(variance(999, 998, 1), 0.02, 1e-5);
}

TEST(DdimSampler, DiffusersNumInferenceStepsZeroRaises) {
  // test_num_inference_steps_zero_raises: set_timesteps(0) raises.
  auto sched = make_schedule("discrete", linear_betas());
  for (const char* spacing : {"leading", "linspace", "trailing"}) {
    try {
      make_spacing(spacing)->grid(*sched, 0);
      ADD_FAILURE() << spacing << " accepted 0 steps";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("0"), std::string::npos) << e.what();
    }
  }
  // set_timesteps(1001) with T = 1000 raises too.
  EXPECT_THROW(make_spacing("leading")->grid(*sched, 1001), Error);
}

// ---------------------------------------------------------------------------------------------
// Bit compatibility with diffusers 58eb52c (see the header comment for the exact calls).

GoldenSetup ddim_setup(Config schedule, const char* spacing, Config sampler = {}) {
  GoldenSetup g;
  g.sampler = "ddim";
  g.sampler_config = std::move(sampler);
  g.schedule_config = std::move(schedule);
  g.spacing = spacing;
  g.steps = 10;
  g.denoiser = denoiser_options("epsilon", false);
  return g;
}

const GoldenValues kDdimEta0 = {
    "ddim_eta0",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    172.00652216842735,
    172.00652216842735,
    {0.0, 0.23360294731696457, 0.44676563674369474, 0.44793365148027964},
    172.0067138671875,
    {0.0, 0.23360317945480347, 0.4467661380767822, 0.4479341208934784}};
const GoldenValues kDdimEta1 = {
    "ddim_eta1",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    -17.69874171057215,
    236.8909874629322,
    {-0.4234706526202198, 0.26011657238305885, 0.4794136320535389, -0.06137087621109922},
    236.89102172851562,
    {-0.42346999049186707, 0.2601158618927002, 0.4794135093688965, -0.0613706037402153}};
const GoldenValues kDdimLinspace = {
    "ddim_linspace",
    {999, 888, 777, 666, 555, 444, 333, 222, 111, 0},
    {4.035829765375676e-05, 0.0003357266745619067, 0.002175288477225965, 0.010984230178593665,
     0.04325006930112191, 0.13286481386013668, 0.3186248549664457, 0.5968088264359833,
     0.8736049929108487, 0.9999},
    191.25381886702866,
    191.25381886702866,
    {0.0, 0.259742800503896, 0.49675810596370107, 0.49805681996622037},
    191.25404357910156,
    {0.0, 0.25974294543266296, 0.49675872921943665, 0.4980573356151581}};
const GoldenValues kDdimSdTrailingV = {
    "ddim_sd_trailing_v",
    {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
    {0.004660098513077241, 0.014298676888235705, 0.03719499978868229, 0.08312833086588121,
     0.16175251500515686, 0.27766965045646774, 0.426086363602332, 0.592183122439103,
     0.7552383611581193, 0.8954627734950016},
    61.525432351905,
    61.525432351905,
    {0.0, 0.0835580078660161, 0.15980469004375591, 0.16022248008308598},
    61.52540588378906,
    {0.0, 0.08355796337127686, 0.15980464220046997, 0.16022241115570068}};
const GoldenValues kDdimCos = {
    "ddim_cos",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.023616108794393863, 0.09313777967023361, 0.20186889490464904, 0.33933300275090544,
     0.49228517244880304, 0.6459881687373604, 0.7856324127717941, 0.8977629134837037,
     0.9715756818078386, 0.999958715775178},
    181.36744543565436,
    181.36744543565436,
    {0.0, 0.24631606561774008, 0.47107947549392776, 0.47231105582201655},
    181.36781311035156,
    {0.0, 0.2463165819644928, 0.47108036279678345, 0.47231200337409973}};
const GoldenValues kDdimZsnrVTrailing = {
    "ddim_zsnr_v_trailing",
    {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
    {0.0, 0.0030330723706475447, 0.017883163872704545, 0.05578332001291966, 0.12844772385330858,
     0.24235916655614534, 0.39354405750427784, 0.5665157543278662, 0.7387001074220011,
     0.8880858947943182},
    55.69201487080689,
    55.69201487080689,
    {0.0, 0.07563561341645875, 0.14465311065897735, 0.14503128872605964},
    55.692012786865234,
    {0.0, 0.07563559710979462, 0.1446531116962433, 0.14503127336502075}};
const GoldenValues kDdimThresh = {
    "ddim_thresh",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    661.1890834506174,
    661.1890834506174,
    {0.0, 0.9909302372459825, 1.0, 1.0},
    661.1885986328125,
    {0.0, 0.9909294843673706, 1.0, 1.0}};
const GoldenValues kDdimThreshNoClip = {
    "ddim_thresh_noclip",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    3440.130443368547,
    3440.130443368547,
    {0.0, 4.672058946339294, 8.9353127348739, 8.958673029605587},
    3440.13427734375,
    {0.0, 4.672065258026123, 8.935325622558594, 8.958683013916016}};

TEST(DdimSampler, MatchesDiffusersEtaZero) {
  // DDIMScheduler(linear 1e-4..0.02, clip_sample=False), set_timesteps(10), eta=0.0.
  check_golden(ddim_setup(linear_betas(), "leading"), kDdimEta0);
}

TEST(DdimSampler, MatchesDiffusersEtaOne) {
  // Same with eta=1.0 and generator=torch.manual_seed(0) <-> make_torch_noise(0). diffusers also
  // draws on the last step (std 0 there); diffuse does not, which cannot change the sample.
  GoldenSetup g = ddim_setup(linear_betas(), "leading", {{"eta", "1"}});
  g.seeded = true;
  check_golden(g, kDdimEta1);
}

TEST(DdimSampler, MatchesDiffusersLinspaceWithTrainStride) {
  // DDIMScheduler(linear, timestep_spacing="linspace", clip_sample=False), set_timesteps(10):
  // timesteps 999, 888, ..., 0 but DDIMScheduler.step goes to t - T // 10 (999 -> 899, ...,
  // 0 -> final), off the grid. prev_timestep=train_stride reproduces it.
  check_golden(ddim_setup(linear_betas(), "linspace", {{"prev_timestep", "train_stride"}}),
               kDdimLinspace);
  // The default (grid) follows the grid instead and so differs from diffusers here.
  auto sched = make_schedule("discrete", linear_betas());
  const TimeGrid grid = make_spacing("linspace")->grid(*sched, 10);
  const Tensor out = run_loop(*make_sampler("ddim"), *sched, grid,
                              denoiser_options("epsilon", false), sample_deter(at::kDouble));
  EXPECT_GT(std::abs(abs_sum(out) - kDdimLinspace.f64_abs_sum), 1e-2);
}

TEST(DdimSampler, TrainStrideEqualsGridForLeadingAndTrailing) {
  // For leading and trailing spacings t - T // n is the next grid point, so both modes agree.
  auto sched = make_schedule("discrete", sd_betas());
  for (const char* spacing : {"leading", "trailing"}) {
    const TimeGrid grid = make_spacing(spacing)->grid(*sched, 10);
    const Tensor x = sample_deter(at::kDouble);
    const Tensor a =
        run_loop(*make_sampler("ddim"), *sched, grid, denoiser_options("epsilon", false), x);
    const Tensor b = run_loop(*make_sampler("ddim", {{"prev_timestep", "train_stride"}}), *sched,
                              grid, denoiser_options("epsilon", false), x);
    ExpectTensorNear(a, b, 0, 0, spacing);
  }
}

TEST(DdimSampler, MatchesDiffusersScaledLinearTrailingVPrediction) {
  // DDIMScheduler(scaled_linear 0.00085..0.012, timestep_spacing="trailing",
  // prediction_type="v_prediction", clip_sample=False), set_timesteps(10): 999, ..., 99.
  GoldenSetup g = ddim_setup(sd_betas(), "trailing");
  g.denoiser = denoiser_options("v_prediction", false);
  check_golden(g, kDdimSdTrailingV);
}

TEST(DdimSampler, MatchesDiffusersSquaredCos) {
  // DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False), set_timesteps(10).
  check_golden(ddim_setup({{"beta_schedule", "squaredcos_cap_v2"}}, "leading"), kDdimCos);
}

TEST(DdimSampler, MatchesDiffusersZeroSnrVPredictionTrailing) {
  // DDIMScheduler(scaled_linear, rescale_betas_zero_snr=True, trailing, v_prediction,
  // clip_sample=False), set_timesteps(10); the first point has alpha = 0.
  Config c = sd_betas();
  c["rescale_betas_zero_snr"] = "true";
  GoldenSetup g = ddim_setup(c, "trailing");
  g.denoiser = denoiser_options("v_prediction", false);
  check_golden(g, kDdimZsnrVTrailing);
}

TEST(DdimSampler, MatchesDiffusersThresholding) {
  // DDIMScheduler(linear, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
  // set_timesteps(10), eta=0, x = sample_deter * 20 ...
  GoldenSetup g = ddim_setup(linear_betas(), "leading");
  g.denoiser.thresholding = true;
  g.denoiser.dynamic_thresholding_ratio = 0.9;
  g.denoiser.sample_max_value = 1.5;
  g.scale = 20.0;
  check_golden(g, kDdimThresh);
  // ... and without thresholding or clipping (clip_sample=False), to show the threshold acts.
  g.denoiser = denoiser_options("epsilon", false);
  check_golden(g, kDdimThreshNoClip);
}

}  // namespace
}  // namespace diffuse
