// SPDX-License-Identifier: Apache-2.0
// from_diffusers() against diffusers itself: every golden case of the Euler, Euler ancestral and
// Heun tables (diffusers 58eb52c, see k_sampler_fixtures.h for how they were produced) is rebuilt
// from the diffusers config alone — class name + scheduler_config keys + step() arguments — and
// must give the same timesteps, sigmas, initial state and final sample. And DPM-Solver's grid
// options: the sigma options whose model times diffusers truncates (exponential, beta, Karras on
// the cosine schedule) and lambda_min_clipped, golden runs of tests/reference/dpm_options.py.
#include "samplers/dpm_fixtures.h"
#include "samplers/k_sampler_fixtures.h"

#include <diffuse/diffusers.h>

namespace diffuse {
namespace {

using testing::GoldenCase;

std::vector<GoldenCase> table(const char* which) {
  if (std::string(which) == "euler")
    return {
#include "samplers/golden_euler.inc"
    };
  if (std::string(which) == "euler_ancestral")
    return {
#include "samplers/golden_euler_ancestral.inc"
    };
  return {
#include "samplers/golden_heun.inc"
  };
}

/// The diffusers config that the golden case was produced with.
Config diffusers_config(const GoldenCase& g, const std::string& precision) {
  Config c{{"num_train_timesteps", std::to_string(g.T)},
           {"beta_start", format_double(g.beta_start)},
           {"beta_end", format_double(g.beta_end)},
           {"beta_schedule", g.beta_schedule},
           {"prediction_type", g.prediction}};
  if (g.schedule_config.count("rescale_betas_zero_snr")) c["rescale_betas_zero_snr"] = "true";
  if (g.spacing == "karras") {
    c["use_karras_sigmas"] = "true";
  } else if (g.spacing == "exponential") {
    c["use_exponential_sigmas"] = "true";
  } else if (g.spacing == "beta") {
    c["use_beta_sigmas"] = "true";
  } else {
    c["timestep_spacing"] = g.spacing;
  }
  for (const char* k : {"steps_offset", "sigma_min", "sigma_max"})
    if (g.spacing_config.count(k)) c[k] = g.spacing_config.at(k);
  if (g.spacing_config.count("final") && g.spacing_config.at("final") == "min")
    c["final_sigmas_type"] = "sigma_min";
  for (const char* k : {"s_churn", "s_tmin", "s_tmax", "s_noise"})
    if (g.sampler_config.count(k)) c[k] = g.sampler_config.at(k);
  (void)precision;
  return c;
}

void check_front_end(const std::string& cls, const GoldenCase& g) {
  SCOPED_TRACE(cls + "." + g.name);
  const DiffusersScheduler s = from_diffusers(cls, diffusers_config(g, "float64"));
  const TimeGrid grid = s.grid(g.steps);
  ASSERT_EQ(grid.size(), g.sigmas.size());
  for (size_t i = 0; i < g.timesteps.size(); ++i)
    testing::ExpectRelNear(grid[i].t, g.timesteps[i], 1e-6, 1e-9, "timestep " + std::to_string(i));
  for (size_t i = 0; i < g.sigmas.size(); ++i)
    testing::ExpectRelNear(grid[i].sigma_ve(), g.sigmas[i], 1e-6, 1e-12,
                           "sigma " + std::to_string(i));
  const Denoiser d = s.denoiser(testing::smooth_network);
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  auto noise = make_torch_noise(g.seed < 0 ? 0 : static_cast<uint64_t>(g.seed));
  SampleContext ctx;
  ctx.schedule = s.schedule.get();
  ctx.noise = g.seed < 0 ? nullptr : noise.get();
  // The pipeline: latents = sample_deter * init_noise_sigma, then the scheduler loop.
  const Tensor x0 = s.initial_state(testing::sample_deter(at::kDouble), g.steps);
  const Tensor out = s.sampler->sample(fn, x0, grid, ctx);
  const testing::SampleStats st = testing::stats_of(out / grid.back().alpha);
  testing::ExpectRelNear(st.abs_sum, g.f64.abs_sum, 1e-6, 0, "sum |x|");
  testing::ExpectRelNear(st.weighted_sum, g.f64.weighted_sum, 1e-6, 0, "weighted sum");
}

TEST(FromDiffusers, EulerGoldens) {
  for (const auto& g : table("euler")) check_front_end("EulerDiscreteScheduler", g);
}
TEST(FromDiffusers, EulerAncestralGoldens) {
  for (const auto& g : table("euler_ancestral"))
    check_front_end("EulerAncestralDiscreteScheduler", g);
}
TEST(FromDiffusers, HeunGoldens) {
  for (const auto& g : table("heun")) check_front_end("HeunDiscreteScheduler", g);
}

const std::vector<testing::ConfigGolden> kDpmOptionGolden = {
    // MultiExponential: DPMSolverMultistepScheduler {'use_exponential_sigmas': True},
    // set_timesteps(10)
    {"MultiExponential",
     "DPMSolverMultistepScheduler",
     "use_exponential_sigmas=true",
     10,
     -1,
     {999, 886, 757, 602, 409, 202, 72, 21, 4, 0},
     {157.40728081040763, 53.788711225864652, 18.380505910805105, 6.2809275373507649,
      2.1462984164249894, 0.73342621212462455, 0.25062405326071002, 0.085642447780628447,
      0.029265462617939036, 0.010000500037502575, 0},
     2135.470792058999,
     {-8.0616415538757114, -8.133398822393513, 1.3084272555669139, 4.950065852692064,
      1.3728246193046436, 4.8945738292116809},
     2135.48145,
     {-8.06186485, -8.13378429, 1.30846441, 4.95031643, 1.37285292, 4.8947382}},
    // MultiBeta: DPMSolverMultistepScheduler {'use_beta_sigmas': True}, set_timesteps(10)
    {"MultiBeta",
     "DPMSolverMultistepScheduler",
     "use_beta_sigmas=true",
     10,
     -1,
     {999, 994, 983, 966, 942, 909, 862, 785, 629, 0},
     {157.40728081040757, 149.99515680331612, 134.49006411014278, 114.05797788068051,
      90.800723992938345, 66.616557317506732, 43.359303429764566, 22.927217200302309,
      7.4221245071289434, 0.010000500037502575, 0},
     9859.6869852147211,
     {11.732306713253502, 13.358477560683262, -17.83230351526193, 3.7455725709561736,
      -15.287423104319702, 4.276916487830694},
     9859.52344,
     {11.7319756, 13.3581161, -17.8320122, 3.7456944, -15.2871532, 4.27701998}},
    // MultiBetaOrder3V: DPMSolverMultistepScheduler {'use_beta_sigmas': True, 'solver_order': 3,
    // 'prediction_type': 'v_prediction'}, set_timesteps(12)
    {"MultiBetaOrder3V",
     "DPMSolverMultistepScheduler",
     "prediction_type=v_prediction,solver_order=3,use_beta_sigmas=true",
     12,
     -1,
     {999, 995, 987, 976, 960, 940, 913, 877, 825, 743, 576, 0},
     {157.40728081040757, 152.08403887065353, 140.82231983058207, 125.67924558906009,
      107.91361228197415, 88.612565345259824, 68.804715965185252, 49.50366902847091,
      31.738035721384996, 16.594961479862974, 5.3332424397915128, 0.010000500037502575, 0},
     293.82427223847492,
     {0.32204073049941756, 0.32377288456661046, -0.70655073389734036, 0.79277847048947514,
      -0.58785533587059469, 0.79952160515737314},
     293.821472,
     {0.322040826, 0.323772788, -0.706544042, 0.792768955, -0.587848902, 0.799511135}},
    // MultiCosineKarras: DPMSolverMultistepScheduler {'beta_schedule': 'squaredcos_cap_v2',
    // 'use_karras_sigmas': True}, set_timesteps(10)
    {"MultiCosineKarras",
     "DPMSolverMultistepScheduler",
     "beta_schedule=squaredcos_cap_v2,use_karras_sigmas=true",
     10,
     -1,
     {999, 998, 998, 998, 997, 995, 983, 894, 259, 0},
     {20291.169610019882, 9856.3327358944844, 4405.703920814055, 1773.3575205866227,
      622.88757765823459, 181.95617114970932, 40.840882883813933, 6.0962212031956149,
      0.44384437933037479, 0.0064254127711420835, 0},
     45594.748854094956,
     {129.70420824181028, 133.70468554425275, -23.902835521350738, -215.48134802639447,
      -22.101221859121946, -215.88573245576464},
     45593.7344,
     {129.691544, 133.695755, -23.9005337, -215.449387, -22.1025181, -215.852524}},
    // MultiCosineClipped: DPMSolverMultistepScheduler {'beta_schedule': 'squaredcos_cap_v2',
    // 'lambda_min_clipped': -5.1}, set_timesteps(10)
    {"MultiCosineClipped",
     "DPMSolverMultistepScheduler",
     "beta_schedule=squaredcos_cap_v2,lambda_min_clipped=-5.1",
     10,
     -1,
     {995, 896, 796, 696, 597, 498, 398, 298, 199, 100},
     {160.41363805933085, 6.1761333626332791, 3.0547263918002705, 1.9578905085338396,
      1.3816448436298565, 1.0092385354885192, 0.73546639887045751, 0.51839786274032829,
      0.33572464980197053, 0.17104355328665174, 0},
     14240.558206059233,
     {-35.099871493038606, -35.081121194659758, 12.152252071799099, 15.666740232622109,
      17.826646958180586, 15.574083834191173},
     14240.5605,
     {-35.0998726, -35.0811272, 12.152257, 15.6667471, 17.8266544, 15.5740948}},
    // MultiLeadingClipped: DPMSolverMultistepScheduler {'lambda_min_clipped': -4.0,
    // 'timestep_spacing': 'leading'}, set_timesteps(10)
    {"MultiLeadingClipped",
     "DPMSolverMultistepScheduler",
     "lambda_min_clipped=-4,timestep_spacing=leading",
     10,
     -1,
     {800, 720, 640, 560, 480, 400, 320, 240, 160, 80},
     {25.735979682332655, 13.893119814718705, 7.974004535893088, 4.8438319938971146,
      3.0888322615696584, 2.0410870026144945, 1.3708005040477349, 0.90787844453305522,
      0.56023160868587618, 0.27456954832165231, 0},
     1266.4193704041677,
     {-2.9367522568964293, -2.854479380684888, -0.16891313755344692, 2.4975332125067933,
      1.7058724527861759, 2.5375088993530706},
     1266.41931,
     {-2.93675399, -2.85448027, -0.16891332, 2.49753284, 1.7058723, 2.53751063}},
    // SingleBeta: DPMSolverSinglestepScheduler {'use_beta_sigmas': True}, set_timesteps(10)
    {"SingleBeta",
     "DPMSolverSinglestepScheduler",
     "use_beta_sigmas=true",
     10,
     -1,
     {999, 994, 983, 966, 942, 909, 862, 785, 629, 0},
     {157.40728081040757, 149.99515680331612, 134.49006411014278, 114.05797788068051,
      90.800723992938345, 66.616557317506732, 43.359303429764566, 22.927217200302309,
      7.4221245071289434, 0.010000500037502575, 0},
     6294.0117644805914,
     {-18.65031243297155, -18.821070939799608, 4.5222662028666019, 13.272453101628486,
      4.2257881459229534, 13.234126428751527},
     6294.01367,
     {-18.6503105, -18.8210773, 4.52226734, 13.2724543, 4.22578812, 13.2341251}},
    // SingleCosineClipped: DPMSolverSinglestepScheduler {'beta_schedule': 'squaredcos_cap_v2',
    // 'lambda_min_clipped': -5.1}, set_timesteps(10)
    {"SingleCosineClipped",
     "DPMSolverSinglestepScheduler",
     "beta_schedule=squaredcos_cap_v2,lambda_min_clipped=-5.1",
     10,
     -1,
     {995, 896, 796, 696, 597, 498, 398, 298, 199, 100},
     {160.41363805933085, 6.1761333626332791, 3.0547263918002705, 1.9578905085338396,
      1.3816448436298565, 1.0092385354885192, 0.73546639887045751, 0.51839786274032829,
      0.33572464980197053, 0.17104355328665174, 0},
     14257.871305738026,
     {-34.996278592126508, -34.976130279899593, 12.426720714858796, 15.894413733703702,
      17.913057214758897, 15.807367059902049},
     14257.873,
     {-34.9962845, -34.9761353, 12.4267235, 15.8944178, 17.913063, 15.8073702}},
    // SingleNoiseOrder2: DPMSolverSinglestepScheduler {'algorithm_type': 'dpmsolver',
    // 'final_sigmas_type': 'sigma_min'}, set_timesteps(10)
    {"SingleNoiseOrder2",
     "DPMSolverSinglestepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     1358.8299996818662,
     {0.094183754366876454, -0.12114440430182313, 1.3577506477177377, 1.4858335249439651,
      0.12166722888133408, 1.5217399875160289},
     1358.82922,
     {0.0941759944, -0.121148124, 1.35775137, 1.48583627, 0.121661276, 1.52174008}},
    // SingleNoiseOrder3Heun: DPMSolverSinglestepScheduler {'algorithm_type': 'dpmsolver',
    // 'final_sigmas_type': 'sigma_min', 'solver_order': 3, 'solver_type': 'heun'},
    // set_timesteps(12)
    {"SingleNoiseOrder3Heun",
     "DPMSolverSinglestepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,solver_order=3,solver_type=heun",
     12,
     -1,
     {999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83},
     {157.40728081040757, 70.450463968351457, 33.521926895647532, 17.24698300991162,
      9.4889202295252151, 5.5600440690522062, 3.4429671125258228, 2.2129225347942048,
      1.4623566969975685, 0.95803371466223142, 0.58364047704056887, 0.28460538324828927,
      0.010000500037502575},
     4026.486231686893,
     {-8.9156497568697581, -8.9149941547394427, 2.6025003461122647, 6.0689118457407885,
      4.1195603060853001, 6.0696395486153181},
     4026.48462,
     {-8.91565895, -8.91500759, 2.60249972, 6.06890202, 4.11955786, 6.0696311}},
    // SingleNoiseOrder3MidpointV: DPMSolverSinglestepScheduler {'algorithm_type': 'dpmsolver',
    // 'final_sigmas_type': 'sigma_min', 'solver_order': 3, 'prediction_type': 'v_prediction'},
    // set_timesteps(11)
    {"SingleNoiseOrder3MidpointV",
     "DPMSolverSinglestepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,prediction_type=v_prediction,solver_"
     "order=3",
     11,
     -1,
     {999, 908, 817, 727, 636, 545, 454, 363, 272, 182, 91},
     {157.40728081040757, 65.438433045668916, 29.578040247892421, 14.626655065524519,
      7.7676424272140148, 4.4369451125509922, 2.6912993315340668, 1.6969606049366648,
      1.0752241153353934, 0.64786200378798364, 0.31156289773970491, 0.010000500037502575},
     222.22496487337531,
     {-0.46963109109527879, -0.46605720435670744, 0.034930043729955645, 0.46669908436758073,
      0.17532989492385753, 0.46949482557168959},
     222.221161,
     {-0.469623715, -0.46604833, 0.034926936, 0.466693997, 0.175323516, 0.469488442}},
    // SingleNoiseOrder2Heun: DPMSolverSinglestepScheduler {'algorithm_type': 'dpmsolver',
    // 'final_sigmas_type': 'sigma_min', 'solver_type': 'heun'}, set_timesteps(9)
    {"SingleNoiseOrder2Heun",
     "DPMSolverSinglestepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,solver_type=heun",
     9,
     -1,
     {999, 888, 777, 666, 555, 444, 333, 222, 111},
     {157.40728081040757, 54.567513088189685, 21.417496171227608, 9.4889202295252151,
      4.7033339489150761, 2.5546912050017787, 1.4623566969975685, 0.82193578582256033,
      0.38037100632746706, 0.010000500037502575},
     1450.3551494726617,
     {-7.5741209173557174, -7.5205727610505999, 1.5248500889527394, 3.6274404294917217,
      -0.49229711992573011, 3.67813852177673},
     1450.35498,
     {-7.57412195, -7.520576, 1.52485061, 3.62743855, -0.492299259, 3.67813945}},
};

// DPMSolverMultistep/Singlestep cast their model times to int64: the exponential and beta times
// are truncated, multistep's cosine-schedule Karras times too (elsewhere Karras and lu times are
// rounded first). The solver steps with the exact sigmas. lambda_min_clipped leaves the noisiest
// training steps out of the linspace / leading grids. (Singlestep with Karras on the cosine
// schedule has no golden: diffusers 58eb52c raises IndexError in its order list there.)
TEST(FromDiffusers, DpmGridOptionGoldens) {
  for (const auto& g : kDpmOptionGolden) {
    testing::check_config_golden(g, at::kDouble);
    testing::check_config_golden(g, at::kFloat);
  }
  // Spelled out on one grid: the beta times are integers below the exact ones.
  const DiffusersScheduler s =
      from_diffusers("DPMSolverMultistepScheduler", {{"use_beta_sigmas", "true"}});
  const TimeGrid grid = s.grid(10);
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const double exact = s.schedule->at_sigma_ve(grid[i].sigma_ve()).t;
    EXPECT_EQ(grid[i].t, std::trunc(exact)) << i;
  }
  EXPECT_EQ(s.spacing->name(), "beta");
  EXPECT_EQ(s.spacing->to_config().at("trunc_t"), "true");
}

}  // namespace
}  // namespace diffuse
