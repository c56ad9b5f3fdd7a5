// SPDX-License-Identifier: Apache-2.0
// DDPM ancestral sampler: diffusers' DDPMScheduler test-suite
// (tests/schedulers/test_scheduler_ddpm.py at 58eb52c), bit-compatibility with diffusers 58eb52c
// run in float64 and float32, and invariants.
//
// How the golden values were made (tests/reference/ddim_ddpm.py ddpm; see
// tests/reference/README.md): diffusers 58eb52c,
//   s = DDPMScheduler(**cfg); s.set_timesteps(steps); g = torch.manual_seed(0); x = sample_deter *
//   scale for t in s.timesteps: x = s.step(x * t / (t + 1), t, x, generator=g).prev_sample
// float64 run: the scheduler file with every float32 replaced by float64 (so betas,
// alphas_cumprod and `one` are float64), sample in float64, and randn_tensor replaced by
// torch.randn(shape, generator=g, dtype=float32).to(float64), i.e. the same float32 stream cast,
// which is what make_torch_noise does for double tensors. float32 run: stock diffusers.
#include <cmath>
#include <memory>

#include "samplers/diffusers_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

using namespace testing::diffusers_suite;  // NOLINT
using testing::ExpectTensorNear;

// DDPMSchedulerTest config: linear 1e-4..0.02, fixed_small, clip_sample=True; diffusers computes
// its tables in float32, so the suite runs use precision=float32.
std::unique_ptr<NoiseSchedule> suite_schedule(const char* precision = "float32") {
  Config c = linear_betas();
  c["precision"] = precision;
  return make_schedule("discrete", c);
}

// test_full_loop_no_noise / _with_v_prediction. Quirk reproduced: set_timesteps is never called,
// so previous_timestep is t - 1 for t = 999..0, i.e. leading spacing with 1000 steps; and despite
// the name every step with t > 0 adds sqrt(var) * randn from torch.manual_seed(0).
Tensor suite_full_loop(const std::string& prediction_type, at::ScalarType dtype,
                       const char* precision) {
  auto sched = suite_schedule(precision);
  const TimeGrid grid = make_spacing("leading")->grid(*sched, 1000);
  EXPECT_EQ(grid.front().t, 999);
  EXPECT_EQ(grid[998].t, 1);
  EXPECT_EQ(grid[999].t, 0);
  EXPECT_TRUE(grid.back().is_clean());
  auto noise = make_torch_noise(0);
  return run_loop(*make_sampler("ddpm"), *sched, grid, denoiser_options(prediction_type, true),
                  sample_deter(dtype), noise.get());
}

TEST(DdpmSampler, DiffusersFullLoopNoNoise) {
  // Expected sum 258.9606, mean 0.3372 (tolerances 1e-2, 1e-3).
  const Tensor out = suite_full_loop("epsilon", at::kFloat, "float32");
  EXPECT_NEAR(abs_sum(out), 258.9606, 1e-2);
  EXPECT_NEAR(abs_mean(out), 0.3372, 1e-3);
  // In double (float64 tables, float32 noise cast): diffusers run in float64 gives 258.9591.
  const Tensor out64 = suite_full_loop("epsilon", at::kDouble, "float64");
  EXPECT_NEAR(abs_sum(out64), 258.9591, 1e-3);
  EXPECT_NEAR(abs_sum(out64), 258.9606, 1e-2);
  EXPECT_NEAR(abs_mean(out64), 0.3372, 1e-3);
}

TEST(DdpmSampler, DiffusersFullLoopWithVPrediction) {
  // Expected sum 202.0296, mean 0.2631; diffusers in float64: 202.0283.
  const Tensor out = suite_full_loop("v_prediction", at::kFloat, "float32");
  EXPECT_NEAR(abs_sum(out), 202.0296, 1e-2);
  EXPECT_NEAR(abs_mean(out), 0.2631, 1e-3);
  const Tensor out64 = suite_full_loop("v_prediction", at::kDouble, "float64");
  EXPECT_NEAR(abs_sum(out64), 202.0283, 1e-3);
  EXPECT_NEAR(abs_mean(out64), 0.2631, 1e-3);
}

TEST(DdpmSampler, DiffusersFullLoopWithNoise) {
  // test_full_loop_with_noise: timesteps[998:] = [1, 0] (no set_timesteps, so prev_t = t - 1 and
  // the last step lands on -1), x = add_noise(sample_deter, noise_deter, 1), then two steps with
  // torch.manual_seed(0) (one draw, at t = 1). Expected sum 387.9466 (tol 1e-2), mean 0.5051
  // (1e-3).
  //
  // Known float32-vs-float64 case: diffusers computes
  // current_beta_t = 1 - alphas_cumprod[1] / alphas_cumprod[0] in float32, which cancels (relative
  // error 1e-4 in beta, c_x0 = 0.5452302 instead of 0.5452847). diffuse computes the coefficients
  // as host doubles, so even with float32 tables and float32 tensors the sum is 387.9676, which is
  // what diffusers gives with its step coefficients evaluated in double (measured: 387.96762), and
  // the float64 diffusers run gives 387.9673 (stock and float64 diffusers sums:
  // tests/reference/ddim_ddpm.py ddpm_noise). The sum therefore gets a relative tolerance of 1e-4
  // (5.4e-5 off), the mean keeps the suite's 1e-3.
  for (const char* precision : {"float32", "float64"}) {
    for (const auto dtype : {at::kFloat, at::kDouble}) {
      auto sched = suite_schedule(precision);
      const TimeGrid grid = make_spacing("timesteps", {{"timesteps", "1;0"}})->grid(*sched, 2);
      const Tensor x = add_noise(sample_deter(dtype), noise_deter(dtype), grid.front());
      auto noise = make_torch_noise(0);
      const Tensor out = run_loop(*make_sampler("ddpm"), *sched, grid,
                                  denoiser_options("epsilon", true), x, noise.get());
      EXPECT_NEAR(abs_sum(out), 387.9466, 1e-4 * 387.9466)
          << precision << " " << at::toString(dtype);
      EXPECT_NEAR(abs_sum(out), 387.9676, 1e-3) << precision << " " << at::toString(dtype);
      EXPECT_NEAR(abs_mean(out), 0.5051, 1e-3) << precision << " " << at::toString(dtype);
    }
  }
}

TEST(DdpmSampler, DiffusersVariance) {
  // test_variance: _get_variance(t) with previous_timestep t - 1 (fixed_small), tolerance 1e-5;
  // at t = 0 the posterior variance is 0 and diffusers clamps it to 1e-20.
  auto sched = suite_schedule();
  EXPECT_EQ(
      DdpmSampler::variance(sched->at(0), sched->clean_point(), DdpmVarianceType::kFixedSmall),
      1e-20);
  EXPECT_NEAR(DdpmSampler::variance(sched->at(487), sched->at(486), DdpmVarianceType::kFixedSmall),
              0.00979, 1e-5);
  EXPECT_NEAR(DdpmSampler::variance(sched->at(999), sched->at(998), DdpmVarianceType::kFixedSmall),
              0.02, 1e-5);
  // fixed_large is beta' itself (not clamped): beta_487 and beta_999 of the linear schedule.
  auto* d = dynamic_cast<DiscreteSchedule*>(sched.get());
  ASSERT_NE(d, nullptr);
  EXPECT_NEAR(DdpmSampler::variance(sched->at(487), sched->at(486), DdpmVarianceType::kFixedLarge),
              d->betas()[487], 1e-7);
  EXPECT_NEAR(DdpmSampler::variance(sched->at(999), sched->at(998), DdpmVarianceType::kFixedLarge),
              0.02, 1e-7);
  EXPECT_EQ(DdpmSampler::variance(sched->at(0), sched->at(0), DdpmVarianceType::kFixedLarge), 0.0);
}

TEST(DdpmSampler, DiffusersCustomTimesteps) {
  // test_custom_timesteps: [100, 87, 50, 1, 0] -> previous_timestep 87, 50, 1, 0, -1.
  auto sched = suite_schedule();
  const TimeGrid grid =
      make_spacing("timesteps", {{"timesteps", "100;87;50;1;0"}})->grid(*sched, 5);
  const std::vector<double> expected_now{100, 87, 50, 1, 0}, expected_prev{87, 50, 1, 0, -1};
  std::vector<double> now, prev;
  auto noise = make_torch_noise(0);
  Denoiser d(dummy_network(), denoiser_options("epsilon", true));
  SampleContext ctx;
  ctx.schedule = sched.get();
  ctx.noise = noise.get();
  ctx.on_step = [&](const StepInfo& info) {
    now.push_back(info.step.now.t);
    prev.push_back(info.step.next.t);
  };
  make_sampler("ddpm")->sample(model_fn(d), sample_deter(), grid, ctx);
  EXPECT_EQ(now, expected_now);
  EXPECT_EQ(prev, expected_prev);
  EXPECT_TRUE(grid.back().is_clean());
}

TEST(DdpmSampler, DiffusersCustomTimestepsErrors) {
  auto sched = suite_schedule();
  // test_custom_timesteps_increasing_order: [100, 87, 50, 51, 0].
  try {
    make_spacing("timesteps", {{"timesteps", "100;87;50;51;0"}});
    ADD_FAILURE() << "an increasing list was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("51"), std::string::npos) << e.what();
  }
  // test_custom_timesteps_too_large: [1000] with T = 1000.
  try {
    make_spacing("timesteps", {{"timesteps", "1000"}})->grid(*sched, 1);
    ADD_FAILURE() << "timestep 1000 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1000"), std::string::npos) << e.what();
  }
  // test_custom_timesteps_passing_both_num_inference_steps_and_timesteps: diffusers rejects
  // num_inference_steps together with timesteps. Our spacing always receives num_steps; the
  // analogue is a count that disagrees with the list.
  EXPECT_THROW(make_spacing("timesteps", {{"timesteps", "100;87;50;1;0"}})->grid(*sched, 4), Error);
  // Negative and repeated timesteps.
  EXPECT_THROW(make_spacing("timesteps", {{"timesteps", "100;-1"}})->grid(*sched, 2), Error);
  EXPECT_THROW(make_spacing("timesteps", {{"timesteps", "100;100"}}), Error);
}

// ---------------------------------------------------------------------------------------------
// Bit compatibility with diffusers 58eb52c (see the header comment for the exact calls).

GoldenSetup ddpm_setup(Config schedule, const char* spacing, int64_t steps, Config sampler = {}) {
  GoldenSetup g;
  g.sampler = "ddpm";
  g.sampler_config = std::move(sampler);
  g.schedule_config = std::move(schedule);
  g.spacing = spacing;
  g.steps = steps;
  g.denoiser = denoiser_options("epsilon", false);
  g.seeded = true;
  return g;
}

const GoldenValues kDdpmSmall = {
    "ddpm_small",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    -17.69874171057216,
    236.89098746293223,
    {-0.42347065262021993, 0.2601165723830588, 0.47941363205353893, -0.06137087621109929},
    236.89105224609375,
    {-0.42347007989883423, 0.26011592149734497, 0.47941356897354126, -0.061370618641376495}};
const GoldenValues kDdpmLarge = {
    "ddpm_large",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    -7.102463363897243,
    381.52938356742976,
    {-0.4013149299678453, 0.2592210152574499, 0.6371905029896423, 0.018740241414740205},
    381.5294494628906,
    {-0.4013139307498932, 0.25922027230262756, 0.6371902823448181, 0.01874030940234661}};
const GoldenValues kDdpmSdTrailingV = {
    "ddpm_sd_trailing_v",
    {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
    {0.004660098513077241, 0.014298676888235705, 0.03719499978868229, 0.08312833086588121,
     0.16175251500515686, 0.27766965045646774, 0.426086363602332, 0.592183122439103,
     0.7552383611581193, 0.8954627734950016},
    0.3764565349676774,
    152.7329072809659,
    {-0.09986189670721671, 0.06988176210925537, 0.22154335286805582, 0.023787399125947722},
    152.73287963867188,
    {-0.0998617559671402, 0.06988164037466049, 0.22154322266578674, 0.023787397891283035}};
const GoldenValues kDdpmCos = {
    "ddpm_cos",
    {950, 900, 850, 800, 750, 700, 650, 600, 550, 500,
     450, 400, 350, 300, 250, 200, 150, 100, 50,  0},
    {0.00582014926969516, 0.023616108794393863, 0.05295902561481321, 0.09313777967023361,
     0.14317864642609812, 0.20186889490464904,  0.2677861779916876,  0.33933300275090544,
     0.4147754453642161,  0.49228517244880304,  0.5699837503721791,  0.6459881687373604,
     0.7184564747850655,  0.7856324127717941,   0.8458879864968832,  0.8977629134837037,
     0.9400000146503524,  0.9715756818078386,   0.9917246846116903,  0.999958715775178},
    -8.792599276312583,
    255.16515220086023,
    {-0.527324901369324, -0.019337696248979432, 0.14685105139739954, 0.38202790950749277},
    255.1658935546875,
    {-0.5273284316062927, -0.01933886483311653, 0.1468527615070343, 0.3820299804210663}};
const GoldenValues kDdpmZsnrVTrailing = {
    "ddpm_zsnr_v_trailing",
    {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
    {0.0, 0.0030330723706475447, 0.017883163872704545, 0.05578332001291966, 0.12844772385330858,
     0.24235916655614534, 0.39354405750427784, 0.5665157543278662, 0.7387001074220011,
     0.8880858947943182},
    0.07049752246630892,
    150.4294134476712,
    {-0.08558589267413305, 0.0715125934248292, 0.21232328760339572, 0.024069540997336356},
    150.42935180664062,
    {-0.08558568358421326, 0.07151244580745697, 0.21232318878173828, 0.02406955696642399}};
const GoldenValues kDdpmThresh = {
    "ddpm_thresh",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    27.230148232777037,
    239.04399352562848,
    {-0.42347065262021993, 0.32111110556815853, 0.5960135936595891, 0.05553271224406887},
    239.04403686523438,
    {-0.42347007989883423, 0.32111045718193054, 0.5960135459899902, 0.055533066391944885}};
const GoldenValues kDdpmLargeTrailing = {
    "ddpm_large_trailing",
    {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
    {4.035829765375676e-05, 0.00027520591190339843, 0.0015320895496479475, 0.006966110556527834,
     0.025879389423334884, 0.07858724288177824, 0.19514644493343242, 0.3964197594582526,
     0.6590385082317941, 0.89701814567496},
    1.0535242410114645,
    395.1218719398231,
    {-0.011195054650021685, 0.5204963292039311, 0.7934958802675013, -0.10304001417604139},
    395.1219177246094,
    {-0.01119530200958252, 0.5204971432685852, 0.7934964299201965, -0.10304024070501328}};

const GoldenValues kDdpmLearnedRange = {
    "ddpm_learned_range",
    {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
    {0.0002702445195582643, 0.001507521059781676, 0.006868278890364642, 0.025567492265459,
     0.07779665836502389, 0.19357200966664667, 0.39401112252338205, 0.6563470055193468,
     0.8951415908975365, 0.9999},
    -19.6626149505309,
    280.62824879268845,
    {-0.5407640442561219, 0.2571734494982642, 0.5901863695514651, -0.06462461921823924},
    280.62841796875,
    {-0.5407628417015076, 0.2571706175804138, 0.5901855826377869, -0.06462392956018448}};
const GoldenValues kDdpmLearnedRangeTrailing = {
    "ddpm_learned_range_trailing",
    {999, 959, 919, 879, 839, 799, 759, 719, 679, 639, 599, 559, 519,
     479, 439, 399, 359, 319, 279, 239, 199, 159, 119, 79,  39},
    {4.035829765375676e-05, 8.912634052801964e-05, 0.0001905313204581149, 0.0003942985699780176,
     0.0007899397835650771, 0.0015320895496479475, 0.0028767829318072603, 0.005229668950738415,
     0.009204428484782206,  0.01568506518905322,   0.025879389423334884,  0.041343879825881474,
     0.06395422347461867,   0.09579421869163277,   0.13894172683788186,   0.19514644493343242,
     0.26542044496275125,   0.3495948924908046,    0.4459271803303843,    0.5508611357606029,
     0.6590385082317941,    0.7636265997270155,    0.856966831265905,     0.9314740910162782,
     0.9806463645668042},
    -11.811248670865561,
    281.24467779383554,
    {-0.6811807783932184, -0.21740155065385916, -0.08195901377842363, 0.47269610066939155},
    281.2445983886719,
    {-0.6811807751655579, -0.21740160882472992, -0.08195911347866058, 0.47269588708877563}};

TEST(DdpmSampler, MatchesDiffusersFixedSmall) {
  // DDPMScheduler(linear 1e-4..0.02, clip_sample=False), set_timesteps(10) (leading: 900..0).
  check_golden(ddpm_setup(linear_betas(), "leading", 10), kDdpmSmall);
}

TEST(DdpmSampler, MatchesDiffusersFixedLarge) {
  // Same with variance_type="fixed_large".
  check_golden(ddpm_setup(linear_betas(), "leading", 10, {{"variance_type", "fixed_large"}}),
               kDdpmLarge);
}

TEST(DdpmSampler, MatchesDiffusersScaledLinearTrailingVPrediction) {
  // DDPMScheduler(scaled_linear 0.00085..0.012, timestep_spacing="trailing", prediction_type=
  // "v_prediction", clip_sample=False), set_timesteps(10): 999..99. diffusers draws noise on the
  // last step too (t = 99 > 0; fixed_small: 1e-10 * z), reproduced by diffusers_final_noise.
  GoldenSetup g = ddpm_setup(sd_betas(), "trailing", 10, {{"diffusers_final_noise", "true"}});
  g.denoiser = denoiser_options("v_prediction", false);
  check_golden(g, kDdpmSdTrailingV);
}

TEST(DdpmSampler, MatchesDiffusersSquaredCos) {
  // DDPMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False), set_timesteps(20).
  Config c{{"beta_schedule", "squaredcos_cap_v2"}};
  check_golden(ddpm_setup(c, "leading", 20), kDdpmCos);
}

TEST(DdpmSampler, MatchesDiffusersZeroSnrVPredictionTrailing) {
  // DDPMScheduler(scaled_linear 0.00085..0.012, rescale_betas_zero_snr=True, trailing,
  // v_prediction, clip_sample=False), set_timesteps(10); the first step starts at alpha = 0.
  Config c = sd_betas();
  c["rescale_betas_zero_snr"] = "true";
  GoldenSetup g = ddpm_setup(c, "trailing", 10, {{"diffusers_final_noise", "true"}});
  g.denoiser = denoiser_options("v_prediction", false);
  check_golden(g, kDdpmZsnrVTrailing);
}

TEST(DdpmSampler, MatchesDiffusersThresholding) {
  // DDPMScheduler(linear, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
  // set_timesteps(10), x = sample_deter * 20 (so that |x0| > 1 and the threshold bites).
  GoldenSetup g = ddpm_setup(linear_betas(), "leading", 10);
  g.denoiser.thresholding = true;
  g.denoiser.dynamic_thresholding_ratio = 0.9;
  g.denoiser.sample_max_value = 1.5;
  g.scale = 20.0;
  check_golden(g, kDdpmThresh);
}

/// The learned-variance dummy of tests/reference/ddim_ddpm.py: [x t / (t + 1), tanh(x) 0.9].
Network learned_range_network() {
  return [](const Tensor& x, const Tensor& t, const Conditioning&) {
    const Tensor tt = t.to(x.scalar_type()).view({-1, 1, 1, 1});
    return at::cat({x * tt / (tt + 1), x.tanh() * 0.9}, 1);
  };
}

TEST(DdpmSampler, MatchesDiffusersLearnedRange) {
  // DDPMScheduler(linear, variance_type="learned_range", clip_sample=False), set_timesteps(10):
  // the model's second C channels v give log variance (v + 1) / 2 log beta' + (1 - v) / 2 log
  // beta-tilde (iDDPM; DiT's sampler). Leading spacing ends on t = 0: no final noise.
  GoldenSetup g = ddpm_setup(linear_betas(), "leading", 10, {{"variance_type", "learned_range"}});
  g.denoiser.learned_variance = true;
  g.network = learned_range_network();
  check_golden(g, kDdpmLearnedRange);
}

TEST(DdpmSampler, MatchesDiffusersLearnedRangeTrailing) {
  // The same on 25 trailing steps (999 .. 39): diffusers adds noise on the last step too.
  GoldenSetup g =
      ddpm_setup(linear_betas(), "trailing", 25,
                 {{"variance_type", "learned_range"}, {"diffusers_final_noise", "true"}});
  g.denoiser.learned_variance = true;
  g.network = learned_range_network();
  check_golden(g, kDdpmLearnedRangeTrailing);
}

TEST(DdpmSampler, MatchesDiffusersFinalNoiseQuirk) {
  // DDPMScheduler(linear, variance_type="fixed_large", timestep_spacing="trailing",
  // clip_sample=False), set_timesteps(10): the last step goes from t = 99 to -1 and diffusers adds
  // sqrt(1 - alphas_cumprod[99]) * z there. diffusers_final_noise=true reproduces it ...
  GoldenSetup g = ddpm_setup(linear_betas(), "trailing", 10,
                             {{"variance_type", "fixed_large"}, {"diffusers_final_noise", "true"}});
  check_golden(g, kDdpmLargeTrailing);
  // ... and the default leaves the final step noise-free, so the result is the diffusers one
  // minus that last noise term.
  auto sched = make_schedule("discrete", linear_betas());
  const TimeGrid grid = make_spacing("trailing")->grid(*sched, 10);
  auto n1 = make_torch_noise(0), n2 = make_torch_noise(0);
  DdpmSampler quirk(
      DdpmOptions().variance_type(DdpmVarianceType::kFixedLarge).diffusers_final_noise(true));
  DdpmSampler plain(DdpmOptions().variance_type(DdpmVarianceType::kFixedLarge));
  const Tensor x = sample_deter(at::kDouble);
  const Tensor a = run_loop(quirk, *sched, grid, denoiser_options("epsilon", false), x, n1.get());
  const Tensor b = run_loop(plain, *sched, grid, denoiser_options("epsilon", false), x, n2.get());
  auto replay = make_torch_noise(0);
  Tensor z_last;
  for (int i = 0; i < 10; ++i)
    z_last = replay->randn_like(x);  // the 10th draw belongs to the last step
  ExpectTensorNear(a - b, z_last * grid[9].sigma, 1e-12, 1e-9, "final noise term");
}

// ---------------------------------------------------------------------------------------------
// Invariants and API.

TEST(DdpmSampler, EqualsDdimWithEtaOne) {
  // DDPM's fixed_small posterior is DDIM's eta = 1 step (Song et al. 2020, Eq. (16)): same noise,
  // same result, although the two samplers compute it by different formulas.
  auto sched = make_schedule("discrete", sd_betas());
  for (const char* spacing : {"leading", "trailing", "linspace"}) {
    const TimeGrid grid = make_spacing(spacing)->grid(*sched, 7);
    auto n1 = make_torch_noise(3), n2 = make_torch_noise(3);
    const Tensor x = sample_deter(at::kDouble) * 3 - 1;
    const Tensor a = run_loop(*make_sampler("ddpm"), *sched, grid,
                              denoiser_options("epsilon", false), x, n1.get());
    const Tensor b = run_loop(*make_sampler("ddim", {{"eta", "1"}}), *sched, grid,
                              denoiser_options("epsilon", false), x, n2.get());
    ExpectTensorNear(a, b, 1e-12, 1e-10, spacing);
  }
}

TEST(DdpmSampler, NoiseIsDrawnOncePerStepExceptOntoTheCleanPoint) {
  auto sched = make_schedule("discrete", linear_betas());
  const TimeGrid grid = make_spacing("trailing")->grid(*sched, 4);  // 999, 749, 499, 249 -> clean
  const Tensor x = sample_deter(at::kDouble);
  std::vector<Tensor> draws(3, at::zeros_like(x));
  auto replay = make_replay_noise(draws);  // throws if a 4th draw is asked for
  EXPECT_NO_THROW(run_loop(*make_sampler("ddpm"), *sched, grid, denoiser_options("epsilon", false),
                           x, replay.get()));
  auto replay2 = make_replay_noise(draws);
  EXPECT_THROW(run_loop(*make_sampler("ddpm", {{"diffusers_final_noise", "true"}}), *sched, grid,
                        denoiser_options("epsilon", false), x, replay2.get()),
               Error);
  // Without a noise source the stochastic sampler says so.
  EXPECT_THROW(
      run_loop(*make_sampler("ddpm"), *sched, grid, denoiser_options("epsilon", false), x, nullptr),
      Error);
}

TEST(DdpmSampler, ZeroNoiseGivesThePosteriorMean) {
  // With z = 0 one step from t to s is Eq. (7)'s mean; for eps-prediction and no clipping it equals
  // the eps form (1/sqrt(alpha'_t)) (x_t - beta'_t / sqrt(1 - abar_t) * eps) (Ho et al. Eq. (11)).
  auto sched = make_schedule("discrete", linear_betas());
  const TimePoint now = sched->at(600), next = sched->at(450);
  const Tensor x = sample_deter(at::kDouble) * 2 - 1;
  const Tensor eps = x * 0.3 + 0.1;
  ModelFn model = [&](const Tensor& xx, const TimePoint& at, const StepContext&) {
    return Prediction{(xx - eps * at.sigma) / at.alpha, eps};
  };
  auto zeros = make_replay_noise({at::zeros_like(x)});
  SampleContext ctx;
  ctx.noise = zeros.get();
  StepContext st;
  st.now = now;
  st.next = next;
  st.num_steps = 1;
  const Tensor out = make_sampler("ddpm")->step(model, x, st, History{}, ctx).x;
  const double abar_t = now.alpha * now.alpha, abar_s = next.alpha * next.alpha;
  const double alpha_t = abar_t / abar_s, beta_t = 1 - alpha_t;
  const Tensor expected = (x - eps * (beta_t / std::sqrt(1 - abar_t))) / std::sqrt(alpha_t);
  ExpectTensorNear(out, expected, 1e-12, 1e-12, "posterior mean");
}

TEST(DdpmSampler, SamplesGaussianDataWithTheExactDenoiser) {
  // Data x0 ~ N(mu, s^2) per element; the exact denoiser is E[x0 | x_t] = mu + k (x_t - alpha mu),
  // k = alpha s^2 / (alpha^2 s^2 + sigma^2). Starting from the exact marginal at t = 999, the
  // chain stays Gaussian, and the mean/std of its output follow a scalar recursion computed
  // independently in numpy (tests/reference/ddpm_gaussian.py; linear betas 1e-4..0.02, leading
  // spacing):
  //   1000 steps: std 0.29625 (fixed_small), 0.30092 (fixed_large); mean 0.5 in all cases;
  //     20 steps: std 0.21464 (fixed_small, under-dispersed), 0.35852 (fixed_large,
  //     over-dispersed).
  // 20000 samples: Monte-Carlo error 0.0021 on the mean and 0.5% on the std (tolerances ~4 sigma).
  const double mu = 0.5, s = 0.3;
  auto sched = make_schedule("discrete", linear_betas());
  ModelFn exact = [&](const Tensor& x, const TimePoint& at, const StepContext&) {
    const double k = at.alpha * s * s / (at.alpha * at.alpha * s * s + at.sigma * at.sigma);
    Tensor x0 = (x - at.alpha * mu) * k + mu;
    return Prediction{x0, (x - x0 * at.alpha) / at.sigma};
  };
  struct Case {
    const char* variance;
    int64_t steps;
    double std;
  };
  for (const Case c : {Case{"fixed_small", 1000, 0.29625}, Case{"fixed_large", 1000, 0.30092},
                       Case{"fixed_small", 20, 0.21464}, Case{"fixed_large", 20, 0.35852}}) {
    const TimeGrid grid = make_spacing("leading")->grid(*sched, c.steps);
    const TimePoint& first = grid.front();
    auto noise = make_torch_noise(11);
    const Tensor z = noise->randn({20000}, at::TensorOptions().dtype(at::kDouble));
    const Tensor x = z * std::sqrt(first.alpha * first.alpha * s * s + first.sigma * first.sigma) +
                     first.alpha * mu;
    SampleContext ctx;
    ctx.schedule = sched.get();
    ctx.noise = noise.get();
    const Tensor out =
        make_sampler("ddpm", {{"variance_type", c.variance}})->sample(exact, x, grid, ctx);
    EXPECT_NEAR(out.mean().item<double>(), mu, 0.008) << c.variance << " " << c.steps;
    EXPECT_NEAR(out.std().item<double>(), c.std, 0.02 * c.std) << c.variance << " " << c.steps;
  }
}

// The same chain through sample() with its default noise, started from randn(shape, seed) with
// options.seed = seed (the steps continue the per-sample generators past the starting noise): the
// output has the reference's statistics (fixed_large, 20 steps: std 0.35852).
TEST(DdpmSampler, DefaultNoiseSamplesGaussianDataThroughSample) {
  const double mu = 0.5, s = 0.3;
  auto sched = make_schedule("discrete", linear_betas());
  const NoiseSchedule& schedule = *sched;
  Network exact = [&](const Tensor& x, const Tensor& t, const Conditioning&) {
    const Tensor alpha = schedule.alpha(t).view({-1, 1}), sigma = schedule.sigma(t).view({-1, 1});
    const Tensor k = alpha * s * s / (alpha * alpha * s * s + sigma * sigma);
    const Tensor x0 = (x - alpha * mu) * k + mu;
    return (x - x0 * alpha) / sigma;
  };
  const Denoiser denoiser(exact, {Parameterization::kEpsilon});
  auto sampler = make_sampler("ddpm", {{"variance_type", "fixed_large"}});
  SampleOptions o;
  o.num_steps = 20;
  o.spacing = make_spacing("leading");
  o.seed = 21;
  const TimePoint first = make_grid(schedule, o).front();
  // 20000 samples of one element; the start is the exact marginal at the first point (sample()
  // scales the noise by sqrt(alpha^2 + sigma^2) = 1 here, so the data's part is added by hand).
  const double scale = std::sqrt(first.alpha * first.alpha * s * s + first.sigma * first.sigma);
  const Tensor z = randn({20000, 1}, o.seed, at::kDouble);
  const Tensor start = z * scale + first.alpha * mu;
  const Tensor out = sample(*sampler, denoiser, schedule, start, o);
  EXPECT_NEAR(out.mean().item<double>(), mu, 0.008);
  EXPECT_NEAR(out.std().item<double>(), 0.35852, 0.02 * 0.35852);
}

TEST(DdpmSampler, FixedSmallLogEqualsFixedSmall) {
  auto sched = make_schedule("discrete", linear_betas());
  const TimeGrid grid = make_spacing("leading")->grid(*sched, 10);
  auto n1 = make_torch_noise(1), n2 = make_torch_noise(1);
  const Tensor x = sample_deter(at::kDouble);
  const Tensor a =
      run_loop(*make_sampler("ddpm"), *sched, grid, denoiser_options("epsilon", true), x, n1.get());
  const Tensor b = run_loop(*make_sampler("ddpm", {{"variance_type", "fixed_small_log"}}), *sched,
                            grid, denoiser_options("epsilon", true), x, n2.get());
  ExpectTensorNear(a, b, 0, 1e-14, "fixed_small_log");
}

TEST(DdpmSampler, ConfigRoundTripAndErrors) {
  auto s =
      make_sampler("ddpm", {{"variance_type", "fixed_large"}, {"diffusers_final_noise", "true"}});
  EXPECT_EQ(s->name(), "ddpm");
  EXPECT_TRUE(s->is_stochastic());
  const Config c = s->to_config();
  EXPECT_EQ(c.at("variance_type"), "fixed_large");
  EXPECT_EQ(c.at("diffusers_final_noise"), "true");
  EXPECT_EQ(make_sampler("ddpm", c)->to_config(), c);
  EXPECT_EQ(
      make_sampler("ddpm", {{"variance_type", "learned_range"}})->to_config().at("variance_type"),
      "learned_range");
  try {
    make_sampler("ddpm", {{"variance_type", "learned"}});  // diffusers' other learned type
    ADD_FAILURE() << "learned was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("learned_range"), std::string::npos) << e.what();
  }
  EXPECT_THROW(DdpmSampler(DdpmOptions().variance_type(static_cast<DdpmVarianceType>(7))), Error);
  EXPECT_THROW(make_sampler("ddpm", {{"eta", "1"}}), Error);
}

// learned_range (iDDPM / ADM / DiT): log variance = frac log(beta') + (1 - frac) log(beta-tilde),
// frac = (v + 1) / 2. So v = -1 everywhere is fixed_small and v = 1 fixed_large, element by
// element, with the same noise draws; under guidance the conditional branch's v is used.
TEST(DdpmSampler, LearnedRangeInterpolatesTheFixedVariancesElementwise) {
  auto sched = make_schedule("discrete");
  const auto f = [](const Tensor& x, const Tensor& t) {
    return x.mul(0.3).add(t.view({-1, 1, 1, 1}).mul(1e-4));
  };
  // v per element: -1 on channel 0, +1 on channel 1; with labels, the label's sign decides.
  const Denoiser fixed(
      [&](const Tensor& x, const Tensor& t, const Conditioning&) { return f(x, t); });
  DenoiserOptions lv;
  lv.learned_variance = true;
  auto v_of = [](const Tensor& x, const Conditioning& c) {
    Tensor v = at::ones_like(x);
    if (c.value.defined()) return v.mul(c.value.to(x.scalar_type()).view({-1, 1, 1, 1}));
    v.select(1, 0).fill_(-1.0);
    return v;
  };
  const Denoiser learned(
      [&](const Tensor& x, const Tensor& t, const Conditioning& c) {
        return at::cat({f(x, t), v_of(x, c)}, 1);
      },
      lv);
  const Tensor noise = at::randn({2, 2, 4, 4}, at::kDouble);
  SampleOptions o;
  o.num_steps = 12;
  o.seed = 5;
  auto run = [&](const char* variance, const Denoiser& d, const SampleOptions& so) {
    return sample(*make_sampler("ddpm", {{"variance_type", variance}}), d, *sched, noise, so);
  };
  const Tensor small = run("fixed_small", fixed, o), large = run("fixed_large", fixed, o);
  const Tensor mixed = run("learned_range", learned, o);
  ExpectTensorNear(mixed.select(1, 0), small.select(1, 0), 0, 1e-12, "v = -1: fixed_small");
  ExpectTensorNear(mixed.select(1, 1), large.select(1, 1), 0, 1e-12, "v = +1: fixed_large");
  EXPECT_GT((small - large).abs().max().item<double>(), 1e-3);  // the two really differ
  // Guided: cond labels +1, uncond labels -1; the conditional branch's v (+1) is used.
  SampleOptions g = o;
  g.guidance = make_guidance("cfg", {{"scale", "3"}});
  g.cond.value = at::ones({2}, at::kLong);
  g.uncond.value = at::full({2}, -1, at::kLong);
  ExpectTensorNear(run("learned_range", learned, g), run("fixed_large", fixed, g), 0, 1e-12,
                   "guided: cond branch's v");
  // Without a learned variance: a clear error.
  EXPECT_ERROR_NAMING(run("learned_range", fixed, o),
                      "learned_range needs a network with a learned variance");
  // A learned-variance network must return twice the channels.
  const Denoiser wrong(
      [&](const Tensor& x, const Tensor& t, const Conditioning&) { return f(x, t); }, lv);
  EXPECT_ERROR_NAMING(run("learned_range", wrong, o), "twice the channels");
}

}  // namespace
}  // namespace diffuse
