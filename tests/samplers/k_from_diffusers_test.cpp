// SPDX-License-Identifier: Apache-2.0
// from_diffusers' LMSDiscreteScheduler, KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler
// (diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951) onto lms and dpm_2, and the Euler family's
// Karras / exponential / beta sigmas over leading and trailing timesteps (the sigma spacings'
// range option) and Euler's interpolation_type=log_linear (the log_linear spacing): golden runs of
// the pipeline loop in float64 and float32, KDPM2-a's draws replayed.
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
    // EulerKarrasLeadingSd: EulerDiscreteScheduler {'beta_schedule': 'scaled_linear', 'beta_start':
    // 0.00085, 'beta_end': 0.012, 'use_karras_sigmas': True, 'timestep_spacing': 'leading',
    // 'steps_offset': 1}, set_timesteps(10)
    {"EulerKarrasLeadingSd",
     "EulerDiscreteScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,steps_offset=1,timestep_"
     "spacing=leading,use_karras_sigmas=true",
     10,
     -1,
     {900.99999999999989, 815.01749425894889, 710.50052823809858, 581.65516749295352,
      426.53037237236083, 260.24294272259056, 121.14109830066555, 40.272462395300202,
      9.3014415145839546, 1},
     {8.3906847702185736, 5.4776971737146498, 3.4784057773074886, 2.1403032399489996,
      1.2701083620613371, 0.72266980253334434, 0.39135245906479471, 0.19979999982651256,
      0.094967034404580916, 0.041314411996783089, 0},
     1070.7169929372303,
     {-2.1568209048537281, -2.1471405161602695, 0.43564298885566061, 1.7161817467837464,
      1.520348059917938, 1.7174581763302748},
     1070.71716,
     {-2.15682101, -2.1471405, 0.435642481, 1.71618187, 1.52034831, 1.71745849}},
    // EulerExponentialTrailing: EulerDiscreteScheduler {'use_exponential_sigmas': True,
    // 'timestep_spacing': 'trailing'}, set_timesteps(8)
    {"EulerExponentialTrailing",
     "EulerDiscreteScheduler",
     "timestep_spacing=trailing,use_exponential_sigmas=true",
     8,
     -1,
     {999, 911.61330726323558, 814.92450813582809, 705.37552485284164, 577.28393652346131,
      424.28018535515895, 256.57512182818431, 124},
     {157.40728081040763, 67.651099801305662, 29.075346964659683, 12.49611319842918,
      5.3706270558956888, 2.3082085217621575, 0.99203063710907635, 0.42635870012806665, 0},
     6209.2013488867506,
     {-15.933762341226849, -15.910891005682485, 4.3846932824040721, 9.7278252750583007,
      6.0189494457627335, 9.7535002942519178},
     6209.2002,
     {-15.9337616, -15.9108906, 4.38469124, 9.72782612, 6.01894188, 9.75349808}},
    // LmsKarrasTrailingSd: LMSDiscreteScheduler {'beta_schedule': 'scaled_linear', 'beta_start':
    // 0.00085, 'beta_end': 0.012, 'use_karras_sigmas': True, 'timestep_spacing': 'trailing'},
    // set_timesteps(9)
    {"LmsKarrasTrailingSd",
     "LMSDiscreteScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,timestep_spacing=trailing,use_"
     "karras_sigmas=true",
     9,
     -1,
     {998.99999999999989, 935.6294255424416, 861.81246443438818, 774.13028994372587,
      668.04886615616613, 539.11220300745879, 388.55928206032149, 234.24506788813784,
      110.00000000000007},
     {14.614641229333627, 10.118154034918634, 6.8637138182494182, 4.5511560616139297,
      2.941400497002054, 1.8466094664875659, 1.1214657753473944, 0.65550236221392366,
      0.36641611055629786, 0},
     1192.4581278866447,
     {-2.3715610736675794, -2.3517087541369404, 1.4470804221496008, 1.7707487922421308,
      1.5858457516588289, 1.7733070186927975},
     1192.45837,
     {-2.37156057, -2.35170817, 1.44708073, 1.77074945, 1.58584619, 1.77330744}},
    // Kdpm2BetaLeading: KDPM2DiscreteScheduler {'use_beta_sigmas': True, 'timestep_spacing':
    // 'leading', 'steps_offset': 1}, set_timesteps(8)
    {"Kdpm2BetaLeading",
     "KDPM2DiscreteScheduler",
     "steps_offset=1,timestep_spacing=leading,use_beta_sigmas=true",
     8,
     -1,
     {876, 862.23484565229023, 829.68291553365077, 776.20281481700488, 691.17843864102792,
      546.00851928334998, 264.34467768433711, 1},
     {12.455688349201893, 11.572510206798714, 9.763630563547558, 7.4722182508781296,
      5.024862848349394, 2.7334505356799679, 0.9245708924288123, 0.041392750025631982, 0},
     1035.1010159616062,
     {-2.2550159378578298, -2.2302929465277819, 0.21276799713147049, 2.0242939570627048,
      1.4820975013339757, 2.0281727152534645},
     1035.10071,
     {-2.25501466, -2.23029232, 0.212766781, 2.02429271, 1.48209739, 2.02817106}},
    // EulerLogLinear: EulerDiscreteScheduler {'interpolation_type': 'log_linear'},
    // set_timesteps(10)
    {"EulerLogLinear",
     "EulerDiscreteScheduler",
     "interpolation_type=log_linear",
     10,
     -1,
     {999, 888, 777, 666, 555, 444, 333, 222, 111, 0},
     {157.40728081040749, 59.885889762201927, 22.783697006558555, 8.6680994696400528,
      3.2977944007043889, 1.2546519508005634, 0.47733464442520429, 0.18160284421759493,
      0.069091136403127223, 0.026285850037435912, 0.010000500037502575},
     6713.9546572502077,
     {-18.892066022177396, -18.82635582208907, 5.2659712590186381, 10.909090312846903,
      7.1951386163232049, 11.033403936607902},
     6713.90918,
     {-18.8921337, -18.8262939, 5.26601744, 10.9086628, 7.19496775, 11.0330734}},
    // EulerLogLinearLeadingSdV: EulerDiscreteScheduler {'beta_schedule': 'scaled_linear',
    // 'beta_start': 0.00085, 'beta_end': 0.012, 'interpolation_type': 'log_linear',
    // 'timestep_spacing': 'leading', 'steps_offset': 1, 'prediction_type': 'v_prediction'},
    // set_timesteps(8)
    {"EulerLogLinearLeadingSdV",
     "EulerDiscreteScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,interpolation_type=log_linear,"
     "prediction_type=v_prediction,steps_offset=1,timestep_spacing=leading",
     8,
     -1,
     {876, 751, 626, 501, 376, 251, 126, 1},
     {14.614641229333632, 6.7189499067058538, 3.0889768103380941, 1.4201293159342243,
      0.65289168478900617, 0.30016108201118935, 0.13799635874248314, 0.063442585223204326,
      0.029167158151720367},
     191.12386918670455,
     {-0.32872201691108971, -0.32810957492733789, -0.15904863367118202, 0.47857601027802338,
      -0.056959513760739905, 0.48085945339418545},
     191.123581,
     {-0.328721523, -0.328109086, -0.159048513, 0.478575885, -0.0569597147, 0.480859369}},
    // EulerLogLinearKarrasTrailingSd: EulerDiscreteScheduler {'beta_schedule': 'scaled_linear',
    // 'beta_start': 0.00085, 'beta_end': 0.012, 'interpolation_type': 'log_linear',
    // 'use_karras_sigmas': True, 'timestep_spacing': 'trailing'}, set_timesteps(8)
    {"EulerLogLinearKarrasTrailingSd",
     "EulerDiscreteScheduler",
     "beta_end=0.012,beta_schedule=scaled_linear,beta_start=0.00085,interpolation_type=log_linear,"
     "timestep_spacing=trailing,use_karras_sigmas=true",
     8,
     -1,
     {998.99999999999989, 889.54624297253781, 745.86725263444907, 549.0160973377408,
      298.65677069333969, 89.941733573360267, 12.000853542134067, 1.2755025039276825e-15},
     {14.614641229333627, 7.9029350442827342, 4.0277375131088213, 1.9103565118234871,
      0.82886773686534843, 0.32111952019902151, 0.10719839329209689, 0.029167158151720381, 0},
     1414.7407573159651,
     {-3.4245119194783493, -3.3962048912123435, 1.584488382242847, 1.8667200006500675,
      1.6590779621899776, 1.8719987341926789},
     1414.74109,
     {-3.42451382, -3.39620709, 1.58448875, 1.86672056, 1.65907848, 1.87199879}},
    // Kdpm2AKarrasTrailingV: KDPM2AncestralDiscreteScheduler {'use_karras_sigmas': True,
    // 'timestep_spacing': 'trailing', 'prediction_type': 'v_prediction'}, set_timesteps(6), seed 3
    {"Kdpm2AKarrasTrailingV",
     "KDPM2AncestralDiscreteScheduler",
     "prediction_type=v_prediction,timestep_spacing=trailing,use_karras_sigmas=true",
     6,
     3,
     {999, 894, 764, 599, 387, 166},
     {25.146114834133794, 13.705809148640546, 7.0517992970841075, 3.3837262428604129,
      1.4896141776943403, 0.58799529949174478, 0},
     315.11416588677758,
     {-0.81291394404474848, 1.1294842198841029, -0.13566804999870699, -0.24368644294785557,
      1.0015514342414427, -0.10304981370211971},
     315.114105,
     {-0.812913835, 1.12948418, -0.13566801, -0.243686318, 1.00155139, -0.103049837}},
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
  // Karras sigmas over a leading / trailing grid take their range from that grid (the goldens'
  // *Leading / *Trailing cases); linspace keeps the schedule's range and the spacing's config.
  const auto sp = [](const Config& c) {
    return from_diffusers("EulerDiscreteScheduler", c).spacing->to_config();
  };
  EXPECT_EQ(
      sp({{"use_karras_sigmas", "true"}, {"timestep_spacing", "leading"}, {"steps_offset", "1"}})
          .at("range_steps_offset"),
      "1");
  EXPECT_EQ(sp({{"use_karras_sigmas", "true"}, {"timestep_spacing", "trailing"}}).at("range"),
            "trailing");
  EXPECT_EQ(sp({{"use_karras_sigmas", "true"}}).count("range"), 0u);
}

}  // namespace
}  // namespace diffuse
