// SPDX-License-Identifier: Apache-2.0
// from_diffusers' LMSDiscreteScheduler, KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler
// (diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951) onto lms and dpm_2: golden runs of the
// pipeline loop in float64 and float32, KDPM2-a's draws replayed.
#include "dpm_fixtures.h"

namespace diffuse {
namespace {

// `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH k` (diffusers 58eb52c, torch
// 1.13.1): ConfigGolden rows (tests/samplers/dpm_fixtures.h); x = (2 * dummy_sample_deter - 1) *
// init_noise_sigma, the nonlinear model fed scale_model_input(x, t); KDPM2's interleaved
// timesteps and sigmas de-interleaved to the grid (its midpoints are dpm_2's off-grid points).
const std::vector<testing::ConfigGolden> kKGolden = {
    // LmsDefault: LMSDiscreteScheduler {}, set_timesteps(10)
    {"LmsDefault",
     "LMSDiscreteScheduler",
     "",
     10,
     -1,
     {999, 888, 777, 666, 555, 444, 333, 222, 111, 0},
     {157.40728081040757, 54.567513088189685, 21.417496171227608, 9.4889202295252151,
      4.7033339489150761, 2.5546912050017787, 1.4623566969975685, 0.82193578582256033,
      0.38037100632746706, 0.010000500037502575, 0},
     5152.881513751614,
     {-15.920302893809522, -15.690530092725464, 3.5693552813688578, 8.8387150641964993,
      3.8511052265996364, 8.8974059019949792},
     5152.88184,
     {-15.9203005, -15.6905308, 3.56935596, 8.83870888, 3.85110641, 8.89740753}},
    // LmsSdLeadingOrder2: LMSDiscreteScheduler {'beta_schedule': 'scaled_linear', 'beta_start':
    // 0.00085, 'beta_end': 0.012, 'timestep_spacing': 'leading', 'steps_offset': 1, 'order': 2},
    // set_timesteps(12)
    {"LmsSdLeadingOrder2",
     "LMSDiscreteScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,order=2,steps_offset=1,"
     "timestep_spacing=leading",
     12,
     -1,
     {914, 831, 748, 665, 582, 499, 416, 333, 250, 167, 84, 1},
     {8.9917375344895802, 5.9064490016387747, 4.0643917474365825, 2.9071213843091881,
      2.1429088436576182, 1.6128861943038755, 1.2270628882546109, 0.93235796683484717,
      0.69579893706165208, 0.49469687683272745, 0.30750540654046338, 0.041314411996783089, 0},
     1018.9670479558293,
     {-2.0627601119262158, -2.0523922594424904, 0.39893825269459054, 1.7211722761664876,
      1.484704505670366, 1.722568212292898},
     1018.96722,
     {-2.06276011, -2.05239248, 0.398936987, 1.72117257, 1.48470461, 1.72256863}},
    // LmsKarrasV: LMSDiscreteScheduler {'beta_schedule': 'scaled_linear', 'beta_start': 0.00085,
    // 'beta_end': 0.012, 'use_karras_sigmas': True, 'prediction_type': 'v_prediction'},
    // set_timesteps(10)
    {"LmsKarrasV",
     "LMSDiscreteScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,prediction_type=v_prediction,"
     "use_karras_sigmas=true",
     10,
     -1,
     {998.99999999999989, 916.2839069875821, 815.04468065407127, 687.15274607442552,
      523.19808465960625, 327.14598869932206, 145.93806860578366, 40.856432855358904,
      6.7322967932598576, 1.2755025039276825e-15},
     {14.614641229333627, 9.1029281340476462, 5.4783919864429551, 3.1686030729596144,
      1.7494170492511882, 0.91407226503096528, 0.44691820937343935, 0.20139829978031248,
      0.081910238320269335, 0.029167158151720381, 0},
     153.65436180840089,
     {-0.30335085769618225, -0.30173253536986089, -0.085318354259254353, 0.46213651590796723,
      -0.013451671015986299, 0.46537704440800104},
     153.654358,
     {-0.303350836, -0.30173251, -0.0853183195, 0.462136567, -0.0134516396, 0.465377182}},
    // LmsTrailingSampleOrder3: LMSDiscreteScheduler {'timestep_spacing': 'trailing',
    // 'prediction_type': 'sample', 'order': 3}, set_timesteps(8)
    {"LmsTrailingSampleOrder3",
     "LMSDiscreteScheduler",
     "order=3,prediction_type=sample,timestep_spacing=trailing",
     8,
     -1,
     {999, 874, 749, 624, 499, 374, 249, 124},
     {157.40728081040757, 48.166835715703215, 17.24698300991162, 7.1861384447243761,
      3.4241366190440412, 1.7922942674222682, 0.95293550020159234, 0.42635870012806665, 0},
     393.59619269473785,
     {-0.63808976717432031, -0.63750188237070737, 0.50248362763953514, 0.62593464924043718,
      0.53515850997773362, 0.62749036202733133},
     393.596252,
     {-0.638089657, -0.637501776, 0.502483666, 0.62593478, 0.535158515, 0.627490282}},
    // Kdpm2Default: KDPM2DiscreteScheduler {}, set_timesteps(10)
    {"Kdpm2Default",
     "KDPM2DiscreteScheduler",
     "",
     10,
     -1,
     {999, 888, 777, 666, 555, 444, 333, 222, 111, 0},
     {25.146114834133797, 13.291328516948829, 7.5012801284006576, 4.4956111484539045,
      2.8326823757197355, 1.8465186352789718, 1.2142558812431063, 0.77083871306809504,
      0.42313896010987773, 0.029167158151720367, 0},
     1384.5336250596238,
     {-2.6213028672840055, -2.6018748522918695, 1.6951542726963922, 2.0348262828478658,
      1.7862197578318724, 2.0403528748687614},
     1384.53345,
     {-2.6213026, -2.6018734, 1.69515431, 2.03482604, 1.78621936, 2.04035211}},
    // Kdpm2KarrasV: KDPM2DiscreteScheduler {'use_karras_sigmas': True, 'prediction_type':
    // 'v_prediction'}, set_timesteps(8)
    {"Kdpm2KarrasV",
     "KDPM2DiscreteScheduler",
     "prediction_type=v_prediction,use_karras_sigmas=true",
     8,
     -1,
     {999, 886, 745, 561, 326, 111, 16, 0},
     {25.146114834133794, 13.148716667894945, 6.4346681611079219, 2.9029826962144276,
      1.182365686803392, 0.4218239231783697, 0.12590135813652184, 0.029167158151720381, 0},
     150.28388780585769,
     {-0.33402303351824253, -0.33141337634650653, -0.068154718912724857, 0.5090423296186235,
      -0.0071699896046213893, 0.51377185761366939},
     150.284027,
     {-0.334023237, -0.331413567, -0.0681549162, 0.509042084, -0.00717012165, 0.513771653}},
    // Kdpm2LeadingSd: KDPM2DiscreteScheduler {'beta_schedule': 'scaled_linear', 'beta_start':
    // 0.00085, 'beta_end': 0.012, 'timestep_spacing': 'leading', 'steps_offset': 1},
    // set_timesteps(12)
    {"Kdpm2LeadingSd",
     "KDPM2DiscreteScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,steps_offset=1,timestep_"
     "spacing=leading",
     12,
     -1,
     {914, 831, 748, 665, 582, 499, 416, 333, 250, 167, 84, 1},
     {8.9917375344895802, 5.9064490016387747, 4.0643917474365825, 2.9071213843091881,
      2.1429088436576182, 1.6128861943038755, 1.2270628882546109, 0.93235796683484717,
      0.69579893706165208, 0.49469687683272745, 0.30750540654046338, 0.041314411996783089, 0},
     980.28723099414219,
     {-1.9690582671488464, -1.9562912105427055, 0.23792825456260785, 1.7366975129786681,
      1.4622545690654996, 1.7382275410899235},
     980.287476,
     {-1.96905863, -1.95629168, 0.237927899, 1.73669791, 1.46225464, 1.73822796}},
    // Kdpm2ADefault: KDPM2AncestralDiscreteScheduler {}, set_timesteps(10), seed 0
    {"Kdpm2ADefault",
     "KDPM2AncestralDiscreteScheduler",
     "",
     10,
     0,
     {999, 888, 777, 666, 555, 444, 333, 222, 111, 0},
     {25.146114834133797, 13.291328516948829, 7.5012801284006576, 4.4956111484539045,
      2.8326823757197355, 1.8465186352789718, 1.2142558812431063, 0.77083871306809504,
      0.42313896010987773, 0.029167158151720367, 0},
     934.69786632953537,
     {-2.0736179587797223, 0.49787383157462295, -1.1352540531147686, 1.8852789886901533,
      1.469935551594193, -0.075229625090778851},
     934.697754,
     {-2.07361674, 0.497873873, -1.1352545, 1.88527858, 1.46993577, -0.0752292573}},
    // Kdpm2AKarrasV: KDPM2AncestralDiscreteScheduler {'use_karras_sigmas': True, 'prediction_type':
    // 'v_prediction'}, set_timesteps(8), seed 5
    {"Kdpm2AKarrasV",
     "KDPM2AncestralDiscreteScheduler",
     "prediction_type=v_prediction,use_karras_sigmas=true",
     8,
     5,
     {999, 886, 745, 561, 326, 111, 16, 0},
     {25.146114834133794, 13.148716667894945, 6.4346681611079219, 2.9029826962144276,
      1.182365686803392, 0.4218239231783697, 0.12590135813652184, 0.029167158151720381, 0},
     423.46072493928989,
     {0.24930637630393918, -1.2209102749291845, 0.30389419738485224, -0.14274818076483084,
      0.80199220782149461, -0.72927428481702872},
     423.460449,
     {0.249306962, -1.22090364, 0.303895146, -0.142741546, 0.801994562, -0.72927475}},
    // Kdpm2ATrailing: KDPM2AncestralDiscreteScheduler {'timestep_spacing': 'trailing'},
    // set_timesteps(7), seed 2
    {"Kdpm2ATrailing",
     "KDPM2AncestralDiscreteScheduler",
     "timestep_spacing=trailing",
     7,
     2,
     {999, 856, 713, 570, 428, 285, 142},
     {25.146114834133797, 11.197032082866764, 5.5459547816052064, 3.0078449261959586,
      1.7386205592948982, 1.0058010705750464, 0.51478822229625942, 0},
     684.42441089047622,
     {-0.17101927421321034, -0.19563640466486593, 0.55269058313646879, -0.19180509954425237,
      -0.48027818784903054, 1.1079763480933451},
     684.424377,
     {-0.171019286, -0.195636213, 0.552689135, -0.191806048, -0.480278611, 1.10797644}},
};

TEST(FromDiffusers, LmsAndKdpm2Schedulers) {
  for (const auto& g : kKGolden) {
    testing::check_config_golden(g, at::kDouble);
    testing::check_config_golden(g, at::kFloat);
  }
  EXPECT_THROW(from_diffusers("KDPM2DiscreteScheduler", {{"prediction_type", "sample"}}), Error);
  EXPECT_THROW(from_diffusers("LMSDiscreteScheduler", {{"order", "5"}}), Error);
  EXPECT_THROW(from_diffusers("KDPM2AncestralDiscreteScheduler", {{"use_flow_sigmas", "true"}}),
               Error);
  // Karras sigmas over a leading / trailing grid take their range from that grid in diffusers.
  EXPECT_THROW(from_diffusers("EulerDiscreteScheduler",
                              {{"use_karras_sigmas", "true"}, {"timestep_spacing", "trailing"}}),
               Error);
  EXPECT_THROW(from_diffusers("LMSDiscreteScheduler",
                              {{"use_karras_sigmas", "true"}, {"timestep_spacing", "leading"}}),
               Error);
}

}  // namespace
}  // namespace diffuse
