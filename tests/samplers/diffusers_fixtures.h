// SPDX-License-Identifier: Apache-2.0
// The fixtures of diffusers' scheduler test-suite (tests/schedulers/test_schedulers.py at 58eb52c;
// the same in Python: tests/reference/diffusers_ref.py), shared by the sampler tests that port it.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"

namespace diffuse::testing::diffusers_suite {

/// dummy_sample_deter: element (b, c, h, w) = (c*256 + h*32 + w*4 + b) / 768, shape [4, 3, 8, 8].
inline Tensor sample_deter(at::ScalarType dtype = at::kFloat) {
  return at::arange(768, at::TensorOptions().dtype(dtype))
      .reshape({3, 8, 8, 4})
      .div(768)
      .permute({3, 0, 1, 2})
      .contiguous();
}

/// dummy_noise_deter: the same construction on arange(768) reversed.
inline Tensor noise_deter(at::ScalarType dtype = at::kFloat) {
  return at::arange(768, at::TensorOptions().dtype(dtype))
      .flip(0)
      .reshape({3, 8, 8, 4})
      .div(768)
      .permute({3, 0, 1, 2})
      .contiguous();
}

/// dummy_model(sample, t) = sample * t / (t + 1), t in the sample's dtype (same operation order).
inline Network dummy_network() {
  return [](const Tensor& x, const Tensor& t, const Conditioning&) {
    const Tensor tt = t.view({-1, 1, 1, 1});
    return x * tt / (tt + 1);
  };
}

inline ModelFn model_fn(const Denoiser& d) {
  return [&d](const Tensor& x, const TimePoint& at, const StepContext&) { return d(x, at, {}); };
}

/// Runs `sampler` over `grid` from x with the dummy model (or `network`), as the suite's loops do.
inline Tensor run_loop(const Sampler& sampler, const NoiseSchedule& schedule, const TimeGrid& grid,
                       const DenoiserOptions& dopt, const Tensor& x, NoiseSource* noise = nullptr,
                       const Network& network = {}) {
  Denoiser d(network ? network : dummy_network(), dopt);
  SampleContext ctx;
  ctx.schedule = &schedule;
  ctx.noise = noise;
  return sampler.sample(model_fn(d), x, grid, ctx);
}

/// The suite's metric: sum(|x|) and mean(|x|).
inline double abs_sum(const Tensor& x) { return x.abs().sum().item<double>(); }
inline double abs_mean(const Tensor& x) { return x.abs().mean().item<double>(); }

/// diffusers' add_noise: alpha * x0 + sigma * noise at the point p.
inline Tensor add_noise(const Tensor& x0, const Tensor& noise, const TimePoint& p) {
  return x0 * p.alpha + noise * p.sigma;
}

/// One bit-compatibility case: a diffusers scheduler configuration and its diffuse equivalent.
struct GoldenSetup {
  std::string sampler;
  Config sampler_config;
  Config schedule_config;  ///< for "discrete"; precision is set per run
  std::string spacing;
  Config spacing_config;
  int64_t steps = 10;
  DenoiserOptions denoiser;
  double scale = 1.0;  ///< the loop starts from sample_deter * scale
  bool seeded =
      false;  ///< noise from make_torch_noise(0) (diffusers: generator=torch.manual_seed(0))
  Network network{};  ///< empty: the dummy model x * t / (t + 1)
};

/// What diffusers (58eb52c) produced for it: timesteps, alphas_cumprod[timesteps] (float64 run),
/// the final sample's sum, sum(|x|) and flat elements 0, 100, 383, 767 in float64 and float32.
struct GoldenValues {
  const char* name;
  std::vector<double> timesteps;
  std::vector<double> alphas_cumprod;
  double f64_sum, f64_abs_sum;
  std::vector<double> f64_elems;
  double f32_abs_sum;
  std::vector<double> f32_elems;
};

/// Runs the case in float64 (float64 tables, noise drawn in float32 and cast, as the reference
/// does) and in float32 (precision=float32 tables, diffusers' stock dtypes), and compares with
/// the golden values: timesteps exactly, alphas_cumprod to 1e-12, float64 results to 1e-6
/// relative, float32 results to 1e-4 relative.
inline void check_golden(const GoldenSetup& g, const GoldenValues& v) {
  SCOPED_TRACE(v.name);
  const int64_t idx[4] = {0, 100, 383, 767};
  for (const bool f64 : {true, false}) {
    SCOPED_TRACE(f64 ? "float64" : "float32");
    Config sc = g.schedule_config;
    sc["precision"] = f64 ? "float64" : "float32";
    auto schedule = make_schedule("discrete", sc);
    const TimeGrid grid = make_spacing(g.spacing, g.spacing_config)->grid(*schedule, g.steps);
    ASSERT_EQ(grid.size(), v.timesteps.size() + 1);
    for (size_t i = 0; i < v.timesteps.size(); ++i) {
      EXPECT_EQ(grid[i].t, v.timesteps[i]) << "timestep " << i;
      if (f64) {
        EXPECT_NEAR(grid[i].alpha * grid[i].alpha, v.alphas_cumprod[i],
                    1e-12 * v.alphas_cumprod[i] + 1e-300)
            << "alphas_cumprod at timestep " << v.timesteps[i];
      }
    }
    auto sampler = make_sampler(g.sampler, g.sampler_config);
    std::unique_ptr<NoiseSource> noise;
    if (g.seeded) noise = make_torch_noise(0);
    const Tensor x0 = sample_deter(f64 ? at::kDouble : at::kFloat) * g.scale;
    const Tensor out = run_loop(*sampler, *schedule, grid, g.denoiser, x0, noise.get(), g.network);
    ASSERT_EQ(out.scalar_type(), f64 ? at::kDouble : at::kFloat);
    const Tensor flat = out.reshape({-1}).to(at::kDouble);
    if (f64) {
      EXPECT_NEAR(out.sum().item<double>(), v.f64_sum, 1e-6 * std::abs(v.f64_sum));
      EXPECT_NEAR(abs_sum(out), v.f64_abs_sum, 1e-6 * v.f64_abs_sum);
      for (int k = 0; k < 4; ++k)
        EXPECT_NEAR(flat[idx[k]].item<double>(), v.f64_elems[k],
                    1e-6 * std::abs(v.f64_elems[k]) + 1e-12)
            << "element " << idx[k];
    } else {
      EXPECT_NEAR(abs_sum(out), v.f32_abs_sum, 1e-4 * v.f32_abs_sum);
      for (int k = 0; k < 4; ++k)
        EXPECT_NEAR(flat[idx[k]].item<double>(), v.f32_elems[k],
                    1e-4 * std::abs(v.f32_elems[k]) + 1e-6)
            << "element " << idx[k];
    }
  }
}

inline Config linear_betas() {
  return {{"beta_schedule", "linear"}, {"beta_start", "0.0001"}, {"beta_end", "0.02"}};
}
inline Config sd_betas() {
  return {{"beta_schedule", "scaled_linear"}, {"beta_start", "0.00085"}, {"beta_end", "0.012"}};
}
inline DenoiserOptions denoiser_options(const std::string& prediction_type, bool clip_sample) {
  DenoiserOptions o;
  o.prediction_type = parse_parameterization(prediction_type);
  o.clip_sample = clip_sample;
  return o;
}

}  // namespace diffuse::testing::diffusers_suite
