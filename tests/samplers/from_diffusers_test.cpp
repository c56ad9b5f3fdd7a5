// SPDX-License-Identifier: Apache-2.0
// from_diffusers() against diffusers itself: every golden case of the Euler, Euler ancestral and
// Heun tables (diffusers 58eb52c, see k_sampler_fixtures.h for how they were produced) is rebuilt
// from the diffusers config alone — class name + scheduler_config keys + step() arguments — and
// must give the same timesteps, sigmas, initial state and final sample.
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

}  // namespace
}  // namespace diffuse
