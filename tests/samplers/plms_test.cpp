// SPDX-License-Identifier: Apache-2.0
// PLMS / PNDM (samplers/plms.h) against diffusers PNDMScheduler
// (huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951) through from_diffusers, and its
// limit cases.
#include <diffuse/samplers/plms.h>

#include "dpm_fixtures.h"
#include "k_sampler_fixtures.h"

namespace diffuse {
namespace {

// `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH pndm` (diffusers 58eb52c,
// torch 1.13.1): ConfigGolden rows (tests/samplers/dpm_fixtures.h), the nonlinear model from
// x = 2 * dummy_sample_deter - 1 over the scheduler's own timesteps (half steps and PLMS's
// repeated second timestep included); the grid rows are set_timesteps' _timesteps.
const std::vector<testing::ConfigGolden> kPndmGolden = {
    // PlmsSd: PNDMScheduler {'beta_schedule': 'scaled_linear', 'beta_start': 0.00085, 'beta_end':
    // 0.012, 'skip_prk_steps': True, 'steps_offset': 1}, set_timesteps(10)
    {"PlmsSd",
     "PNDMScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,skip_prk_steps=true,steps_"
     "offset=1",
     10,
     -1,
     {901, 801, 701, 601, 501, 401, 301, 201, 101, 1},
     {8.3906847702185772, 5.1344311175175346, 3.3477635806615922, 2.292853821788702,
      1.6236920815158624, 1.1682159550479783, 0.83565280803314923, 0.57405025946285237,
      0.34618670638077037, 0.041314411996783089, 0.029167158151720367},
     940.01576217058459,
     {-1.8371733876740242, -1.8203374001686812, 0.090978987241780912, 1.7021879269538704,
      1.4252559385842076, 1.7037118482207338},
     940.015869,
     {-1.83717334, -1.82033741, 0.0909785405, 1.7021879, 1.42525601, 1.70371175}},
    // PlmsV12: PNDMScheduler {'skip_prk_steps': True, 'prediction_type': 'v_prediction'},
    // set_timesteps(12)
    {"PlmsV12",
     "PNDMScheduler",
     "prediction_type=v_prediction,skip_prk_steps=true",
     12,
     -1,
     {913, 830, 747, 664, 581, 498, 415, 332, 249, 166, 83, 0},
     {68.522281063129412, 32.962835862112826, 16.987227803782009, 9.3607622587085348,
      5.4928551342107248, 3.4054302183510057, 2.2017196993120387, 1.455113270293644,
      0.95293550020159234, 0.58364047704056887, 0.28460538324828927, 0.010000500037502575,
      0.010000500037502575},
     113.67731529821199,
     {-0.22943155765962542, -0.22815000461110982, -0.089839550027399018, 0.340165923207499,
      -0.044701131432421819, 0.34315165678609616},
     113.677475,
     {-0.229431868, -0.228150383, -0.0898396224, 0.340166688, -0.0447011329, 0.343152225}},
    // Plms2Steps: PNDMScheduler {'skip_prk_steps': True, 'set_alpha_to_one': True},
    // set_timesteps(2)
    {"Plms2Steps",
     "PNDMScheduler",
     "set_alpha_to_one=true,skip_prk_steps=true",
     2,
     -1,
     {500, 0},
     {3.4429671125258228, 0.010000500037502575, 0},
     1251.8752139464868,
     {-2.2331578725661503, -2.2112705697948867, 0.027305765954536342, 2.8081499842737117,
      0.47670685497709314, 2.8258128623187604},
     1251.87524,
     {-2.23315859, -2.21127152, 0.0273056459, 2.80814958, 0.476706296, 2.82581282}},
    // Plms1Step: PNDMScheduler {'skip_prk_steps': True}, set_timesteps(1)
    {"Plms1Step",
     "PNDMScheduler",
     "skip_prk_steps=true",
     1,
     -1,
     {0},
     {0.010000500037502575, 0.010000500037502575},
     384,
     {-1, -0.98958333333333337, 0.041666666666666741, 0.9921875, 0.21354166666666674,
      0.99739583333333326},
     384,
     {-1, -0.989583313, 0.0416666269, 0.9921875, 0.213541627, 0.997395873}},
    // PndmDefault: PNDMScheduler {}, set_timesteps(10)
    {"PndmDefault",
     "PNDMScheduler",
     "",
     10,
     -1,
     {900, 800, 700, 600, 500, 400, 300, 200, 100, 0},
     {60.822303153025409, 25.735979682332655, 12.024844418514407, 6.173505157840788,
      3.4429671125258228, 2.0410870026144945, 1.240161045545549, 0.72359125943039693,
      0.3422596990130316, 0.010000500037502575, 0.010000500037502575},
     1981.6196465529551,
     {-4.0790388204250805, -4.0634719060404176, 1.9346916696734353, 3.8923749963070162,
      1.9298872926735999, 3.9485738513489395},
     1981.62012,
     {-4.07904053, -4.0634737, 1.93469191, 3.89237404, 1.92988753, 3.94857621}},
    // PndmOddStrideAlphaOne: PNDMScheduler {'set_alpha_to_one': True}, set_timesteps(8)
    {"PndmOddStrideAlphaOne",
     "PNDMScheduler",
     "set_alpha_to_one=true",
     8,
     -1,
     {875, 750, 625, 500, 375, 250, 125, 0},
     {48.59483287602481, 17.378600685974277, 7.232538889938108, 3.4429671125258228,
      1.8012354352525342, 0.95803371466223142, 0.42994242880767186, 0.010000500037502575, 0},
     1776.8566426383936,
     {-3.8806401084645028, -3.8524642438496439, 1.833785086619842, 3.8803663957775556,
      1.8693944393381894, 3.9071494070173283},
     1776.85779,
     {-3.88064408, -3.85246754, 1.83378494, 3.88036776, 1.86939621, 3.90715218}},
    // PndmV6: PNDMScheduler {'prediction_type': 'v_prediction', 'steps_offset': 1},
    // set_timesteps(6)
    {"PndmV6",
     "PNDMScheduler",
     "prediction_type=v_prediction,steps_offset=1",
     6,
     -1,
     {831, 665, 499, 333, 167, 1},
     {33.241039593442565, 9.4245801519444292, 3.4241366190440412, 1.4623566969975685,
      0.58757626035205313, 0.014830923708982587, 0.010000500037502575},
     89.492264232834884,
     {-0.18688923989252279, -0.1856609475503106, -0.064350136806650443, 0.15415585620316827,
      0.03583109909560471, 0.1564964410047589},
     89.4924927,
     {-0.186889693, -0.185661227, -0.064350225, 0.154156759, 0.0358308703, 0.156497031}},
    // PndmCosine20: PNDMScheduler {'beta_schedule': 'squaredcos_cap_v2'}, set_timesteps(20)
    {"PndmCosine20",
     "PNDMScheduler",
     "beta_schedule=squaredcos_cap_v2",
     20,
     -1,
     {950, 900, 850, 800, 750, 700, 650, 600, 550, 500,
      450, 400, 350, 300, 250, 200, 150, 100, 50,  0},
     {13.069693918804854,   6.429928333280797,   4.2287731834306648,   3.1203816449969395,
      2.4462791540519331,   1.9883938697889396,  1.6535787516696152,   1.3953342554096231,
      1.1878312610386439,   1.0155505505195104,  0.86858274250756617,  0.74028100574490596,
      0.62599741602741699,  0.52235994025399501, 0.42683676407858467,  0.33746085459378411,
      0.25264554350659651,  0.17104355328665174, 0.091347510433685955, 0.0064254127711420609,
      0.0064254127711420609},
     1103.3943249752238,
     {-2.1922348095485291, -2.1816498007938221, 1.262677237376274, 1.6154946112175537,
      1.4037507588012041, 1.6184736333738332},
     1103.39502,
     {-2.19223642, -2.18165159, 1.26267791, 1.6154952, 1.40375137, 1.61847413}},
};

TEST(PlmsSampler, MatchesDiffusersPndmScheduler) {
  for (const auto& g : kPndmGolden) {
    testing::check_config_golden(g, at::kDouble);
    testing::check_config_golden(g, at::kFloat);
  }
}

// `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH pndm --suite`: diffusers' own
// full loops of test_scheduler_pndm.py (PRK then PLMS, 10 steps, the dummy model).
const testing::SuiteGolden kPndmSuite[] = {
    // pndm test_full_loop_no_noise: PNDMScheduler {'num_train_timesteps': 1000, 'beta_start':
    // 0.0001, 'beta_end': 0.02, 'beta_schedule': 'linear'}
    {"pndm test_full_loop_no_noise", "PNDMScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,num_train_timesteps=1000", -1, 0.258,
     198.13173937084986, 198.13179},
    // pndm test_full_loop_with_v_prediction: PNDMScheduler {'num_train_timesteps': 1000,
    // 'beta_start': 0.0001, 'beta_end': 0.02, 'beta_schedule': 'linear', 'prediction_type':
    // 'v_prediction'}
    {"pndm test_full_loop_with_v_prediction", "PNDMScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,num_train_timesteps=1000,prediction_"
     "type=v_prediction",
     -1, 0.0878, 67.398551039924968, 67.3985901},
    // pndm test_full_loop_with_set_alpha_to_one: PNDMScheduler {'num_train_timesteps': 1000,
    // 'beta_start': 0.01, 'beta_end': 0.02, 'beta_schedule': 'linear', 'set_alpha_to_one': True}
    {"pndm test_full_loop_with_set_alpha_to_one", "PNDMScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.01,num_train_timesteps=1000,set_alpha_to_one="
     "true",
     -1, 0.2995, 230.03692330373175, 230.037262},
    // pndm test_full_loop_with_no_set_alpha_to_one: PNDMScheduler {'num_train_timesteps': 1000,
    // 'beta_start': 0.01, 'beta_end': 0.02, 'beta_schedule': 'linear', 'set_alpha_to_one': False}
    {"pndm test_full_loop_with_no_set_alpha_to_one", "PNDMScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.01,num_train_timesteps=1000,set_alpha_to_one="
     "false",
     -1, 0.2434, 186.944823932492, 186.945221},
};

TEST(PlmsSampler, DiffusersSuiteFullLoops) {
  for (const auto& g : kPndmSuite) {
    testing::check_suite_golden(g, at::kDouble);
    testing::check_suite_golden(g, at::kFloat);
  }
}

// One PLMS step is a DDIM step; model calls: n + 1 (PLMS), 12 + (n - 3) (PNDM, n >= 4; the last
// step is never a Runge-Kutta one); PNDM's half steps
// need the schedule; alpha = 0 starts are refused.
TEST(PlmsSampler, LimitCasesAndErrors) {
  auto sched = make_schedule("discrete");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  SampleContext ctx;
  ctx.schedule = sched.get();
  const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
  const TimeGrid one = make_spacing("leading")->grid(*sched, 1);
  testing::ExpectTensorNear(make_sampler("plms")->sample(testing::model_fn(d), x, one, ctx),
                            make_sampler("ddim")->sample(testing::model_fn(d), x, one, ctx), 1e-12,
                            1e-12, "one step");
  EXPECT_EQ(make_sampler("plms")->model_calls(10), 11);
  EXPECT_EQ(make_sampler("plms")->model_calls(1), 1);
  EXPECT_EQ(make_sampler("pndm")->model_calls(10), 19);
  EXPECT_EQ(make_sampler("pndm")->model_calls(2), 5);
  EXPECT_EQ(make_sampler("pndm")->model_calls(1), 1);
  EXPECT_EQ(make_sampler("PLMS")->name(), "plms");
  SampleContext bare;
  try {
    make_sampler("pndm")->sample(testing::model_fn(d), x, make_spacing("leading")->grid(*sched, 5),
                                 bare);
    ADD_FAILURE() << "no error without a schedule";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs the noise schedule"), std::string::npos)
        << e.what();
  }
  testing::expect_sampler_error("plms", {{"combine", "x0"}}, "x0");
  EXPECT_THROW(from_diffusers("PNDMScheduler", {{"timestep_spacing", "linspace"}}), Error);
  EXPECT_THROW(from_diffusers("PNDMScheduler", {{"prediction_type", "sample"}}), Error);
}

}  // namespace
}  // namespace diffuse
