// SPDX-License-Identifier: Apache-2.0
// Restart sampling (samplers/restart.h) against A1111's restart_sampler (598aef8, on k-diffusion
// 4601bf0; tests/reference/kdiffusion.py restart), its call sequence against the Karras sub-grid,
// its identity with Heun at restart_times=0, and on the Gaussian-mixture testbed that the restarts
// keep the exact marginal (the forward jump is the forward process).
#include <diffuse/gaussian_mixture.h>
#include <diffuse/metrics.h>
#include <diffuse/samplers/restart.h>
#include <diffuse/schedules/vp.h>

#include <cmath>
#include <vector>

#include "samplers/k_sampler_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

const std::vector<testing::GoldenCase>& A1111RestartGoldens() {
  static const std::vector<testing::GoldenCase> cases = {
#include "samplers/a1111_restart.inc"
  };
  return cases;
}

// A1111's "Restart" at 20 steps is restart on an 11-step Karras grid (first case); explicit
// restart_list entries keep the grid (the other two: two restarts with s_noise on v-prediction,
// and a coarse explicit grid). Our float32 run is checked against A1111's float64 run (to 1e-4):
// A1111 rebuilds the restart's end point through get_sigmas_karras, and where its round-off leaves
// it below the grid point the main steps resume from, it draws one more noise tensor, of size
// sqrt(2 sigma delta) (the .inc's draw counts: 3 for 2 restarts, 2 for 1). In float32 that moves
// its sample by ~1e-4 (its weighted sum by 1%); we land on the grid point and draw nothing. In
// float64 it is ~1e-9, under the 1e-6 check.
TEST(RestartSampler, MatchesA1111) {
  for (const auto& g : A1111RestartGoldens()) testing::CheckGoldenCase("restart", g, true);
}

TEST(RestartSampler, NoRestartIsHeun) {
  testing::ExpectTensorNear(testing::run_sd("restart:restart_times=0", "karras", 10),
                            testing::run_sd("heun", "karras", 10), 0, 0, "restart_times=0");
  // A grid whose point nearest restart_max is not above the one nearest restart_min: no restart.
  testing::ExpectTensorNear(
      testing::run_sd("restart:restart_min=0.1,restart_max=0.2", "karras", 4, 2, 3),
      testing::run_sd("heun", "karras", 4, 2, 3), 0, 0, "interval inside one step");
  EXPECT_FALSE(sampler_from_spec("restart:restart_times=0")->is_stochastic());
  EXPECT_TRUE(make_sampler("restart")->is_stochastic());
  EXPECT_EQ(make_sampler("Restart")->to_config(), make_sampler("restart")->to_config());
}

// The model sees the main grid's Heun calls, and after the step onto the point nearest
// restart_min, restart_times runs of Heun calls on rho-spaced sigmas from the point nearest
// restart_max down to it, exactly model_calls(n) = model_calls_on(grid) in all.
TEST(RestartSampler, CallsTheKarrasSubGrid) {
  auto sched = testing::discrete_schedule(1000, 0.00085, 0.012, "scaled_linear", "float64");
  const int64_t n = 12;
  const TimeGrid grid = make_spacing("karras")->grid(*sched, n);
  const auto sampler = sampler_from_spec(
      "restart:restart_min=0.3,restart_max=3,restart_steps=4,"
      "restart_times=2,rho=5");
  const auto* rs = dynamic_cast<const RestartSampler*>(sampler.get());
  ASSERT_NE(rs, nullptr);
  const auto [lo, hi] = rs->restart_indices(grid);
  // Independent nearest-point search.
  int64_t lo_ref = 0, hi_ref = 0;
  for (int64_t i = 0; i <= n; ++i) {
    const double s = grid[static_cast<size_t>(i)].sigma_ve();
    if (std::abs(s - 0.3) < std::abs(grid[static_cast<size_t>(lo_ref)].sigma_ve() - 0.3))
      lo_ref = i;
    if (std::abs(s - 3) < std::abs(grid[static_cast<size_t>(hi_ref)].sigma_ve() - 3)) hi_ref = i;
  }
  ASSERT_EQ(lo, lo_ref);
  ASSERT_EQ(hi, hi_ref);
  ASSERT_LT(hi, lo);
  std::vector<double> expected;  // sigma_ve of every call
  for (int64_t i = 0; i < n; ++i) {
    const double s = grid[static_cast<size_t>(i)].sigma_ve(),
                 s1 = grid[static_cast<size_t>(i) + 1].sigma_ve();
    expected.push_back(s);
    if (s1 > 0) expected.push_back(s1);
    if (i + 1 != lo) continue;
    const double top = grid[static_cast<size_t>(hi)].sigma_ve();
    std::vector<double> sub;
    for (int k = 0; k <= 4; ++k) {
      const double r = k / 4.0;
      sub.push_back(std::pow(
          std::pow(top, 1 / 5.0) + r * (std::pow(s1, 1 / 5.0) - std::pow(top, 1 / 5.0)), 5.0));
    }
    for (int rep = 0; rep < 2; ++rep)
      for (int k = 0; k < 4; ++k) {
        expected.push_back(sub[static_cast<size_t>(k)]);
        expected.push_back(sub[static_cast<size_t>(k) + 1]);
      }
  }
  ASSERT_EQ(static_cast<int64_t>(expected.size()), sampler->model_calls(n));
  ASSERT_EQ(static_cast<int64_t>(expected.size()), sampler->model_calls_on(grid));
  std::vector<double> seen;
  const Denoiser d(testing::smooth_network, DenoiserOptions{});
  SampleContext ctx;
  ctx.schedule = sched.get();
  auto noise = make_per_sample_noise(9);
  ctx.noise = noise.get();
  const Tensor x = testing::sample_deter(at::kDouble).narrow(0, 0, 2) * grid[0].sigma_ve();
  sampler->sample(
      [&](const Tensor& xt, const TimePoint& at, const StepContext&) {
        seen.push_back(at.sigma_ve());
        return d(xt, at, {});
      },
      x, grid, ctx);
  ASSERT_EQ(seen.size(), expected.size());
  for (size_t i = 0; i < seen.size(); ++i)
    EXPECT_NEAR(seen[i], expected[i], 1e-12 * expected[i]) << "call " << i;
}

// With the exact denoiser of a Gaussian mixture and fine steps, every restart takes exact
// marginals at sigma_lo to exact marginals at sigma_hi and back: the samples stay at the noise
// floor of the sliced W2 distance. Without the forward noise (s_noise=0) the re-solve starts from
// a state that is too clean for its noise level and the distribution visibly shrinks.
TEST(RestartSampler, KeepsTheMarginalsOnTheGaussianMixture) {
  const GaussianMixture gmm = GaussianMixture::preset("mixture_2d");
  std::shared_ptr<const NoiseSchedule> vp = std::make_shared<VpSchedule>();
  const int64_t n = 3000;
  const Tensor truth = gmm.sample(n, 101).x0, fresh = gmm.sample(n, 202).x0;
  const double floor = sliced_wasserstein(fresh, truth, 3);
  const auto w2 = [&](const std::string& spec) {
    SampleOptions o;
    o.spacing = make_spacing("karras");
    o.num_steps = 40;
    o.seed = 7;
    const Tensor x = sample(*sampler_from_spec(spec), Denoiser(gmm.network(vp)), *vp,
                            randn({n, 2}, 11, at::kDouble), o);
    return sliced_wasserstein(x, truth, 3);
  };
  const double heun = w2("heun");
  const double restart =
      w2("restart:restart_min=0.05,restart_max=1.5,restart_steps=30,"
         "restart_times=3");
  const double no_noise =
      w2("restart:restart_min=0.05,restart_max=1.5,restart_steps=30,"
         "restart_times=3,s_noise=0");
  std::cout << "[ restart ] sliced W2 to the mixture: noise floor " << floor << ", heun " << heun
            << ", restart " << restart << ", restart without noise " << no_noise << "\n";
  EXPECT_LT(heun, 2 * floor);
  EXPECT_LT(restart, 2 * floor);
  EXPECT_GT(no_noise, 3 * floor);
}

TEST(RestartSampler, BadOptionsAreNamed) {
  testing::expect_sampler_error("restart", {{"restart_min", "-1"}}, "restart_min");
  testing::expect_sampler_error("restart", {{"restart_min", "2"}, {"restart_max", "1"}},
                                "restart_max");
  testing::expect_sampler_error("restart", {{"restart_max", "inf"}}, "restart_max");
  testing::expect_sampler_error("restart", {{"restart_steps", "0"}}, "restart_steps");
  testing::expect_sampler_error("restart", {{"restart_times", "-1"}}, "restart_times");
  testing::expect_sampler_error("restart", {{"rho", "0"}}, "rho");
  testing::expect_sampler_error("restart", {{"s_noise", "nan"}}, "s_noise");
  testing::expect_sampler_error("restart", {{"space", "sideways"}}, "sideways");
  testing::expect_sampler_error("restart", {{"restart_step", "3"}}, "restart_step");
}

}  // namespace
}  // namespace diffuse
