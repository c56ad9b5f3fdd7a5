// SPDX-License-Identifier: Apache-2.0
// LCM and TCD (samplers/lcm.h, samplers/tcd.h) and the lcm spacing against diffusers LCMScheduler
// / TCDScheduler (huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951) through
// from_diffusers, with the schedulers' own noise draws replayed, plus their limit cases.
#include <cmath>

#include <diffuse/samplers/lcm.h>
#include <diffuse/schedules/spacing/lcm.h>

#include "dpm_fixtures.h"
#include "k_sampler_fixtures.h"

namespace diffuse {
namespace {

// `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH lcm` (diffusers 58eb52c,
// torch 1.13.1): ConfigGolden rows (tests/samplers/dpm_fixtures.h), the nonlinear model from
// x = 2 * dummy_sample_deter - 1, the scheduler's draws from torch.Generator().manual_seed(seed).
const std::vector<testing::ConfigGolden> kLcmGolden = {
    // LcmDefault4: LCMScheduler {}, set_timesteps(4), seed 0
    {"LcmDefault4",
     "LCMScheduler",
     "",
     4,
     0,
     {999, 759, 499, 259},
     {14.614641229333635, 4.2605568521772259, 1.6128861943038755, 0.71937962030588198, 0},
     1155.3956629579654,
     {-2.3229523317747787, -1.9413693578419258, -0.0085486222043280966, 1.1412808983540688,
      2.767990311040486, 1.2480571111209393},
     1155.39575,
     {-2.32295251, -1.94136965, -0.00854845531, 1.14128113, 2.76799035, 1.24805784}},
    // LcmDefault1: LCMScheduler {}, set_timesteps(1), seed 0
    {"LcmDefault1",
     "LCMScheduler",
     "",
     1,
     0,
     {999},
     {14.614641229333635, 0},
     4530.8558683731444,
     {-11.028634124887857, -11.024763966132138, 3.9459783179082, 4.5026655106078914,
      5.9410898312932741, 4.4884208474853855},
     4530.85693,
     {-11.0286379, -11.0247669, 3.94597888, 4.50266504, 5.94109201, 4.48842144}},
    // LcmOriginal100Steps8: LCMScheduler {'original_inference_steps': 100}, set_timesteps(8), seed
    // 3
    {"LcmOriginal100Steps8",
     "LCMScheduler",
     "original_inference_steps=100",
     8,
     3,
     {999, 879, 749, 629, 499, 379, 249, 129},
     {14.614641229333635, 7.48542139353368, 4.0817293637243068, 2.5388342492013831,
      1.6128861943038755, 1.086729360802956, 0.69320489963868825, 0.40892744481896187, 0},
     561.68546236852796,
     {-1.8332309349149294, 1.7853340202446526, -0.39267125613712878, -1.7974557962426654,
      -0.0095388739193868685, 1.3531923511544111},
     561.685425,
     {-1.8332305, 1.78533435, -0.392671168, -1.7974571, -0.00953877624, 1.35319245}},
    // LcmLinearV: LCMScheduler {'beta_schedule': 'linear', 'beta_start': 0.0001, 'beta_end': 0.02,
    // 'prediction_type': 'v_prediction'}, set_timesteps(6), seed 1
    {"LcmLinearV",
     "LCMScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,prediction_type=v_prediction",
     6,
     1,
     {999, 839, 679, 499, 339, 179},
     {157.40728081040757, 35.565703667996338, 10.375131610226417, 3.4241366190440412,
      1.5065528257052412, 0.63561087667907168, 0},
     158.39116926398719,
     {-0.21475264940028643, -0.1012363740986779, 0.019078107501367705, -0.020306266113214552,
      0.18775293906601581, 0.11004081686758012},
     158.391159,
     {-0.214752614, -0.101236373, 0.0190780535, -0.020306373, 0.187752813, 0.110040754}},
    // LcmSampleClipScaling1: LCMScheduler {'prediction_type': 'sample', 'clip_sample': True,
    // 'timestep_scaling': 1.0}, set_timesteps(5), seed 2
    {"LcmSampleClipScaling1",
     "LCMScheduler",
     "clip_sample=true,prediction_type=sample,timestep_scaling=1",
     5,
     2,
     {999, 799, 599, 399, 199},
     {14.614641229333635, 5.0877631826786605, 2.276463065764657, 1.1605783219528751,
      0.5692848883499535, 0},
     299.49684732512651,
     {0.36429083307209015, 0.14270557796914354, -0.57887029485633956, 0.20652614099495317,
      -0.6673227363136639, 0.40933743107967913},
     299.496887,
     {0.364290744, 0.142705247, -0.578870773, 0.206525907, -0.667322397, 0.409337312}},
    // LcmThreshold: LCMScheduler {'thresholding': True, 'sample_max_value': 0.8}, set_timesteps(4),
    // seed 5
    {"LcmThreshold",
     "LCMScheduler",
     "sample_max_value=0.8,thresholding=true",
     4,
     5,
     {999, 759, 499, 259},
     {14.614641229333635, 4.2605568521772259, 1.6128861943038755, 0.71937962030588198, 0},
     472.73148147705922,
     {-0.2455121463284505, -1.0000000295588096, -1.0000000255477639, -1.0000000466050192,
      0.21863579933080987, -0.90093191633114533},
     472.731506,
     {-0.245512635, -1, -1, -1.00000012, 0.218634829, -0.900932014}},
    // LcmZeroSnrV: LCMScheduler {'rescale_betas_zero_snr': True, 'prediction_type':
    // 'v_prediction'}, set_timesteps(4), seed 4
    {"LcmZeroSnrV",
     "LCMScheduler",
     "prediction_type=v_prediction,rescale_betas_zero_snr=true",
     4,
     4,
     {999, 759, 499, 259},
     {INFINITY, 5.727929260483295, 1.768080202901162, 0.75519101289531598, 0},
     177.14208021939444,
     {-0.17559854007593625, -0.16717856195693995, -0.17060650072568551, -0.078783347435330192,
      -0.098456253797735108, 0.23431723498598542},
     177.142059,
     {-0.175598517, -0.167178601, -0.17060627, -0.07878346, -0.0984563157, 0.234317169}},
    // TcdDefault4: TCDScheduler {}, set_timesteps(4), seed 0
    {"TcdDefault4",
     "TCDScheduler",
     "",
     4,
     0,
     {999, 759, 499, 259},
     {14.614641229333635, 4.2605568521772259, 1.6128861943038755, 0.71937962030588198,
      0.029167158151720367},
     1648.2019733980917,
     {-4.6536108601561379, -4.091628303662727, -0.32299921657954611, 1.4914492726461848,
      3.3013400302668083, 1.5746159030818512},
     1648.20251,
     {-4.65361357, -4.09162951, -0.322999328, 1.49144983, 3.3013413, 1.57461631}},
    // TcdEta0: TCDScheduler {'eta': 0.0}, set_timesteps(6)
    {"TcdEta0",
     "TCDScheduler",
     "eta=0",
     6,
     -1,
     {999, 839, 679, 499, 339, 179},
     {14.614641229333635, 6.1374609892310446, 3.0689429635139778, 1.6128861943038755,
      0.95139545784309654, 0.52233347534885377, 0.029167158151720367},
     1427.4822457924561,
     {-3.9800851741015713, -3.9690147037582717, 1.5372653051882339, 1.8229496924462796,
      1.6061458646403926, 1.8295101184617755},
     1427.48279,
     {-3.9800868, -3.9690156, 1.53726554, 1.82294989, 1.60614645, 1.82951069}},
    // TcdEta1Steps8: TCDScheduler {'eta': 1.0}, set_timesteps(8), seed 7
    {"TcdEta1Steps8",
     "TCDScheduler",
     "eta=1",
     8,
     7,
     {999, 879, 759, 639, 499, 379, 259, 139},
     {14.614641229333635, 7.48542139353368, 4.2605568521772259, 2.6347956422866545,
      1.6128861943038755, 1.086729360802956, 0.71937962030588198, 0.43132625971851757,
      0.029167158151720367},
     608.98405134022266,
     {-0.0014677805937066239, 0.58713752476938286, 0.15069779564323257, -0.41734136672908551,
      0.21878823671244238, -1.0105811454886386},
     608.984436,
     {-0.00146769267, 0.587138474, 0.150697902, -0.41734165, 0.218789265, -1.01058257}},
    // TcdEta05V: TCDScheduler {'eta': 0.5, 'prediction_type': 'v_prediction'}, set_timesteps(5),
    // seed 2
    {"TcdEta05V",
     "TCDScheduler",
     "eta=0.5,prediction_type=v_prediction",
     5,
     2,
     {999, 799, 599, 399, 199},
     {14.614641229333635, 5.0877631826786605, 2.276463065764657, 1.1605783219528751,
      0.5692848883499535, 0.029167158151720367},
     197.99051534724495,
     {-0.17442082943176962, -0.1762805779087899, -0.059923917294445565, -0.11471239808350411,
      -0.33538116031696658, 0.035633262276232633},
     197.990601,
     {-0.174420819, -0.176280543, -0.05992385, -0.11471241, -0.33538121, 0.0356334075}},
    // TcdSampleOriginal20: TCDScheduler {'prediction_type': 'sample', 'original_inference_steps':
    // 20}, set_timesteps(3), seed 6
    {"TcdSampleOriginal20",
     "TCDScheduler",
     "original_inference_steps=20,prediction_type=sample",
     3,
     6,
     {999, 699, 349},
     {14.614641229333635, 3.3210831298465724, 0.98381721692577018, 0.029167158151720367},
     313.46162760755897,
     {-0.83207946688746803, -0.43968972002816398, -0.22999907565530456, 0.67182013296093568,
      0.37591477284950237, -0.14537822565315819},
     313.461792,
     {-0.832079768, -0.439689666, -0.229999334, 0.671820819, 0.375914812, -0.145378545}},
    // LcmStrength06: LCMScheduler {'strength': 0.6}, set_timesteps(4), seed 0
    {"LcmStrength06",
     "LCMScheduler",
     "strength=0.6",
     4,
     0,
     {599, 459, 299, 159},
     {2.276463065764657, 1.4128390830152038, 0.82985952817539654, 0.47645437353018932, 0},
     497.96552826255584,
     {-0.47216497048352796, -0.064742590037639339, -0.56639430243235056, 0.93026560226840316,
      0.94702560280338355, 0.81563879527101668},
     497.965576,
     {-0.472164899, -0.064742282, -0.566393018, 0.930265605, 0.947025895, 0.815638006}},
    // LcmStrength03Original100: LCMScheduler {'strength': 0.3, 'original_inference_steps': 100},
    // set_timesteps(6), seed 2
    {"LcmStrength03Original100",
     "LCMScheduler",
     "original_inference_steps=100,strength=0.3",
     6,
     2,
     {299, 249, 199, 149, 99, 49},
     {0.82985952817539654, 0.69320489963868825, 0.5692848883499535, 0.45381852445623194,
      0.3416738322812819, 0.22300313793410365, 0},
     265.53312068951146,
     {-0.25837936866559547, -0.27498367403461771, -0.00013623186862965156, 0.050067947663728143,
      -0.33745272139126098, 1.0555287764714181},
     265.533203,
     {-0.25837931, -0.274983883, -0.000136618808, 0.0500681736, -0.337452769, 1.0555284}},
    // TcdStrength05: TCDScheduler {'strength': 0.5}, set_timesteps(4), seed 1
    {"TcdStrength05",
     "TCDScheduler",
     "strength=0.5",
     4,
     1,
     {499, 379, 259, 139},
     {1.6128861943038755, 1.086729360802956, 0.71937962030588198, 0.43132625971851757,
      0.029167158151720367},
     471.61916225331692,
     {-1.775313498944457, -0.56927814242533481, 1.0984908477274005, 1.2258987407467246,
      -0.027018936355568852, 0.028572739619678114},
     471.619385,
     {-1.77531385, -0.56927824, 1.09849143, 1.2258991, -0.027018968, 0.0285727549}},
};

TEST(LcmSampler, MatchesDiffusersLcmAndTcdSchedulers) {
  for (const auto& g : kLcmGolden) {
    testing::check_config_golden(g, at::kDouble);
    testing::check_config_golden(g, at::kFloat);
  }
}

// `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH lcm --suite`: diffusers' own
// full loops (test_scheduler_lcm.py, test_scheduler_tcd.py): name, class, extra config (TCD's
// eta), steps, the suite's expected sum |x| (its tolerance 1e-3), diffusers' sums in float64 and
// stock float32.
struct DistilledSuite {
  const char* name;
  const char* cls;
  const char* config;
  int64_t steps;
  double expected, sum64, sum32;
};
const DistilledSuite kLcmSuite[] = {
    {"lcm test_full_loop_onestep", "LCMScheduler", "", 1, 18.7097, 18.7097987229963, 18.7096767},
    {"lcm test_full_loop_multistep", "LCMScheduler", "", 10, 197.7616, 197.76161302314068,
     197.761627},
    {"tcd test_full_loop_onestep_deter", "TCDScheduler", "eta=0", 1, 29.8715, 29.871513839361544,
     29.8715343},
    {"tcd test_full_loop_multistep_deter", "TCDScheduler", "eta=0", 10, 181.204, 181.20393142343204,
     181.203995},
};

TEST(LcmSampler, DiffusersSuiteFullLoops) {
  const Config base{{"num_train_timesteps", "1000"},
                    {"beta_start", "0.00085"},
                    {"beta_end", "0.012"},
                    {"beta_schedule", "scaled_linear"},
                    {"prediction_type", "epsilon"}};
  for (const auto& g : kLcmSuite) {
    for (const auto dtype : {at::kDouble, at::kFloat}) {
      SCOPED_TRACE(std::string(g.name) + (dtype == at::kDouble ? " float64" : " float32"));
      Config c = base;
      for (const auto& kv : parse_config(g.config)) c[kv.first] = kv.second;
      const DiffusersScheduler s = from_diffusers(g.cls, c);
      const Denoiser d = s.denoiser(testing::dummy_network());
      auto noise = make_torch_noise(0);
      SampleContext ctx;
      ctx.schedule = s.schedule.get();
      ctx.noise = noise.get();
      const Tensor out = s.sampler->sample(testing::model_fn(d), testing::dummy_sample_deter(dtype),
                                           s.grid(g.steps), ctx);
      const double sum = out.abs().sum().item<double>();
      EXPECT_NEAR(sum, g.expected, 1e-3);
      EXPECT_NEAR(sum, dtype == at::kDouble ? g.sum64 : g.sum32,
                  (dtype == at::kDouble ? 1e-10 : 1e-5) * g.sum64);
    }
  }
}

// The spacing independently of diffusers: 4 of 50 original steps on 1000 training steps, and
// every training step (original_steps = 0: TCD's original_inference_steps argument).
TEST(LcmSpacing, PicksEvenlyFromTheOriginalSteps) {
  auto sched = make_schedule("discrete");
  auto times = [&](const Config& c, int64_t n) {
    std::vector<double> t;
    for (const auto& p : make_spacing("lcm", c)->grid(*sched, n)) t.push_back(p.t);
    return t;
  };
  EXPECT_EQ(times({}, 4), (std::vector<double>{999, 759, 499, 259, -1}));
  EXPECT_EQ(times({{"original_steps", "0"}}, 4), (std::vector<double>{999, 749, 499, 249, -1}));
  EXPECT_EQ(times({{"final", "min"}}, 2), (std::vector<double>{999, 499, 0}));
  EXPECT_EQ(times({}, 50).size(), 51u);
  for (const auto& [bad, n, what] : std::vector<std::tuple<Config, int64_t, std::string>>{
           {{}, 51, "num_steps=51"},
           {{{"original_steps", "1001"}}, 4, "original_steps=1001"},
           {{{"original_steps", "-1"}}, 4, "original_steps must be >= 0"},
           {{{"original_steps", "0"}}, 1001, "num_steps=1001"}}) {
    try {
      make_spacing("lcm", bad)->grid(*sched, n);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(make_spacing("lcm")->grid(*make_schedule("vp"), 4), Error);
}

// Limit cases: one LCM step without the boundary condition lands on the network's x0; TCD with
// gamma = 0 is DDIM; boundary scalings at t = 0 are (1, 0).
TEST(LcmSampler, LimitCases) {
  auto sched = make_schedule("discrete");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  auto noise = make_torch_noise(3);
  SampleContext ctx;
  ctx.schedule = sched.get();
  ctx.noise = noise.get();
  const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
  const TimeGrid one = make_spacing("lcm")->grid(*sched, 1);
  const Prediction p = d(x, one[0], {});
  testing::ExpectTensorNear(make_sampler("lcm", {{"boundary_condition", "false"}})
                                ->sample(testing::model_fn(d), x, one, ctx),
                            p.x0, 0, 0, "one LCM step");
  const TimeGrid grid = make_spacing("lcm", {{"final", "min"}})->grid(*sched, 6);
  testing::ExpectTensorNear(
      make_sampler("tcd", {{"gamma", "0"}})->sample(testing::model_fn(d), x, grid, ctx),
      make_sampler("ddim")->sample(testing::model_fn(d), x, grid, ctx), 1e-12, 1e-10, "gamma 0");
  const auto c0 = LcmSampler().boundary_scalings(0.0);
  EXPECT_EQ(c0.first, 1.0);
  EXPECT_EQ(c0.second, 0.0);
  EXPECT_FALSE(make_sampler("tcd", {{"gamma", "0"}})->is_stochastic());
  EXPECT_EQ(make_sampler("LCM")->name(), "lcm");
  EXPECT_EQ(make_sampler("tcd", {{"eta", "0.5"}})->to_config(), (Config{{"gamma", "0.5"}}));
}

TEST(LcmSampler, BadOptionsAreNamed) {
  testing::expect_sampler_error("tcd", {{"gamma", "1.5"}}, "gamma must be in [0, 1], got 1.5");
  testing::expect_sampler_error("tcd", {{"gamma", "0.1"}, {"eta", "0.1"}}, "not both");
  testing::expect_sampler_error("lcm", {{"timestep_scaling", "0"}},
                                "timestep_scaling must be finite and > 0, got 0");
  testing::expect_sampler_error("lcm", {{"sigma_data", "nan"}}, "sigma_data");
  // TCD without the schedule cannot place its intermediate point.
  auto sched = make_schedule("discrete");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  auto noise = make_torch_noise(0);
  SampleContext ctx;
  ctx.noise = noise.get();
  const Tensor x = testing::dummy_sample_deter(at::kDouble);
  try {
    make_sampler("tcd")->sample(testing::model_fn(d), x, make_spacing("lcm")->grid(*sched, 4), ctx);
    ADD_FAILURE() << "no error without a schedule";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs the noise schedule"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(from_diffusers("TCDScheduler", {{"thresholding", "true"}}), Error);
  EXPECT_THROW(from_diffusers("LCMScheduler", {{"original_inference_steps", "0"}}), Error);
  EXPECT_THROW(from_diffusers("LCMScheduler", {{"eta", "0.3"}}), Error);
}

}  // namespace
}  // namespace diffuse
