// SPDX-License-Identifier: Apache-2.0
// DPM-Solver++ multistep (samplers/dpm_solver_pp.h) against diffusers DPMSolverMultistepScheduler
// (huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951, algorithm_type="dpmsolver++").
#include <cmath>

#include "dpm_fixtures.h"

namespace diffuse {
namespace {

using testing::DpmGolden;

// ---------------------------------------------------------------------------------------------
// diffusers' own test suite (tests/schedulers/test_scheduler_dpm_multi.py at 58eb52c):
// num_train_timesteps=1000, linear betas 1e-4..0.02,
// solver_order=2, midpoint, lower_order_final=False, final_sigmas_type="sigma_min", dummy model
// sample * t / (t + 1) from dummy_sample_deter, set_timesteps(10).
// The "f64" sums are diffusers run fully in float64 (a copy of scheduling_dpmsolver_multistep.py
// with every float32 replaced by float64), the "f32" sums are stock diffusers; both printed by
// tests/reference/dpm_solver.py suite (see tests/reference/README.md).
struct MultistepSuiteCase {
  const char* name;
  const char* spacing;
  const char* prediction;
  bool thresholding;
  double mean;   // the suite's expectation (tolerance 1e-3)
  double sum32;  // stock diffusers, float32
  double sum64;  // diffusers in float64
};

Tensor run_suite(const MultistepSuiteCase& c, at::ScalarType dtype) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 10, c.spacing, "min");
  DenoiserOptions o;
  o.prediction_type = parse_parameterization(c.prediction);
  if (c.thresholding) {  // thresholding=True, dynamic_thresholding_ratio=0.87, sample_max_value=0.5
    o.thresholding = true;
    o.dynamic_thresholding_ratio = 0.87;
    o.sample_max_value = 0.5;
  }
  const Denoiser d(testing::dummy_network(), o);
  SampleContext ctx;
  ctx.schedule = sched.get();
  return make_sampler("dpm_solver_pp", {{"lower_order_final", "false"}})
      ->sample(testing::model_fn(d), testing::dummy_sample_deter(dtype), grid, ctx);
}

const MultistepSuiteCase kMultistepSuite[] = {
    {"test_full_loop_no_noise", "linspace", "epsilon", false, 0.3301, 253.551391602, 253.552879009},
    {"test_full_loop_no_noise_thres", "linspace", "epsilon", true, 1.1364, 872.727050781,
     872.735442806},
    {"test_full_loop_with_v_prediction", "linspace", "v_prediction", false, 0.2251, 172.87399292,
     172.876300335},
    // use_karras_sigmas=True: karras sigmas, timesteps rounded, last step of zero length.
    {"test_full_loop_with_karras_and_v_prediction", "karras", "v_prediction", false, 0.2096,
     160.664199829, 160.665528856},
    // use_lu_lambdas=True: lambda uniform between the schedule's ends = our exponential spacing.
    {"test_full_loop_with_lu_and_v_prediction", "exponential", "v_prediction", false, 0.1554,
     119.364822388, 119.365238584},
};

TEST(DpmSolverPPSampler, DiffusersSuiteFullLoops) {
  for (const auto& c : kMultistepSuite) {
    SCOPED_TRACE(c.name);
    const Tensor x32 = run_suite(c, at::kFloat), x64 = run_suite(c, at::kDouble);
    EXPECT_NEAR(x32.abs().mean().item<double>(), c.mean, 1e-3);
    EXPECT_NEAR(x64.abs().mean().item<double>(), c.mean, 1e-3);
    EXPECT_NEAR(x32.abs().sum().item<double>(), c.sum32, 1e-4 * c.sum32);
    EXPECT_NEAR(x64.abs().sum().item<double>(), c.sum64, 1e-6 * c.sum64);
  }
}

// test_full_loop_with_noise: set_timesteps(10), x = add_noise(sample, noise_deter, timesteps[5] =
// 500) = alpha_500 * sample + sigma_500 * noise, then step over timesteps[5:] (a fresh solver, so
// the first step is first order). Expected sum 318.4111, mean 0.4146 (tolerances 1e-2 / 1e-3);
// diffusers in float64 gives 318.412981104 (tests/reference/dpm_solver.py suite).
TEST(DpmSolverPPSampler, DiffusersSuiteFullLoopWithNoise) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 10, "linspace", "min");
  ASSERT_EQ(grid[5].t, 500);
  const Denoiser d = testing::make_denoiser(testing::dummy_network(), "epsilon");
  auto s = make_sampler("dpm_solver_pp", {{"lower_order_final", "false"}});
  for (auto dtype : {at::kFloat, at::kDouble}) {
    SampleContext ctx;
    ctx.schedule = sched.get();
    const Tensor x = testing::dummy_sample_deter(dtype) * grid[5].alpha +
                     testing::dummy_noise_deter(dtype) * grid[5].sigma;
    const Tensor out = testing::run_from(*s, testing::model_fn(d), x, grid, 5, ctx);
    EXPECT_NEAR(out.abs().sum().item<double>(), 318.4111, 1e-2);
    EXPECT_NEAR(out.abs().mean().item<double>(), 0.4146, 1e-3);
    if (dtype == at::kDouble) {
      EXPECT_NEAR(out.abs().sum().item<double>(), 318.412981104, 1e-6 * 318.4);
    }
    // Starting on the sub-grid with the ordinary driver is the same here (lower_order_final off).
    SampleContext ctx2;
    const TimeGrid tail(grid.begin() + 5, grid.end());
    testing::ExpectTensorNear(s->sample(testing::model_fn(d), x, tail, ctx2), out, 1e-12, 1e-6,
                              "sub-grid");
  }
}

// ---------------------------------------------------------------------------------------------
// Beyond the suite: diffusers DPMSolverMultistepScheduler(num_train_timesteps=1000,
// beta_start=1e-4, beta_end=0.02, beta_schedule="linear", **changes) (58eb52c),
// set_timesteps(steps), loop `x = step(model(x, t), t, x).prev_sample` over scheduler.timesteps
// with model(x, t) = 0.5 x t / (t + 1) + 0.3 sin(3 x + t / 250) from x = 2 * dummy_sample_deter
// - 1. float64: the float64 copy described above; float32: stock diffusers. Generated by
// tests/reference/dpm_solver.py multistep (see tests/reference/README.md). Each row: name, our
// sampler options, schedule options, spacing, final, prediction, steps, seed, diffusers timesteps
// and sigmas, float64 sum|x| and elements, float32 sum|x| and elements.
const DpmGolden kMultistepGolden[] = {
    // Order1Zero: {'solver_order': 1}, set_timesteps(10)
    {"Order1Zero",
     "order=1,solver_type=midpoint,lower_order_final=true,euler_at_final=false",
     "",
     "linspace",
     "zero",
     "epsilon",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0},
     5945.4833503363407,
     {-14.712782352437422, -14.657774865920166, 3.9823100532862044, 9.2912872415386829,
      5.4523811503623794, 9.3156710485922041},
     5945.48242,
     {-14.712781, -14.657773, 3.98231006, 9.29128742, 5.45238066, 9.31566715}},
    // Order2Defaults: {}, set_timesteps(10)
    {"Order2Defaults",
     "order=2,solver_type=midpoint,lower_order_final=true,euler_at_final=false",
     "",
     "linspace",
     "zero",
     "epsilon",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0},
     3024.6233626011553,
     {-11.128912834712372, -11.121909262045591, 1.799546855061791, 6.5583136465363081,
      1.8660846290623201, 6.802479867387019},
     3024.6228,
     {-11.1289129, -11.1219091, 1.79954696, 6.55830574, 1.86608469, 6.80247068}},
    // Order2HeunSigmaMin: {'solver_type': 'heun', 'final_sigmas_type': 'sigma_min',
    // 'lower_order_final': False}, set_timesteps(10)
    {"Order2HeunSigmaMin",
     "order=2,solver_type=heun,lower_order_final=false,euler_at_final=false",
     "",
     "linspace",
     "min",
     "epsilon",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     2636.0476146374258,
     {-8.8920493265673404, -8.8910160986931732, 2.0425457205416548, 5.4244344458623708,
      2.0597706025631646, 5.4102635255960889},
     2636.05029,
     {-8.89207458, -8.89104271, 2.04253769, 5.42444134, 2.05976343, 5.41027403}},
    // Order3Defaults: {'solver_order': 3}, set_timesteps(10)
    {"Order3Defaults",
     "order=3,solver_type=midpoint,lower_order_final=true,euler_at_final=false",
     "",
     "linspace",
     "zero",
     "epsilon",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0},
     4059.9055930665354,
     {-12.099675390952237, -12.101557189126318, 2.4158886856852826, 7.2766062087264816,
      3.4303886076411523, 7.2861919923649037},
     4059.90552,
     {-12.0996761, -12.1015577, 2.41588783, 7.27660561, 3.43038821, 7.28619242}},
    // Order3SigmaMinNoLowerFinal: {'solver_order': 3, 'final_sigmas_type': 'sigma_min',
    // 'lower_order_final': False}, set_timesteps(10)
    {"Order3SigmaMinNoLowerFinal",
     "order=3,solver_type=midpoint,lower_order_final=false,euler_at_final=false",
     "",
     "linspace",
     "min",
     "epsilon",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     6231.1520445634924,
     {-16.755077296563893, -16.757754700309487, 1.9416796530086446, 12.06007071430605,
      7.0227843542361015, 12.003705557211532},
     6231.05615,
     {-16.7548809, -16.757555, 1.94170034, 12.0598497, 7.02262926, 12.0034876}},
    // Order3Zero20Steps: {'solver_order': 3}, set_timesteps(20)
    {"Order3Zero20Steps",
     "order=3,solver_type=midpoint,lower_order_final=true,euler_at_final=false",
     "",
     "linspace",
     "zero",
     "epsilon",
     20,
     -1,
     {999, 949, 899, 849, 799, 749, 699, 649, 599, 549,
      500, 450, 400, 350, 300, 250, 200, 150, 100, 50},
     {157.40728081040757,  96.176092945930236,  60.271410067824064,
      38.736401984959514,  25.528481389204856,  17.24698300991162,
      11.939519622754792,  8.4630064124265783,  6.1352088790288821,
      4.5412352545374697,  3.4429671125258228,  2.6356541628760204,
      2.0410870026144945,  1.5910030193212426,  1.240161045545549,
      0.95803371466223142, 0.72359125943039693, 0.52196506273620513,
      0.3422596990130316,  0.17600963277243634, 0},
     3401.0480044329033,
     {-8.5750971534124503, -8.4728709494397911, 2.2317895435635253, 5.8819526349004887,
      3.3935202267765359, 5.9194078134157131},
     3401.04785,
     {-8.57510376, -8.47287464, 2.23178792, 5.88195038, 3.3935194, 5.91940975}},
    // Order2VKarrasZero: {'prediction_type': 'v_prediction', 'use_karras_sigmas': True},
    // set_timesteps(12)
    {"Order2VKarrasZero",
     "order=2,solver_type=midpoint,lower_order_final=true,euler_at_final=false",
     "",
     "karras",
     "zero",
     "v_prediction",
     12,
     -1,
     {999, 949, 892, 826, 747, 651, 527, 363, 180, 59, 12, 0},
     {157.40728081040749, 96.110108719228137, 56.52758414605546, 31.829453321914304,
      17.025054034211042, 8.5635156840356625, 3.9966641324401415, 1.6992695735613939,
      0.64127567245793837, 0.20664820552898527, 0.053481441384851107, 0.010000500037502566, 0},
     147.87987047894009,
     {-0.37213085845651328, -0.36884751870209476, -0.064502407439173542, 0.5280413360593732,
      -0.0170476196248334, 0.53389231384303693},
     147.877838,
     {-0.372127175, -0.368843853, -0.0645000115, 0.528034985, -0.0170456916, 0.533885658}},
    // Order2EulerAtFinal20: {'euler_at_final': True, 'final_sigmas_type': 'sigma_min'},
    // set_timesteps(20)
    {"Order2EulerAtFinal20",
     "order=2,solver_type=midpoint,lower_order_final=true,euler_at_final=true",
     "",
     "linspace",
     "min",
     "epsilon",
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
     3149.4746043607938,
     {-7.7192593951565351, -7.6784037726476582, 2.0912337594209141, 5.6967184142611309,
      2.959206213409932, 5.7222568644936711},
     3149.47632,
     {-7.71926308, -7.67840767, 2.0912354, 5.69671965, 2.95920491, 5.72225952}},
    // Order3ScaledLinearKarrasSigmaMin: {'solver_order': 3, 'beta_start': 0.00085, 'beta_end':
    // 0.012, 'beta_schedule': 'scaled_linear', 'use_karras_sigmas': True, 'final_sigmas_type':
    // 'sigma_min'}, set_timesteps(8)
    {"Order3ScaledLinearKarrasSigmaMin",
     "order=3,solver_type=midpoint,lower_order_final=true,euler_at_final=false",
     "beta_schedule=scaled_linear,beta_start=0.00085,beta_end=0.012",
     "karras",
     "min",
     "epsilon",
     8,
     -1,
     {999, 890, 746, 549, 299, 90, 12, 0},
     {14.614641229333627, 7.9029350442827342, 4.0277375131088213, 1.9103565118234871,
      0.82886773686534843, 0.32111952019902151, 0.10719839329209689, 0.029167158151720381,
      0.029167158151720367},
     1488.7749590575847,
     {-3.5818231081257159, -3.5682373312836897, 1.6034624641562727, 2.0508707007128315,
      1.9342872579909758, 2.0524470235465264},
     1488.77307,
     {-3.58181906, -3.56823373, 1.60346091, 2.05087018, 1.934286, 2.05244637}},
    // Order2HeunKarrasSigmaMinNoLowerFinal: {'solver_type': 'heun', 'use_karras_sigmas': True,
    // 'final_sigmas_type': 'sigma_min', 'lower_order_final': False}, set_timesteps(10)
    {"Order2HeunKarrasSigmaMinNoLowerFinal",
     "order=2,solver_type=heun,lower_order_final=false,euler_at_final=false",
     "",
     "karras",
     "min",
     "epsilon",
     10,
     -1,
     {999, 937, 864, 775, 663, 511, 301, 102, 18, 0},
     {157.40728081040749, 85.710522387849778, 44.047404875790811, 21.105410301025287,
      9.2746119511156753, 3.6525679190903184, 1.2463257094660056, 0.34969256737211857,
      0.073926192554626485, 0.010000500037502566, 0.010000500037502575},
     1050.1610186323276,
     {-3.5425054329405343, -3.5378487319340723, 0.74566341074388243, 2.3708993529447411,
      0.89900856053732381, 2.3234242064236232},
     // diffusers float32 gives NaN here (0/0 at the zero-length last step); we expect its float64
     // values
     1050.16102,
     {-3.54250543, -3.53784873, 0.745663411, 2.37089935, 0.899008561, 2.32342421}},
};

TEST(DpmSolverPPSampler, MatchesDiffusersFloat64) {
  for (const auto& g : kMultistepGolden) testing::check_golden("dpm_solver_pp", g, at::kDouble);
}

TEST(DpmSolverPPSampler, MatchesDiffusersFloat32) {
  for (const auto& g : kMultistepGolden) testing::check_golden("dpm_solver_pp", g, at::kFloat);
}

// ---------------------------------------------------------------------------------------------
// Invariants.

// DPM-Solver++ of order 1 is DDIM with eta = 0 (Lu et al. 2022, Sec. 3).
TEST(DpmSolverPPSampler, OrderOneIsDdimEtaZero) {
  auto sched = make_schedule("discrete");
  for (const char* final : {"zero", "min"}) {
    const TimeGrid grid = testing::dpm_grid(*sched, 12, "linspace", final);
    const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
    SampleContext ctx;
    const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
    const Tensor a =
        make_sampler("dpm_solver_pp", {{"order", "1"}})->sample(testing::model_fn(d), x, grid, ctx);
    const Tensor b = make_sampler("ddim")->sample(testing::model_fn(d), x, grid, ctx);
    testing::ExpectTensorNear(a, b, 1e-12, 1e-10, final);
  }
}

TEST(DpmSolverPPSampler, AliasesConfigAndErrors) {
  EXPECT_EQ(make_sampler("dpmpp_2m")->to_config().at("order"), "2");
  EXPECT_EQ(make_sampler("dpmpp_3m")->to_config().at("order"), "3");
  EXPECT_EQ(make_sampler("dpmpp_3m")->history_size(), 2);
  EXPECT_EQ(make_sampler("dpm_solver_pp", {{"order", "1"}})->history_size(), 0);
  const Config c{{"order", "3"},
                 {"solver_type", "heun"},
                 {"lower_order_final", "false"},
                 {"lower_order_final_below", "20"},
                 {"euler_at_final", "true"},
                 {"third_order", "taylor"}};
  EXPECT_EQ(make_sampler("dpm_solver_pp", c)->to_config(), c);
  EXPECT_ERROR_NAMING(make_sampler("dpm_solver_pp", {{"order", "4"}}), "4");
  EXPECT_ERROR_NAMING(make_sampler("dpm_solver_pp", {{"order", "0"}}), "0");
  EXPECT_ERROR_NAMING(make_sampler("dpm_solver_pp", {{"solver_type", "bogus"}}), "bogus");
  EXPECT_ERROR_NAMING(make_sampler("dpm_solver_pp", {{"lower_order_final_below", "0"}}),
                      "lower_order_final_below");
  EXPECT_ERROR_NAMING(make_sampler("dpm_solver_pp", {{"no_such_key", "1"}}), "no_such_key");
  EXPECT_ERROR_NAMING(make_sampler("dpm_solver_pp", {{"third_order", "cubic"}}), "cubic");
}

// lower_order_final acts below `lower_order_final_below` steps only: at 20 steps the diffusers
// default (15) leaves it off; raised to 25 it makes the last step first order, which for order 2
// is exactly euler_at_final (checked against diffusers in Order2EulerAtFinal20 above).
TEST(DpmSolverPPSampler, LowerOrderFinalThreshold) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 20, "linspace", "min");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  SampleContext ctx;
  const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
  auto run = [&](const Config& c) {
    return make_sampler("dpm_solver_pp", c)->sample(testing::model_fn(d), x, grid, ctx);
  };
  const Tensor euler_final = run({{"euler_at_final", "true"}});
  testing::ExpectTensorNear(run({{"lower_order_final_below", "25"}}), euler_final, 1e-12, 1e-12,
                            "below=25");
  EXPECT_GT((run({}) - euler_final).abs().max().item<double>(),
            1e-6);  // default: full order to the end
}

// A zero-length last step (karras / lu sigmas end on sigma_min and final_sigmas_type="sigma_min"
// repeats it) returns x unchanged for every order and solver type; diffusers computes 0/0 there
// for heun and order 3 (NaN in float32, see Order2HeunKarrasSigmaMinNoLowerFinal).
TEST(DpmSolverPPSampler, ZeroLengthFinalStepKeepsX) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 6, "karras", "min");
  ASSERT_EQ(grid[5].sigma, grid[6].sigma);
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  for (const char* order : {"1", "2", "3"}) {
    for (const char* type : {"midpoint", "heun"}) {
      auto s =
          make_sampler("dpm_solver_pp",
                       {{"order", order}, {"solver_type", type}, {"lower_order_final", "false"}});
      Tensor before;
      SampleContext ctx;
      ctx.on_step = [&](const StepInfo& info) {
        if (info.step.index == 4) before = info.x.clone();
      };
      const Tensor out =
          s->sample(testing::model_fn(d), testing::dummy_sample_deter(at::kDouble), grid, ctx);
      ASSERT_TRUE(before.defined());
      EXPECT_TRUE(at::equal(out, before)) << order << " " << type;
    }
  }
}

// Zero terminal SNR (Lin et al. 2024): the first point has alpha = 0, lambda = -inf, h = +inf.
// The first step is then exactly x_1 = sigma_1 * x + alpha_1 * x0 (e^{-h} = 0, sigma_0 = 1), and
// the next step's previous step length is infinite, so its second-order term vanishes.
TEST(DpmSolverPPSampler, StartsAtAlphaZero) {
  auto sched = make_schedule("discrete", {{"rescale_betas_zero_snr", "true"}});
  const TimeGrid grid = make_spacing("trailing")->grid(*sched, 8);
  ASSERT_EQ(grid[0].alpha, 0.0);
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "v_prediction");
  const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
  for (const char* order : {"1", "2", "3"}) {
    auto s = make_sampler("dpm_solver_pp", {{"order", order}});
    Tensor first;
    SampleContext ctx;
    ctx.on_step = [&](const StepInfo& info) {
      if (info.step.index == 0) first = info.x.clone();
    };
    const Tensor out = s->sample(testing::model_fn(d), x, grid, ctx);
    EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << order;
    const Tensor x0 = d(x, grid[0], {}).x0;
    testing::ExpectTensorNear(first, x * grid[1].sigma + x0 * grid[1].alpha, 1e-12, 1e-12, order);
  }
  // Order 2 and 1 agree on the first two steps (the second step's E0 is 0).
  auto two_steps = [&](const char* order) {
    const TimeGrid g3(grid.begin(), grid.begin() + 3);
    SampleContext ctx;
    return make_sampler("dpm_solver_pp", {{"order", order}, {"lower_order_final", "false"}})
        ->sample(testing::model_fn(d), x, g3, ctx);
  };
  testing::ExpectTensorNear(two_steps("2"), two_steps("1"), 1e-12, 1e-12, "second step");
}

}  // namespace
}  // namespace diffuse
