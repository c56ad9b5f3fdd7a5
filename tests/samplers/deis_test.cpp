// SPDX-License-Identifier: Apache-2.0
// DEIS (samplers/deis.h) against diffusers DEISMultistepScheduler
// (huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951) through from_diffusers, its
// closed-form coefficients, and its identities.
#include <cmath>

#include "dpm_fixtures.h"

namespace diffuse {
namespace {

// `/usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH deis` (diffusers 58eb52c,
// torch 1.13.1): ConfigGolden rows (tests/samplers/dpm_fixtures.h), the nonlinear model from
// x = 2 * dummy_sample_deter - 1.
const std::vector<testing::ConfigGolden> kDeisGolden = {
    // DeisDefault: DEISMultistepScheduler {}, set_timesteps(10)
    {"DeisDefault",
     "DEISMultistepScheduler",
     "",
     10,
     -1,
     {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549,
      0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
     3986.0969787944578,
     {-12.081757226502933, -12.073194111111601, 2.5648638897273894, 7.3796430343954142,
      3.3963358482429342, 7.3980101566224743},
     3986.09692,
     {-12.0817614, -12.0731993, 2.56486273, 7.37964487, 3.39633727, 7.39801025}},
    // DeisOrder1: DEISMultistepScheduler {'solver_order': 1}, set_timesteps(8)
    {"DeisOrder1",
     "DEISMultistepScheduler",
     "solver_order=1",
     8,
     -1,
     {999, 874, 749, 624, 500, 375, 250, 125},
     {157.40728081040757, 48.166835715703215, 17.24698300991162, 7.1861384447243761,
      3.4429671125258228, 1.8012354352525342, 0.95803371466223142, 0.42994242880767186,
      0.010000500037502575},
     7356.3456353916181,
     {-19.541936765849407, -19.492426155228973, 5.2799880151677927, 11.027404899837462,
      6.2969091944925335, 11.031049340310048},
     7356.34961,
     {-19.5419559, -19.4924393, 5.27999067, 11.0274105, 6.29691696, 11.0310555}},
    // DeisOrder3: DEISMultistepScheduler {'solver_order': 3}, set_timesteps(12)
    {"DeisOrder3",
     "DEISMultistepScheduler",
     "solver_order=3",
     12,
     -1,
     {999, 916, 832, 749, 666, 583, 500, 416, 333, 250, 166, 83},
     {157.40728081040757, 70.450463968351457, 33.521926895647532, 17.24698300991162,
      9.4889202295252151, 5.5600440690522062, 3.4429671125258228, 2.2129225347942048,
      1.4623566969975685, 0.95803371466223142, 0.58364047704056887, 0.28460538324828927,
      0.010000500037502575},
     3698.9867628338725,
     {-11.035701871487271, -10.403684377537951, 2.3526814873556976, 6.9058672976974798,
      3.4342700720044324, 6.9449225578875096},
     3698.97437,
     {-11.0356579, -10.4035807, 2.3526721, 6.90584469, 3.43426251, 6.94490814}},
    // DeisOrder3Long: DEISMultistepScheduler {'solver_order': 3, 'prediction_type':
    // 'v_prediction'}, set_timesteps(20)
    {"DeisOrder3Long",
     "DEISMultistepScheduler",
     "prediction_type=v_prediction,solver_order=3",
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
     134.54008149372601,
     {-0.25567211382960309, -0.25418363618192302, -0.10222403975618992, 0.45379532002250172,
      -0.052942559806051656, 0.45765808933803265},
     134.542542,
     {-0.255675793, -0.254187167, -0.10222394, 0.453808248, -0.0529413559, 0.457671434}},
    // DeisKarras: DEISMultistepScheduler {'use_karras_sigmas': True, 'solver_order': 3},
    // set_timesteps(10)
    {"DeisKarras",
     "DEISMultistepScheduler",
     "solver_order=3,use_karras_sigmas=true",
     10,
     -1,
     {999, 937, 864, 775, 663, 511, 301, 102, 18, 0},
     {157.40728081040749, 85.710522387849778, 44.047404875790811, 21.105410301025287,
      9.2746119511156753, 3.6525679190903184, 1.2463257094660056, 0.34969256737211857,
      0.073926192554626485, 0.010000500037502566, 0.010000500037502566},
     3754.5357028176895,
     {-9.861892323250629, -9.8596095530830823, 2.1401125113155715, 7.2429105451680504,
      3.3283979358516116, 7.2838926284827554},
     3754.53638,
     {-9.8619194, -9.85963821, 2.14011312, 7.24292469, 3.32839203, 7.28389645}},
    // DeisExponentialSample: DEISMultistepScheduler {'use_exponential_sigmas': True,
    // 'prediction_type': 'sample'}, set_timesteps(10)
    {"DeisExponentialSample",
     "DEISMultistepScheduler",
     "prediction_type=sample,use_exponential_sigmas=true",
     10,
     -1,
     {999, 886, 757, 602, 409, 202, 72, 21, 4, 0},
     {157.40728081040763, 53.788711225864652, 18.380505910805105, 6.2809275373507649,
      2.1462984164249894, 0.73342621212462455, 0.25062405326071002, 0.085642447780628447,
      0.029265462617939036, 0.010000500037502575, 0.010000500037502575},
     375.1953342262301,
     {-0.55994994772458129, -0.55980464985603162, 0.50446128113479383, 0.53573211412497557,
      0.51630651264974747, 0.53585179558941842},
     375.195496,
     {-0.559951305, -0.559805989, 0.504460633, 0.535733283, 0.516306758, 0.535853028}},
    // DeisThresholdLeading: DEISMultistepScheduler {'thresholding': True, 'sample_max_value': 0.8,
    // 'timestep_spacing': 'leading', 'steps_offset': 1}, set_timesteps(10)
    {"DeisThresholdLeading",
     "DEISMultistepScheduler",
     "sample_max_value=0.8,steps_offset=1,thresholding=true,timestep_spacing=leading",
     10,
     -1,
     {901, 811, 721, 631, 541, 451, 361, 271, 181, 91},
     {61.378851490583237, 28.151324312838028, 13.995210056583989, 7.5186820472767977,
      4.3355589172489779, 2.6494379151572613, 1.6802015508177193, 1.0696770680129182,
      0.64376711292560795, 0.31156289773970491, 0.010000500037502575},
     661.32641299244096,
     {-1.0097884032837301, -1.0096842227931044, -0.24070529052820369, 1.0097102679157608,
      1.001922776241488, 1.0097623581610735},
     661.326721,
     {-1.00978911, -1.00968504, -0.24070552, 1.00971103, 1.00192297, 1.00976324}},
    // DeisTrailingNoLowerOrderFinal: DEISMultistepScheduler {'timestep_spacing': 'trailing',
    // 'lower_order_final': False, 'solver_order': 3}, set_timesteps(10)
    {"DeisTrailingNoLowerOrderFinal",
     "DEISMultistepScheduler",
     "lower_order_final=false,solver_order=3,timestep_spacing=trailing",
     10,
     -1,
     {999, 899, 799, 699, 599, 499, 399, 299, 199, 99},
     {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792,
      6.1352088790288821, 3.4241366190440412, 2.030851234838281, 1.2339281159745168,
      0.71927881715008235, 0.33882834898350744, 0.010000500037502575},
     4392.3939171186348,
     {-12.761478104246011, -12.741468849721578, 2.5571428527609492, 7.9908921208249728,
      3.5040487282382475, 7.9417355783902464},
     4392.40137,
     {-12.7614927, -12.7414865, 2.55716324, 7.99087238, 3.5040493, 7.94171762}},
};

TEST(DeisSampler, MatchesDiffusersFloat64) {
  for (const auto& g : kDeisGolden) testing::check_config_golden(g, at::kDouble);
}

TEST(DeisSampler, MatchesDiffusersFloat32) {
  for (const auto& g : kDeisGolden) testing::check_config_golden(g, at::kFloat);
}

// diffusers' own full loops (tests/schedulers/test_scheduler_deis.py at 58eb52c),
// `tests/reference/new_solvers.py --diffusers PATH deis --suite`.
const testing::SuiteGolden kDeisSuite[] = {
    // deis test_full_loop_no_noise: DEISMultistepScheduler {'num_train_timesteps': 1000,
    // 'beta_start': 0.0001, 'beta_end': 0.02, 'beta_schedule': 'linear', 'solver_order': 2}
    {"deis test_full_loop_no_noise", "DEISMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,num_train_timesteps=1000,solver_order=2",
     -1, 0.23916, 183.67619005224157, 183.6763},
    // deis test_full_loop_with_v_prediction: DEISMultistepScheduler {'num_train_timesteps': 1000,
    // 'beta_start': 0.0001, 'beta_end': 0.02, 'beta_schedule': 'linear', 'solver_order': 2,
    // 'prediction_type': 'v_prediction'}
    {"deis test_full_loop_with_v_prediction", "DEISMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,num_train_timesteps=1000,prediction_"
     "type=v_prediction,solver_order=2",
     -1, 0.091, 69.943617233708522, 69.9436493},
    // deis test_full_loop_with_noise: DEISMultistepScheduler {'num_train_timesteps': 1000,
    // 'beta_start': 0.0001, 'beta_end': 0.02, 'beta_schedule': 'linear', 'solver_order': 2},
    // t_start 8
    {"deis test_full_loop_with_noise", "DEISMultistepScheduler",
     "beta_end=0.02,beta_schedule=linear,beta_start=0.0001,num_train_timesteps=1000,solver_order=2",
     8, 0.41054, 315.3013058837509, 315.301636},
};

TEST(DeisSampler, DiffusersSuiteFullLoops) {
  for (const auto& g : kDeisSuite) {
    testing::check_suite_golden(g, at::kDouble);
    testing::check_suite_golden(g, at::kFloat);
  }
}

// The coefficients integrate eps polynomials in log rho exactly: for eps(r) = (log r)^m, m < k,
// sum_j c_j (log rho_j)^m equals the integral of (log r)^m over [rho, rho'].
TEST(DeisSampler, CoefficientsIntegratePolynomialsInLogRho) {
  auto exact = [](int m, double a, double b) {  // integral of (log r)^m dr over [a, b]
    auto F = [m](double r) {
      const double l = std::log(r);
      if (m == 0) return r;
      if (m == 1) return r * (l - 1);
      return r * (l * l - 2 * l + 2);
    };
    return F(b) - F(a);
  };
  for (const auto& nodes : std::vector<std::vector<double>>{{3.0}, {3.0, 5.0}, {3.0, 5.0, 9.0}}) {
    const auto c = DeisSampler::coefficients(nodes, 1.5);
    for (size_t m = 0; m < nodes.size(); ++m) {
      double q = 0;
      for (size_t j = 0; j < nodes.size(); ++j)
        q += c[j] * std::pow(std::log(nodes[j]), static_cast<double>(m));
      EXPECT_NEAR(q, exact(static_cast<int>(m), 3.0, 1.5), 1e-12)
          << "degree " << m << " with " << nodes.size() << " nodes";
    }
  }
  // Onto rho = 0 the integral of 1 is -rho.
  EXPECT_NEAR(
      DeisSampler::coefficients({3.0, 5.0}, 0.0)[0] + DeisSampler::coefficients({3.0, 5.0}, 0.0)[1],
      -3.0, 1e-12);
}

TEST(DeisSampler, OrderOneIsDdimAndErrors) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 12, "linspace", "zero");
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  SampleContext ctx;
  const Tensor x = testing::dummy_sample_deter(at::kDouble) * 2 - 1;
  testing::ExpectTensorNear(
      make_sampler("deis", {{"order", "1"}})->sample(testing::model_fn(d), x, grid, ctx),
      make_sampler("ddim")->sample(testing::model_fn(d), x, grid, ctx), 1e-12, 1e-10, "order 1");
  EXPECT_TRUE(
      at::isfinite(
          make_sampler("deis", {{"order", "3"}})->sample(testing::model_fn(d), x, grid, ctx))
          .all()
          .item<bool>());
  const Config c{{"order", "3"}, {"lower_order_final", "false"}};
  EXPECT_EQ(make_sampler("deis", c)->to_config(), c);
  for (const char* bad : {"0", "4"}) EXPECT_THROW(make_sampler("deis", {{"order", bad}}), Error);
  EXPECT_THROW(from_diffusers("DEISMultistepScheduler", {{"use_flow_sigmas", "true"}}), Error);
  EXPECT_THROW(from_diffusers("DEISMultistepScheduler", {{"algorithm_type", "sde"}}), Error);
}

}  // namespace
}  // namespace diffuse
