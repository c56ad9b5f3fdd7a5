// SPDX-License-Identifier: Apache-2.0
// Fixtures shared by the DPM-Solver++ tests: diffusers' scheduler-test inputs, the grids diffusers'
// DPMSolver*Scheduler.set_timesteps builds, a loop that starts in the middle of a grid (diffusers'
// step_index semantics), and golden-value tables produced by running diffusers itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"

#include <diffuse/diffusers.h>

namespace diffuse::testing {

/// diffusers SchedulerCommonTest.dummy_sample_deter: element (b,c,h,w) = (c*256 + h*32 + w*4 + b) /
/// 768.
inline Tensor dummy_sample_deter(at::ScalarType dtype) {
  return at::arange(768, at::TensorOptions().dtype(dtype))
      .reshape({3, 8, 8, 4})
      .div(768)
      .permute({3, 0, 1, 2})
      .contiguous();
}
/// dummy_noise_deter: the same on 767 .. 0.
inline Tensor dummy_noise_deter(at::ScalarType dtype) {
  return at::arange(767, -1, -1, at::TensorOptions().dtype(dtype))
      .reshape({3, 8, 8, 4})
      .div(768)
      .permute({3, 0, 1, 2})
      .contiguous();
}
/// diffusers' dummy_model: sample * t / (t + 1), t cast to the sample dtype.
inline Network dummy_network() {
  return [](const Tensor& x, const Tensor& t, const Conditioning&) {
    const Tensor tt = t.view({-1, 1, 1, 1});
    return x * tt / (tt + 1);
  };
}
/// A nonlinear test network for the golden runs beyond diffusers' suite (same formula in
/// tests/reference/dpm_solver.py): 0.5 x t / (t + 1) + 0.3 sin(3 x + t / 250).
inline Network nonlinear_network() {
  return [](const Tensor& x, const Tensor& t, const Conditioning&) {
    const Tensor tt = t.view({-1, 1, 1, 1});
    return x * tt / (tt + 1) * 0.5 + at::sin(x * 3 + tt / 250) * 0.3;
  };
}

/// The grids of diffusers' DPMSolverMultistep/SinglestepScheduler.set_timesteps (58eb52c):
/// "linspace": linspace(0, T-1, n+1).round()[::-1][:-1] (our linspace, include_t_min=false);
/// "karras": use_karras_sigmas (timesteps rounded, sigmas kept); "exponential": use_lu_lambdas
/// (sigma = exp(linspace(log sigma_max, log sigma_min, n)), timesteps rounded). final "min" is
/// final_sigmas_type="sigma_min" (sigma of t=0), "zero" is final_sigmas_type="zero".
inline TimeGrid dpm_grid(const NoiseSchedule& s, int64_t n, const std::string& spacing,
                         const std::string& final) {
  if (spacing == "linspace")
    return make_spacing("linspace", {{"include_t_min", "false"}, {"final", final}})->grid(s, n);
  return make_spacing(spacing, {{"round_t", "true"}, {"final", final}})->grid(s, n);
}

inline Denoiser make_denoiser(Network net, const std::string& prediction) {
  DenoiserOptions o;
  o.prediction_type = parse_parameterization(prediction);
  return Denoiser(std::move(net), o);
}

inline ModelFn model_fn(const Denoiser& d) {
  return [&d](const Tensor& x, const TimePoint& at, const StepContext&) { return d(x, at, {}); };
}

/// diffusers' loop over `timesteps[start:]` after set_timesteps(n): the driver started at step
/// `start` keeps the step indices of the whole grid.
inline Tensor run_from(const Sampler& s, const ModelFn& fn, Tensor x, const TimeGrid& grid,
                       int64_t start, SampleContext& ctx) {
  return s.sample(fn, x, grid, ctx, start);
}

/// One golden run of diffusers on nonlinear_network() from x = 2 * dummy_sample_deter - 1:
/// sampler options, discrete-schedule options, grid, prediction type, steps, noise seed (-1: none),
/// diffusers' timesteps and sigmas, then sum |x| and x.flatten()[0, 1, 100, 383, 500, 767] of the
/// final sample, from the float64 run and the stock float32 run.
struct DpmGolden {
  const char* name;
  const char* sampler;
  const char* schedule;
  const char* spacing;
  const char* final;
  const char* prediction;
  int64_t steps;
  int64_t seed;
  std::vector<int64_t> timesteps;
  std::vector<double> sigmas;
  double sum64;
  std::vector<double> elems64;
  double sum32;
  std::vector<double> elems32;
};

inline Tensor golden_elems(const Tensor& x) {
  return x.reshape({-1})
      .index_select(0, at::tensor({0, 1, 100, 383, 500, 767}, at::kLong))
      .to(at::kDouble);
}

/// The final sample of a golden run (DpmGolden or ConfigGolden: sum64 / elems64 / sum32 /
/// elems32): float64 to 1e-6 relative, float32 to 1e-4.
template <class Golden>
void expect_golden_sample(const Tensor& out, const Golden& g, at::ScalarType dtype) {
  ASSERT_EQ(out.scalar_type(), dtype);
  const bool f64 = dtype == at::kDouble;
  const double rtol = f64 ? 1e-6 : 1e-4;
  const auto& elems = f64 ? g.elems64 : g.elems32;
  // float32: diffusers' float32 tables and coefficients round differently from ours, so small
  // elements get an absolute tolerance of 1e-4 of the largest one.
  double scale = 0;
  for (double e : elems) scale = std::max(scale, std::abs(e));
  ExpectTensorNear(golden_elems(out), at::tensor(elems, at::kDouble), f64 ? 1e-9 : 1e-4 * scale,
                   rtol, "elements");
  EXPECT_NEAR(out.abs().sum().item<double>(), f64 ? g.sum64 : g.sum32,
              rtol * (f64 ? g.sum64 : g.sum32));
}

/// Runs one golden case with sampler `key` in `dtype` and checks the grid (timesteps exactly,
/// sigmas to 1e-12) and the result (float64: 1e-6 relative; float32: 1e-4 relative).
inline void check_golden(const std::string& key, const DpmGolden& g, at::ScalarType dtype) {
  SCOPED_TRACE(std::string(g.name) + (dtype == at::kDouble ? " float64" : " float32"));
  auto sched = make_schedule("discrete", parse_config(g.schedule));
  const TimeGrid grid = dpm_grid(*sched, g.steps, g.spacing, g.final);
  ASSERT_EQ(grid.size(), g.sigmas.size());
  for (size_t i = 0; i < g.timesteps.size(); ++i)
    EXPECT_EQ(grid[i].t, static_cast<double>(g.timesteps[i])) << i;
  for (size_t i = 0; i < g.sigmas.size(); ++i)
    EXPECT_NEAR(grid[i].sigma_ve(), g.sigmas[i], 1e-12 * g.sigmas[i]) << i;
  const Denoiser d = make_denoiser(nonlinear_network(), g.prediction);
  SampleContext ctx;
  ctx.schedule = sched.get();
  std::unique_ptr<NoiseSource> noise;
  if (g.seed >= 0) {
    noise = make_torch_noise(static_cast<uint64_t>(g.seed));
    ctx.noise = noise.get();
  }
  const Tensor x = dummy_sample_deter(dtype) * 2 - 1;
  const Tensor out = make_sampler(key, parse_config(g.sampler))->sample(model_fn(d), x, grid, ctx);
  expect_golden_sample(out, g, dtype);
}

/// One run of diffusers through from_diffusers (tests/reference/flow_match.py and dpm_options.py):
/// class, from_diffusers config (with mu when the case passes it to set_timesteps), steps, noise
/// seed (-1: none), diffusers' timesteps and sigmas (float64 run; flow sigma on the flow schedule,
/// sigma_ve elsewhere), sum |x| and x.flatten()[0, 1, 100, 383, 500, 767] of the float64 and
/// float32 runs.
struct ConfigGolden {
  const char* name;
  const char* cls;
  const char* config;
  int64_t steps;
  int64_t seed;
  std::vector<double> timesteps;
  std::vector<double> sigmas;
  double sum64;
  std::vector<double> elems64;
  double sum32;
  std::vector<double> elems32;
};

/// from_diffusers(cls, config): grid (model times and sigmas to 1e-12) and final sample from
/// x = 2 * dummy_sample_deter - 1 in float64 (1e-6 relative) or float32 (1e-4). The schedulers
/// covered start from the noise itself (init_noise_sigma = 1), the EDM ones from
/// initial_state(x) (x * init_noise_sigma).
inline void check_config_golden(const ConfigGolden& g, at::ScalarType dtype) {
  SCOPED_TRACE(std::string(g.name) + (dtype == at::kDouble ? " float64" : " float32"));
  const DiffusersScheduler s = from_diffusers(g.cls, parse_config(g.config));
  const bool flow = s.schedule->rectified_flow();
  const TimeGrid grid = s.grid(g.steps);
  ASSERT_EQ(grid.size(), g.sigmas.size());
  for (size_t i = 0; i < g.timesteps.size(); ++i)
    EXPECT_NEAR(grid[i].t, g.timesteps[i], 1e-12 * g.timesteps[i]) << "timestep " << i;
  for (size_t i = 0; i < g.sigmas.size(); ++i) {
    const double sigma = flow ? grid[i].sigma : grid[i].sigma_ve();
    if (std::isinf(g.sigmas[i])) {
      EXPECT_EQ(sigma, g.sigmas[i]) << "sigma " << i;  // zero terminal SNR
      continue;
    }
    EXPECT_NEAR(sigma, g.sigmas[i], 1e-12 * g.sigmas[i]) << "sigma " << i;
    if (flow) {
      EXPECT_EQ(grid[i].alpha, 1.0 - grid[i].sigma) << i;
    }
  }
  const Denoiser d = s.denoiser(nonlinear_network());
  SampleContext ctx;
  ctx.schedule = s.schedule.get();
  std::unique_ptr<NoiseSource> noise;
  if (g.seed >= 0) {
    noise = make_torch_noise(static_cast<uint64_t>(g.seed));
    ctx.noise = noise.get();
  }
  const Tensor base = dummy_sample_deter(dtype) * 2 - 1;
  const Tensor x = s.initial_state(base, g.steps);
  // EDM and sigma-type schedulers start from noise * init_noise_sigma; the others from the noise
  // itself.
  if (!s.denoiser_options.edm_preconditioning && !s.init_noise_is_sigma_max) {
    EXPECT_TRUE(at::equal(x, base));
  }
  const Tensor out = s.sampler->sample(model_fn(d), x, grid, ctx);
  // The k-diffusion-style classes return the VE state x / alpha; it differs from ours only when the
  // run ends above sigma = 0 (final_sigmas_type="sigma_min", log_linear).
  const std::string cls = g.cls;
  const bool ve_units = cls.rfind("FlowMatch", 0) != 0 &&
                        (cls.find("Euler") != std::string::npos || cls.rfind("Heun", 0) == 0 ||
                         cls.rfind("LMS", 0) == 0 || cls.rfind("KDPM2", 0) == 0);
  expect_golden_sample(ve_units ? out / grid.back().alpha : out, g, dtype);
}

}  // namespace diffuse::testing

namespace diffuse::testing {

/// One of diffusers' own full loops through from_diffusers (tests/reference/new_solvers.py suite):
/// class, config, the start index of a with_noise loop (-1: the whole loop), the suite's expected
/// mean |x| (tolerance 1e-3; -1: the suite states none), sum |x| of diffusers in float64 and
/// stock float32.
struct SuiteGolden {
  const char* name;
  const char* cls;
  const char* config;
  int64_t t_start;
  double mean;
  double sum64;
  double sum32;
};

/// Runs a SuiteGolden loop: the dummy model from dummy_sample_deter, set_timesteps(10); with_noise
/// loops start from alpha x + sigma dummy_noise_deter at grid[t_start] and keep the whole grid's
/// step indices.
inline void check_suite_golden(const SuiteGolden& g, at::ScalarType dtype) {
  SCOPED_TRACE(std::string(g.name) + (dtype == at::kDouble ? " float64" : " float32"));
  const DiffusersScheduler s = from_diffusers(g.cls, parse_config(g.config));
  const TimeGrid grid = s.grid(10);
  const Denoiser d = s.denoiser(dummy_network());
  SampleContext ctx;
  ctx.schedule = s.schedule.get();
  Tensor x = dummy_sample_deter(dtype);
  const int64_t start = std::max<int64_t>(g.t_start, 0);
  if (g.t_start >= 0) x = x * grid[start].alpha + dummy_noise_deter(dtype) * grid[start].sigma;
  const Tensor out = s.sampler->sample(model_fn(d), x, grid, ctx, start);
  ASSERT_EQ(out.scalar_type(), dtype);
  const double sum = out.abs().sum().item<double>();
  if (g.mean >= 0) {
    EXPECT_NEAR(out.abs().mean().item<double>(), g.mean, 1e-3);
  }
  const bool f64 = dtype == at::kDouble;
  EXPECT_NEAR(sum, f64 ? g.sum64 : g.sum32, (f64 ? 1e-6 : 1e-4) * g.sum64);
}

}  // namespace diffuse::testing
