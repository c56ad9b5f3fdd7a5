// SPDX-License-Identifier: Apache-2.0
// SDE-DPM-Solver++ (samplers/dpm_solver_pp_sde.h) against diffusers DPMSolverMultistepScheduler with
// algorithm_type="sde-dpmsolver++" (huggingface/diffusers 58eb52c0803ea9af3abec60841c2a093bdf1f951).
#include "dpm_fixtures.h"

namespace diffuse {
namespace {

using testing::DpmGolden;

// diffusers DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
// beta_schedule="linear", algorithm_type="sde-dpmsolver++", **changes), set_timesteps(steps), loop
// over scheduler.timesteps: g = torch.Generator().manual_seed(seed) once, then per step
// `z = torch.randn(x.shape, generator=g, dtype=torch.float32)` and
// `x = step(model(x, t), t, x, variance_noise=z).prev_sample` (the same draws step() makes itself
// from `generator=g`; passing them lets the float64 run use the float32 draws cast to double,
// which is what make_torch_noise(seed) gives a float64 sample). Model and start as in
// dpm_solver_pp_test.cpp: 0.5 x t / (t + 1) + 0.3 sin(3 x + t / 250), x = 2 * dummy_sample_deter - 1.
// float64: a copy of scheduling_dpmsolver_multistep.py with float32 -> float64. Generated
// by tests/reference/dpm_solver.py sde (see tests/reference/README.md).
const DpmGolden kGolden[] = {
// Sde2Defaults: {}, set_timesteps(10), seed 0
{"Sde2Defaults", "order=2,solver_type=midpoint,lower_order_final=true,euler_at_final=false", "", "linspace", "zero", "epsilon", 10, 0,
  {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
  {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792, 6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549, 0.72359125943039693, 0.3422596990130316, 0},
  1218.6683087469969, {-2.4457204578144238, 0.020617257506599911, -1.2053833179878322, 1.6037674297660864, 0.050887471182396421, -0.12240525149853086},
  1218.66895, {-2.44571638, 0.020616658, -1.20539331, 1.60376751, 0.0508912168, -0.122405328}},
// Sde2HeunSigmaMin: {'solver_type': 'heun', 'final_sigmas_type': 'sigma_min', 'lower_order_final': False}, set_timesteps(10), seed 1
{"Sde2HeunSigmaMin", "order=2,solver_type=heun,lower_order_final=false,euler_at_final=false", "", "linspace", "min", "epsilon", 10, 1,
  {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
  {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792, 6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549, 0.72359125943039693, 0.3422596990130316, 0.010000500037502575},
  1449.8663712838943, {2.5492806631490512, 4.9929933708656149, -1.2121946697223769, -1.302332660930416, 0.63150236749290578, 0.004771851768328025},
  1449.83167, {2.5492084, 4.99290419, -1.21211374, -1.302248, 0.631513834, 0.00475178566}},
// Sde1Zero: {'solver_order': 1}, set_timesteps(10), seed 2
{"Sde1Zero", "order=1,solver_type=midpoint,lower_order_final=true,euler_at_final=false", "", "linspace", "zero", "epsilon", 10, 2,
  {999, 899, 799, 699, 599, 500, 400, 300, 200, 100},
  {157.40728081040757, 60.271410067824064, 25.528481389204856, 11.939519622754792, 6.1352088790288821, 3.4429671125258228, 2.0410870026144945, 1.240161045545549, 0.72359125943039693, 0.3422596990130316, 0},
  2488.7329589577421, {-8.0530134823361443, -3.6747096317880792, 4.4502219329405222, -1.7373512081592883, 0.93894297408290739, 4.573538847263821},
  2488.73315, {-8.05302143, -3.67471027, 4.45021963, -1.73735154, 0.93894279, 4.57353783}},
};

TEST(DpmSolverPPSdeSampler, MatchesDiffusersFloat64) {
  for (const auto& g : kGolden) testing::check_golden("dpm_solver_pp_sde", g, at::kDouble);
}

TEST(DpmSolverPPSdeSampler, MatchesDiffusersFloat32) {
  for (const auto& g : kGolden) testing::check_golden("dpm_solver_pp_sde", g, at::kFloat);
}

Tensor run_sde(const Sampler& s, const TimeGrid& grid, NoiseSource* noise) {
  const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
  SampleContext ctx;
  ctx.noise = noise;
  return s.sample(testing::model_fn(d), testing::dummy_sample_deter(at::kDouble) * 2 - 1, grid, ctx);
}

// diffusers draws one noise tensor per step, also on a final step onto sigma = 0 where it is
// multiplied by zero; keeping that keeps the generator stream aligned with diffusers.
TEST(DpmSolverPPSdeSampler, DrawsOneNoisePerStep) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 6, "linspace", "zero");
  auto s = make_sampler("dpmpp_2m_sde");
  EXPECT_TRUE(s->is_stochastic());
  auto draws = [](int n) {
    std::vector<Tensor> v;
    for (int i = 0; i < n; ++i) v.push_back(at::randn({4, 3, 8, 8}, at::kDouble));
    return v;
  };
  auto exact = make_replay_noise(draws(6));
  EXPECT_NO_THROW(run_sde(*s, grid, exact.get()));
  auto short_by_one = make_replay_noise(draws(5));
  EXPECT_THROW(run_sde(*s, grid, short_by_one.get()), Error);
  EXPECT_THROW(run_sde(*s, grid, nullptr), Error);  // stochastic: needs a noise source
}

TEST(DpmSolverPPSdeSampler, SeedDeterminesResult) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 8, "linspace", "zero");
  auto s = make_sampler("dpm_solver_pp_sde");
  auto a = make_torch_noise(7), b = make_torch_noise(7), c = make_torch_noise(8);
  const Tensor xa = run_sde(*s, grid, a.get()), xb = run_sde(*s, grid, b.get()), xc = run_sde(*s, grid, c.get());
  EXPECT_TRUE(at::equal(xa, xb));
  EXPECT_GT((xa - xc).abs().max().item<double>(), 1e-3);
}

// A step of zero length (karras sigmas with final "min") leaves x unchanged: its noise weight
// sigma sqrt(1 - e^{-2h}) is 0.
TEST(DpmSolverPPSdeSampler, ZeroLengthFinalStepKeepsX) {
  auto sched = make_schedule("discrete");
  const TimeGrid grid = testing::dpm_grid(*sched, 5, "karras", "min");
  for (const char* type : {"midpoint", "heun"}) {
    auto s = make_sampler("dpm_solver_pp_sde", {{"solver_type", type}, {"lower_order_final", "false"}});
    auto noise = make_torch_noise(3);
    Tensor before;
    const Denoiser d = testing::make_denoiser(testing::nonlinear_network(), "epsilon");
    SampleContext ctx;
    ctx.noise = noise.get();
    ctx.on_step = [&](const StepInfo& info) {
      if (info.step.index == 3) before = info.x.clone();
    };
    const Tensor out = s->sample(testing::model_fn(d), testing::dummy_sample_deter(at::kDouble), grid, ctx);
    EXPECT_TRUE(at::equal(out, before)) << type;
  }
}

TEST(DpmSolverPPSdeSampler, AliasConfigAndErrors) {
  EXPECT_EQ(make_sampler("dpmpp_2m_sde")->to_config().at("order"), "2");
  const Config c{{"order", "1"}, {"solver_type", "heun"}, {"lower_order_final", "false"},
                 {"lower_order_final_below", "10"}, {"euler_at_final", "true"}};
  EXPECT_EQ(make_sampler("dpm_solver_pp_sde", c)->to_config(), c);
  try {
    make_sampler("dpm_solver_pp_sde", {{"order", "3"}});
    ADD_FAILURE() << "order 3 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("got 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_sampler("dpm_solver_pp_sde", {{"solver_type", "euler"}}), Error);
}

}  // namespace
}  // namespace diffuse
