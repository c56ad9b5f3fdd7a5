// SPDX-License-Identifier: Apache-2.0
// DPM-Solver in its noise-prediction form (samplers/dpm_solver.h) against diffusers
// DPMSolverMultistepScheduler with algorithm_type="dpmsolver"
// (huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951) through from_diffusers.
#include <cmath>

#include "dpm_fixtures.h"

namespace diffuse {
namespace {

// Printed by `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH cases` (the
// DpmNoise rows; diffusers 58eb52c, torch 1.13.1): ConfigGolden rows
// (tests/samplers/dpm_fixtures.h), the nonlinear model from x = 2 * dummy_sample_deter - 1,
// final_sigmas_type=sigma_min (diffusers refuses "zero" for this algorithm).
const std::vector<testing::ConfigGolden> kDpmNoiseGolden = {
    // DpmNoiseOrder1: DPMSolverMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'algorithm_type': 'dpmsolver', 'solver_order': 1}, set_timesteps(8)
    {"DpmNoiseOrder1",
     "DPMSolverMultistepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,solver_order=1",
     8,
     -1,
     {999, 874, 749, 624, 500, 375, 250, 125},
     {157.40728081040757, 48.166835715703215, 17.24698300991162, 7.1861384447243761,
      3.4429671125258228, 1.8012354352525342, 0.95803371466223142, 0.42994242880767186,
      0.010000500037502575},
     7356.3456353916181,
     {-19.541936765849407, -19.492426155228969, 5.2799880151677918, 11.027404899837464,
      6.2969091944925335, 11.03104934031005},
     7356.34961,
     {-19.5419579, -19.4924393, 5.27999067, 11.0274105, 6.29691601, 11.0310545}},
    // DpmNoiseOrder2: DPMSolverMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'algorithm_type': 'dpmsolver'}, set_timesteps(10)
    {"DpmNoiseOrder2",
     "DPMSolverMultistepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     3778.0574054154022,
     {-11.914184774675444, -11.906516167344529, 2.2781798615090048, 7.2696447154847696,
      3.2673248049088213, 7.2974734427484966},
     3778.05762,
     {-11.9141903, -11.9065218, 2.27818036, 7.26964569, 3.26732588, 7.29747486}},
    // DpmNoiseOrder2Heun: DPMSolverMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'algorithm_type': 'dpmsolver', 'solver_type': 'heun'}, set_timesteps(10)
    {"DpmNoiseOrder2Heun",
     "DPMSolverMultistepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,solver_type=heun",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     3986.096978794455,
     {-12.08175722650294, -12.073194111111599, 2.5648638897273957, 7.3796430343954142,
      3.3963358482429338, 7.3980101566224716},
     3986.09717,
     {-12.0817642, -12.0731983, 2.56486464, 7.37964439, 3.39633751, 7.39801121}},
    // DpmNoiseOrder3: DPMSolverMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'algorithm_type': 'dpmsolver', 'solver_order': 3}, set_timesteps(12)
    {"DpmNoiseOrder3",
     "DPMSolverMultistepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,solver_order=3",
     12,
     -1,
     {999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83},
     {157.40728081040757, 70.450463968351457, 33.521926895647532, 17.24698300991162,
      9.4889202295252151, 5.5600440690522062, 3.4429671125258228, 2.2129225347942048,
      1.4623566969975685, 0.95803371466223142, 0.58364047704056887, 0.28460538324828927,
      0.010000500037502575},
     3593.0489191801935,
     {-9.6975200991777299, -9.5914961975080821, 2.348695425094423, 6.7948474566858748,
      3.3999323255381118, 6.8590198062633521},
     3593.05029,
     {-9.69752312, -9.59150314, 2.34869742, 6.79484463, 3.39993429, 6.85902262}},
    // DpmNoiseOrder3V: DPMSolverMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'algorithm_type': 'dpmsolver', 'solver_order': 3, 'prediction_type': 'v_prediction'},
    // set_timesteps(20)
    {"DpmNoiseOrder3V",
     "DPMSolverMultistepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,prediction_type=v_prediction,solver_"
     "order=3",
     20,
     -1,
     {999, 949, 899, 849, 799, 749, 699, 649, 599, 549,
      500, 450, 400, 350, 300, 250, 200, 150, 100, 50},
     {157.40728081040757,  96.176092945930236,  60.271410067824064, 38.736401984959514,
      25.528481389204856,  17.24698300991162,   11.939519622754792, 8.4630064124265783,
      6.1352088790288821,  4.5412352545374697,  3.4429671125258228, 2.6356541628760204,
      2.0410870026144945,  1.5910030193212426,  1.240161045545549,  0.95803371466223142,
      0.72359125943039693, 0.52196506273620513, 0.3422596990130316, 0.17600963277243634,
      0.010000500037502575},
     135.23201913839648,
     {-0.26249851677396729, -0.26093471227386, -0.09896225222409416, 0.45100443506845889,
      -0.047732962602994825, 0.4549242294905777},
     135.232147,
     {-0.262498885, -0.260935187, -0.0989622399, 0.451005131, -0.0477328487, 0.454924703}},
    // DpmNoiseThreshold: DPMSolverMultistepScheduler {'final_sigmas_type': 'sigma_min',
    // 'algorithm_type': 'dpmsolver', 'thresholding': True, 'sample_max_value': 0.8},
    // set_timesteps(10)
    {"DpmNoiseThreshold",
     "DPMSolverMultistepScheduler",
     "algorithm_type=dpmsolver,final_sigmas_type=sigma_min,sample_max_value=0.8,thresholding=true",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     658.85602952199588,
     {-1.0098866710846743, -1.0097825023159495, -0.18434607932410821, 1.0098085445081306,
      1.0020219290459402, 1.0098606288924932},
     658.856262,
     {-1.00988746, -1.00978327, -0.184346586, 1.00980949, 1.00202215, 1.00986147}},
};

TEST(DpmSolverSampler, MatchesDiffusersFloat64) {
  for (const auto& g : kDpmNoiseGolden) testing::check_config_golden(g, at::kDouble);
}

TEST(DpmSolverSampler, MatchesDiffusersFloat32) {
  for (const auto& g : kDpmNoiseGolden) testing::check_config_golden(g, at::kFloat);
}

// The suite config of tests/schedulers/test_scheduler_dpm_multi.py (58eb52c) with
// algorithm_type="dpmsolver" (the suite runs that loop in test_solver_order_and_type without a
// stated value); the sums are diffusers' own (new_solvers.py suite).
TEST(DpmSolverSampler, DiffusersSuiteLoop) {
  const testing::SuiteGolden g{
      "dpm_multi dpmsolver full loop",
      "DPMSolverMultistepScheduler",
      "algorithm_type=dpmsolver,beta_end=0.02,beta_schedule=linear,beta_start=0.0001,euler_at_"
      "final=false,final_sigmas_type=sigma_min,lower_order_final=false,num_train_timesteps=1000,"
      "prediction_type=epsilon,sample_max_value=1,solver_order=2,solver_type=midpoint,"
      "thresholding=false",
      -1,
      -1,
      223.58678006061749,
      223.586029};
  testing::check_suite_golden(g, at::kDouble);
  testing::check_suite_golden(g, at::kFloat);
}

TEST(DpmSolverSampler, OrderOneIsDdimAndTheDataFormsFirstOrder) {
  auto sched = make_schedule("discrete");
  for (const char* final : {"zero", "min"}) {
    const TimeGrid grid = testing::dpm_grid(*sched, 12, "linspace", final);
    const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
    SampleContext ctx;
    const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
    const Tensor a =
        make_sampler("dpm_solver", {{"order", "1"}})->sample(testing::model_fn(d), x, grid, ctx);
    const Tensor b = make_sampler("ddim")->sample(testing::model_fn(d), x, grid, ctx);
    testing::ExpectTensorNear(a, b, 1e-12, 1e-10, final);
    // Onto sigma = 0 (which diffusers refuses for this form) the higher orders stay finite.
    const Tensor c =
        make_sampler("dpm_solver", {{"order", "3"}})->sample(testing::model_fn(d), x, grid, ctx);
    EXPECT_TRUE(at::isfinite(c).all().item<bool>()) << final;
  }
}

TEST(DpmSolverSampler, ConfigAndErrors) {
  const Config c{{"order", "3"},
                 {"solver_type", "heun"},
                 {"lower_order_final", "false"},
                 {"lower_order_final_below", "20"},
                 {"euler_at_final", "true"},
                 {"third_order", "taylor"}};
  EXPECT_EQ(make_sampler("dpm_solver", c)->to_config(), c);
  EXPECT_EQ(make_sampler("dpm_solver")->history_size(), 1);
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"order", "4"}, {"solver_type", "bogus"}, {"third_order", "cubic"}, {"bad_key", "1"}}) {
    try {
      make_sampler("dpm_solver", {{key, value}});
      ADD_FAILURE() << "no error for " << key;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key == "bad_key" ? key : value), std::string::npos)
          << e.what();
    }
  }
  auto sched = make_schedule("discrete", {{"rescale_betas_zero_snr", "true"}});
  const TimeGrid grid = make_spacing("trailing")->grid(*sched, 6);
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "v_prediction");
  SampleContext ctx;
  try {
    make_sampler("dpm_solver")
        ->sample(testing::model_fn(d), testing::dummy_sample_deter(at::kDouble), grid, ctx);
    ADD_FAILURE() << "no error at alpha = 0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alpha = 0"), std::string::npos) << e.what();
  }
  // The singlestep noise form (dpm_solver_pp_singlestep predict_x0=false, goldens in
  // from_diffusers_test.cpp) refuses alpha = 0 as well.
  try {
    sampler_from_spec("dpm_solver_pp_singlestep:predict_x0=false")
        ->sample(testing::model_fn(d), testing::dummy_sample_deter(at::kDouble), grid, ctx);
    ADD_FAILURE() << "no error at alpha = 0 (singlestep)";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alpha = 0"), std::string::npos) << e.what();
  }
}

// Order 1 of the singlestep noise form is the multistep noise form's order 1 (DDIM).
TEST(DpmSolverSampler, SinglestepNoiseFormOrder1IsDpmSolverOrder1) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = make_spacing("linspace")->grid(*sched, 12);
  const Denoiser d(testing::nonlinear_network(), DenoiserOptions{});
  SampleContext ctx;
  ctx.schedule = sched.get();
  const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
  const Tensor single = sampler_from_spec("dpm_solver_pp_singlestep:order=1,predict_x0=false")
                            ->sample(testing::model_fn(d), x, grid, ctx);
  const Tensor multi =
      sampler_from_spec("dpm_solver:order=1")->sample(testing::model_fn(d), x, grid, ctx);
  testing::ExpectTensorNear(single, multi, 1e-12, 1e-12, "order 1");
  EXPECT_EQ(
      sampler_from_spec("dpm_solver_pp_singlestep:predict_x0=false")->to_config().at("predict_x0"),
      "false");
}

}  // namespace
}  // namespace diffuse
