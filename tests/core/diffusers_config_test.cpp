// SPDX-License-Identifier: Apache-2.0
// from_diffusers(): diffusers scheduler configs map onto schedule + spacing + sampler. The grids
// are checked against set_timesteps() of diffusers 58eb52c (the diffusers test-suite,
// tests/schedulers/test_scheduler_*.py at 58eb52c, and the timesteps tests/reference/ddim_ddpm.py
// and dpm_solver.py print); the samplers' numerics are checked in tests/samplers/.
#include "test_util.h"

#include <diffuse/diffusers.h>

namespace diffuse {
namespace {

std::vector<double> times(const TimeGrid& g) {
  std::vector<double> out;
  for (size_t i = 0; i + 1 < g.size(); ++i) out.push_back(g[i].t);
  return out;
}

TEST(FromDiffusers, DdimDefaultsAndStepsOffset) {
  auto s = from_diffusers("DDIMScheduler", {});
  EXPECT_EQ(s.sampler->name(), "ddim");
  EXPECT_TRUE(s.denoiser_options.clip_sample);  // DDIMScheduler's default clip_sample=True
  EXPECT_EQ(times(s.grid(10)),
            (std::vector<double>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0}));
  EXPECT_TRUE(s.grid(10).back().is_clean());  // set_alpha_to_one=True
  // test_steps_offset: steps_offset=1, set_timesteps(5) -> [801, 601, 401, 201, 1].
  auto o = from_diffusers("DDIMScheduler", {{"steps_offset", "1"}});
  EXPECT_EQ(times(o.grid(5)), (std::vector<double>{801, 601, 401, 201, 1}));
  auto n = from_diffusers("DDIMScheduler", {{"set_alpha_to_one", "false"}});
  EXPECT_EQ(n.grid(10).back(), n.schedule->at(0));
}

/// diffusers' scheduler-suite loop: x = step(model(x, t), t, x) over every timestep, from the
/// suite's dummy_sample_deter with its dummy model sample * t / (t + 1).
double suite_mean(const DiffusersScheduler& s, int64_t steps, at::ScalarType dtype = at::kDouble,
                  NoiseSource* noise = nullptr) {
  const Tensor x = at::arange(768, at::TensorOptions().dtype(dtype))
                       .reshape({3, 8, 8, 4})
                       .div(768)
                       .permute({3, 0, 1, 2});
  const Denoiser d = s.denoiser([](const Tensor& xx, const Tensor& t, const Conditioning&) {
    const Tensor tt = t.view({-1, 1, 1, 1});
    return xx * tt / (tt + 1);
  });
  SampleContext ctx;
  ctx.schedule = s.schedule.get();
  ctx.noise = noise;
  ModelFn fn = [&d](const Tensor& xx, const TimePoint& at, const StepContext&) {
    return d(xx, at, {});
  };
  return s.sampler->sample(fn, x.contiguous(), s.grid(steps), ctx).abs().mean().item<double>();
}

// Expected means: the asserts of diffusers 58eb52c tests/schedulers/test_scheduler_*.py, tolerance
// 1e-3.
TEST(FromDiffusers, ReproducesTheDiffusersSuiteThroughTheFrontEnd) {
  EXPECT_NEAR(suite_mean(from_diffusers("DDIMScheduler", {}), 10), 0.223967, 1e-3);
  EXPECT_NEAR(
      suite_mean(from_diffusers("DDIMScheduler", {{"prediction_type", "v_prediction"}}), 10),
      0.0684, 1e-3);
  EXPECT_NEAR(suite_mean(from_diffusers("DDIMScheduler",
                                        {{"set_alpha_to_one", "false"}, {"beta_start", "0.01"}}),
                         10),
              0.1941, 1e-3);
  const Config dpm{{"lower_order_final", "false"}, {"final_sigmas_type", "sigma_min"}};
  EXPECT_NEAR(suite_mean(from_diffusers("DPMSolverMultistepScheduler", dpm), 10), 0.3301, 1e-3);
  EXPECT_NEAR(suite_mean(from_diffusers("DPMSolverMultistepScheduler", dpm), 10, at::kFloat),
              0.3301, 1e-3);
  Config karras_v = dpm;
  karras_v["prediction_type"] = "v_prediction";
  karras_v["use_karras_sigmas"] = "true";
  EXPECT_NEAR(suite_mean(from_diffusers("DPMSolverMultistepScheduler", karras_v), 10), 0.2096,
              1e-3);
  Config lu_v = dpm;
  lu_v["prediction_type"] = "v_prediction";
  lu_v["use_lu_lambdas"] = "true";
  EXPECT_NEAR(suite_mean(from_diffusers("DPMSolverMultistepScheduler", lu_v), 10), 0.1554, 1e-3);
  Config thres = dpm;
  thres["thresholding"] = "true";
  thres["dynamic_thresholding_ratio"] = "0.87";
  thres["sample_max_value"] = "0.5";
  EXPECT_NEAR(suite_mean(from_diffusers("DPMSolverMultistepScheduler", thres), 10), 1.1364, 1e-3);
  // DDPM test_full_loop_no_noise / with_v_prediction: 1000 leading steps, torch.manual_seed(0)
  // noise.
  auto g = make_torch_noise(0);
  EXPECT_NEAR(suite_mean(from_diffusers("DDPMScheduler", {}), 1000, at::kFloat, g.get()), 0.3372,
              1e-3);
  g = make_torch_noise(0);
  EXPECT_NEAR(suite_mean(from_diffusers("DDPMScheduler", {{"prediction_type", "v_prediction"}}),
                         1000, at::kFloat, g.get()),
              0.2631, 1e-3);
  const Config single{{"final_sigmas_type", "sigma_min"}};
  EXPECT_NEAR(suite_mean(from_diffusers("DPMSolverSinglestepScheduler", single), 10), 0.2791, 1e-3);
  Config single_kv = single;
  single_kv["use_karras_sigmas"] = "true";
  single_kv["prediction_type"] = "v_prediction";
  EXPECT_NEAR(suite_mean(from_diffusers("DPMSolverSinglestepScheduler", single_kv), 10), 0.0649,
              1e-3);
}

TEST(FromDiffusers, DpmGridsMatchSetTimesteps) {
  // DPMSolverMultistepScheduler.set_timesteps(10), linspace: [999, 899, ..., 500, ..., 100].
  auto s = from_diffusers("DPMSolverMultistepScheduler", {{"final_sigmas_type", "sigma_min"}});
  EXPECT_EQ(times(s.grid(10)),
            (std::vector<double>{999, 899, 799, 699, 599, 500, 400, 300, 200, 100}));
  EXPECT_EQ(s.grid(10).back(), s.schedule->at(0));
  EXPECT_TRUE(from_diffusers("DPMSolverMultistepScheduler", {}).grid(10).back().is_clean());
  EXPECT_EQ(from_diffusers("DPMSolverMultistepScheduler", {{"algorithm_type", "sde-dpmsolver++"}})
                .sampler->name(),
            "dpm_solver_pp_sde");
  EXPECT_EQ(from_diffusers("DPMSolverMultistepScheduler", {{"algorithm_type", "dpmsolver"}})
                .sampler->name(),
            "dpm_solver");
  EXPECT_EQ(from_diffusers("DPMSolverSinglestepScheduler", {{"algorithm_type", "dpmsolver"}})
                .sampler->to_config()
                .at("predict_x0"),
            "false");
  EXPECT_THROW(
      from_diffusers("DPMSolverSinglestepScheduler", {{"algorithm_type", "sde-dpmsolver++"}}),
      Error);
  EXPECT_THROW(from_diffusers("DPMSolverMultistepScheduler", {{"algorithm_type", "sde-dpmsolver"}}),
               Error);
  // lambda_min_clipped: the grid starts at the last training step kept (goldens in
  // tests/samplers/from_diffusers_test.cpp); with trailing diffusers returns fewer steps.
  EXPECT_ERROR_NAMING(
      from_diffusers("DPMSolverMultistepScheduler",
                     {{"lambda_min_clipped", "-5.1"}, {"timestep_spacing", "trailing"}}),
      "lambda_min_clipped=-5.1 with timestep_spacing=trailing");
  EXPECT_EQ(from_diffusers("DPMSolverMultistepScheduler", {{"lambda_min_clipped", "-inf"}})
                .grid(10)
                .front()
                .t,
            999);
  EXPECT_ERROR_NAMING(
      make_spacing("linspace", {{"lambda_min", "30"}})->grid(*make_schedule("discrete"), 4),
      "clips every training timestep");
  EXPECT_ERROR_NAMING(
      make_spacing("linspace", {{"lambda_min", "-3"}})->grid(*make_schedule("vp"), 4),
      "needs a discrete schedule");
}

TEST(FromDiffusers, UnknownClassesAndKeysAreErrors) {
  EXPECT_THROW(from_diffusers("IPNDMScheduler", {}), Error);
  EXPECT_THROW(from_diffusers("DDIMScheduler", {{"solver_order", "2"}}), Error);
  EXPECT_NO_THROW(from_diffusers("DDIMScheduler", {{"solver_order", "2"}}, /*strict=*/false));
  EXPECT_NO_THROW(from_diffusers("DDIMScheduler", {{"_class_name", "DDIMScheduler"}}));
  EXPECT_THROW(from_diffusers("DDIMScheduler", {{"timestep_spacing", "quadratic"}}), Error);
}

}  // namespace
}  // namespace diffuse
