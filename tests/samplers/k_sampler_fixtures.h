// SPDX-License-Identifier: Apache-2.0
// Fixtures shared by the euler, euler_ancestral and heun tests: diffusers' scheduler-test inputs,
// a driver that reproduces diffusers' test loops step by step, and a table-driven comparison with
// golden values from the real diffusers schedulers (58eb52c) run in float64 and float32.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"

namespace diffuse::testing {

/// diffusers SchedulerCommonTest.dummy_sample_deter: element (b, c, h, w) = (c*256 + h*32 + w*4 +
/// b) / 768.
inline Tensor sample_deter(at::ScalarType dtype) {
  return at::arange(768, at::kFloat)
      .reshape({3, 8, 8, 4})
      .div(768)
      .permute({3, 0, 1, 2})
      .contiguous()
      .to(dtype);
}
/// dummy_noise_deter: the same on arange(768) reversed.
inline Tensor noise_deter(at::ScalarType dtype) {
  return at::arange(768, at::kFloat)
      .flip({0})
      .reshape({3, 8, 8, 4})
      .div(768)
      .permute({3, 0, 1, 2})
      .contiguous()
      .to(dtype);
}
/// diffusers' dummy_model as a plain function: sample * t / (t + 1), t cast to the sample dtype
/// (dpm_fixtures.h has the same as a Network, dummy_network()).
inline Tensor dummy_model_fn(const Tensor& x, const Tensor& t, const Conditioning&) {
  const Tensor tt = t.to(x.scalar_type()).view({-1, 1, 1, 1});
  return x * tt / (tt + 1);
}
/// A smooth, nonlinear, time-dependent network for the golden runs (smooth_model in
/// tests/reference/k_schedulers.py):
/// 0.8 tanh(x) + 0.2 x cos(t / 300).
inline Tensor smooth_network(const Tensor& x, const Tensor& t, const Conditioning&) {
  const Tensor tt = t.to(x.scalar_type()).view({-1, 1, 1, 1});
  return x.tanh() * 0.8 + x * (tt / 300).cos() * 0.2;
}

inline std::unique_ptr<NoiseSchedule> discrete_schedule(int64_t T, double beta_start,
                                                        double beta_end, const std::string& kind,
                                                        const std::string& precision,
                                                        Config extra = {}) {
  extra["num_train_timesteps"] = std::to_string(T);
  extra["beta_start"] = format_double(beta_start);
  extra["beta_end"] = format_double(beta_end);
  extra["beta_schedule"] = kind;
  extra["precision"] = precision;
  return make_schedule("discrete", extra);
}

/// ModelFn calling `d` with network input x / alpha (the VE state) instead of x. Used to reproduce
/// the diffusers test loops, where `sample = scheduler.scale_model_input(sample, t)` overwrites the
/// state: step() then treats the scaled tensor S' as its VE state AND the model saw S'. Our VP
/// state with VE form S' is x = alpha * S', so the network must be fed x / alpha to see S'.
inline ModelFn network_sees_ve_state(const Denoiser& d) {
  return [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d.convert(d.call_network(x / at.alpha, at, {}), x, at);
  };
}

/// Runs the diffusers test loop `for t in timesteps[first:]: sample = scale_model_input(sample, t);
/// sample = step(model(sample, t), t, sample)` with our sampler's step(), one grid step per
/// diffusers timestep. `s` is diffusers' sample (VE by diffusers' reading) at grid[first]; returns
/// the final one.
inline Tensor run_diffusers_test_loop(const Sampler& sampler, const ModelFn& fn,
                                      const TimeGrid& grid, Tensor s, size_t first,
                                      SampleContext& ctx) {
  History history;
  for (size_t i = first; i + 1 < grid.size(); ++i) {
    StepContext st;
    st.index = static_cast<int64_t>(i);
    st.num_steps = static_cast<int64_t>(grid.size()) - 1;
    st.now = grid[i];
    st.next = grid[i + 1];
    st.grid = &grid;
    s = s * grid[i].alpha;  // the test's overwrite: sample = scale_model_input(sample, t)
    const Tensor x = s * grid[i].alpha;  // VP state whose VE form is that overwritten sample
    s = sampler.step(fn, x, st, history, ctx).x / grid[i + 1].alpha;
  }
  return s;
}

/// Summary of a final sample: sum |x|, sum x * linspace(-1, 1, N), and elements 0, 123, 456, 767.
struct SampleStats {
  double abs_sum, weighted_sum;
  std::vector<double> elems;
};

inline SampleStats stats_of(const Tensor& x) {
  const Tensor f = x.to(at::kDouble).reshape({-1});
  const Tensor w = at::linspace(-1, 1, f.numel(), at::TensorOptions().dtype(at::kDouble));
  SampleStats s{f.abs().sum().item<double>(), (f * w).sum().item<double>(), {}};
  for (int64_t i : {0, 123, 456, 767}) s.elems.push_back(f[i].item<double>());
  return s;
}

inline void ExpectRelNear(double actual, double expected, double rtol, double atol,
                          const std::string& what) {
  EXPECT_LE(std::abs(actual - expected), atol + rtol * std::abs(expected))
      << what << ": got " << actual << ", reference " << expected;
}

/// One configuration with reference numbers. Most come from diffusers' pipeline loop
///   S.set_timesteps(steps); x = sample_deter * S.init_noise_sigma
///   for t in S.timesteps: x = S.step(smooth_model(S.scale_model_input(x, t), t), t, x,
///   ...).prev_sample
/// against diffusers 58eb52c, once stock (float32) and once with every float32 dtype of the
/// scheduler module replaced by float64 and its randn_tensor replaced by float32 torch.randn cast
/// to float64 (the stream make_torch_noise gives): golden_{euler,euler_ancestral,heun}.inc are the
/// output of tests/reference/k_schedulers.py {euler,euler_a,heun} (see tests/reference/README.md).
/// The kdiffusion_*.inc cases come from k-diffusion's samplers instead
/// (tests/reference/kdiffusion.py; see the test files); each case's comment line names the exact
/// call.
struct GoldenCase {
  std::string name;
  int64_t T;
  double beta_start, beta_end;
  std::string beta_schedule;
  Config schedule_config;  // further DiscreteSchedule options (zero terminal SNR)
  std::string spacing;
  Config spacing_config;
  std::string prediction;
  int64_t steps;
  Config sampler_config;
  int64_t seed;                   // torch.Generator().manual_seed(seed); -1: no generator
  std::vector<double> timesteps;  // reference model times (float64 run; Heun's de-interleaved)
  std::vector<double> sigmas;     // reference sigma_ve, final one included
  SampleStats f64, f32;
};

/// Checks our grid and final sample against one golden case; float64 to 1e-6 relative, float32 to
/// 1e-4 (against the float64 reference when f32_vs_f64_reference: for references whose float32
/// run has an artefact of their own).
inline void CheckGoldenCase(const std::string& sampler_key, const GoldenCase& g,
                            bool f32_vs_f64_reference = false) {
  SCOPED_TRACE(sampler_key + "." + g.name);
  for (const auto dtype : {at::kDouble, at::kFloat}) {
    const bool f64 = dtype == at::kDouble;
    auto sched = discrete_schedule(g.T, g.beta_start, g.beta_end, g.beta_schedule,
                                   f64 ? "float64" : "float32", g.schedule_config);
    const TimeGrid grid = make_spacing(g.spacing, g.spacing_config)->grid(*sched, g.steps);
    ASSERT_EQ(grid.size(), g.sigmas.size());
    ASSERT_EQ(g.timesteps.size() + 1, g.sigmas.size());
    if (f64) {
      for (size_t i = 0; i < g.timesteps.size(); ++i)
        ExpectRelNear(grid[i].t, g.timesteps[i], 1e-6, 1e-9, "timestep " + std::to_string(i));
      for (size_t i = 0; i < g.sigmas.size(); ++i)
        ExpectRelNear(grid[i].sigma_ve(), g.sigmas[i], 1e-6, 1e-12, "sigma " + std::to_string(i));
    }
    DenoiserOptions dopt;
    dopt.prediction_type = parse_parameterization(g.prediction);
    Denoiser d(smooth_network, dopt);
    ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
      return d(x, at, {});
    };
    auto noise = make_torch_noise(g.seed < 0 ? 0 : static_cast<uint64_t>(g.seed));
    SampleContext ctx;
    ctx.schedule = sched.get();
    ctx.noise = g.seed < 0 ? nullptr : noise.get();
    // diffusers' init_noise_sigma: sigma_max for linspace/trailing (and karras, built on linspace),
    // sqrt(sigma_max^2 + 1) for leading. Our state is VP: x = alpha_0 * x_ve.
    const double s0 = grid[0].sigma_ve();
    const double init_sigma = g.spacing == "leading" ? std::sqrt(s0 * s0 + 1) : s0;
    const Tensor x0 = sample_deter(dtype) * (init_sigma * grid[0].alpha);
    const Tensor out = make_sampler(sampler_key, g.sampler_config)->sample(fn, x0, grid, ctx);
    ASSERT_EQ(out.scalar_type(), dtype);
    // diffusers returns the VE state x_ve = x / alpha; the two differ only for a final point with
    // sigma > 0 (final_sigmas_type="sigma_min").
    const SampleStats s = stats_of(out / grid.back().alpha);
    const SampleStats& e = f64 || f32_vs_f64_reference ? g.f64 : g.f32;
    const double rtol = f64 ? 1e-6 : 1e-4;
    const std::string tag = f64 ? " (float64)" : " (float32)";
    ExpectRelNear(s.abs_sum, e.abs_sum, rtol, 0, "sum |x|" + tag);
    ExpectRelNear(s.weighted_sum, e.weighted_sum, rtol, 0, "weighted sum" + tag);
    for (size_t i = 0; i < e.elems.size(); ++i)
      ExpectRelNear(s.elems[i], e.elems[i], rtol, rtol * 1e-3 * e.abs_sum / 768,
                    "element " + std::to_string(i) + tag);
  }
}

/// Runs sampler `spec` ("name[:options]") on a `spacing` grid of the SD scaled_linear schedule
/// (float64) from sample_deter's first `batch` samples times sigma_0, with the smooth network and
/// per-sample noise seeded `seed`.
inline Tensor run_sd(const std::string& spec, const std::string& spacing, int64_t steps,
                     int64_t batch = 2, uint64_t seed = 5) {
  auto sched = discrete_schedule(1000, 0.00085, 0.012, "scaled_linear", "float64");
  const TimeGrid grid = make_spacing(spacing)->grid(*sched, steps);
  const Denoiser d(smooth_network, DenoiserOptions{});
  SampleContext ctx;
  ctx.schedule = sched.get();
  auto noise = make_per_sample_noise(seed);
  ctx.noise = noise.get();
  const Tensor x = sample_deter(at::kDouble).narrow(0, 0, batch) * grid[0].sigma;
  return sampler_from_spec(spec)->sample(
      [&d](const Tensor& xt, const TimePoint& at, const StepContext&) { return d(xt, at, {}); }, x,
      grid, ctx);
}

/// make_sampler(key, bad) must throw an Error whose message contains `what`.
inline void expect_sampler_error(const std::string& key, const Config& bad,
                                 const std::string& what) {
  try {
    make_sampler(key, bad);
    ADD_FAILURE() << "no error for " << what;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

}  // namespace diffuse::testing
