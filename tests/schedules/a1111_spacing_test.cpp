// SPDX-License-Identifier: Apache-2.0
// The A1111 / ComfyUI schedulers normal, sgm_uniform and simple (schedules/spacing/normal.h,
// simple.h) against A1111's functions (modules/sd_schedulers.py at 02b0092) on k-diffusion's
// discrete denoiser, sampled with k-diffusion's sample_euler (tests/reference/kdiffusion.py
// a1111_spacings); kl_optimal (kl_optimal.h) against its closed form.
#include <cmath>

#include "samplers/k_sampler_fixtures.h"
#include "test_util.h"

#include <diffuse/schedules/spacing/kl_optimal.h>

namespace diffuse {
namespace {

const std::vector<testing::GoldenCase>& A1111SpacingGoldens() {
  static const std::vector<testing::GoldenCase> cases = {
#include "schedules/a1111_spacings.inc"
  };
  return cases;
}

TEST(A1111Spacings, MatchA1111WithKDiffusionEuler) {
  for (const auto& g : A1111SpacingGoldens()) testing::CheckGoldenCase("euler", g);
}

std::unique_ptr<NoiseSchedule> sd_schedule() {
  return testing::discrete_schedule(1000, 0.00085, 0.012, "scaled_linear", "float64");
}

TEST(A1111Spacings, ShapesOptionsAndErrors) {
  auto s = sd_schedule();
  // normal ends at t = 0, sgm_uniform one stride before it; both start at T - 1.
  const TimeGrid normal = make_spacing("normal")->grid(*s, 8);
  const TimeGrid sgm = make_spacing("sgm_uniform")->grid(*s, 8);
  ASSERT_EQ(normal.size(), 9u);
  ASSERT_EQ(sgm.size(), 9u);
  EXPECT_EQ(normal.front().t, 999.0);
  EXPECT_EQ(normal[7].t, 0.0);
  EXPECT_NEAR(sgm[7].t, 999.0 / 8, 1e-12);
  EXPECT_TRUE(normal.back().is_clean());
  // round_t feeds the nearest training step (ComfyUI) and keeps the noise level.
  const TimeGrid rounded = make_spacing("normal", {{"round_t", "true"}})->grid(*s, 8);
  for (size_t i = 0; i + 1 < rounded.size(); ++i) {
    EXPECT_EQ(rounded[i].t, std::nearbyint(normal[i].t)) << i;
    EXPECT_DOUBLE_EQ(rounded[i].sigma, normal[i].sigma) << i;
  }
  // simple: every T/n-th training step.
  const TimeGrid simple = make_spacing("simple")->grid(*s, 4);
  EXPECT_EQ(simple[0].t, 999.0);
  EXPECT_EQ(simple[1].t, 749.0);
  EXPECT_EQ(simple[3].t, 249.0);
  EXPECT_EQ(make_spacing("simple")->grid(*s, 1000).size(), 1001u);
  EXPECT_THROW(make_spacing("simple")->grid(*s, 1001), Error);
  auto vp = make_schedule("vp");
  for (const char* k : {"normal", "sgm_uniform", "simple"}) {
    try {
      make_spacing(k)->grid(*vp, 5);
      ADD_FAILURE() << k << " ran on a continuous schedule";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("discrete"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(make_spacing("sgm_uniform")->to_config().at("sgm"), "true");
}

TEST(KlOptimalSpacing, IsUniformInArctanSigma) {
  auto s = sd_schedule();
  const double lo = s->at(0).sigma_ve(), hi = s->at(999).sigma_ve();
  for (int64_t n : {1, 2, 7, 20}) {
    const TimeGrid g = make_spacing("kl_optimal")->grid(*s, n);
    ASSERT_EQ(g.size(), static_cast<size_t>(n + 1));
    EXPECT_NEAR(g.front().sigma_ve(), hi, 1e-9 * hi);
    if (n > 1) {
      EXPECT_NEAR(g[n - 1].sigma_ve(), lo, 1e-12);
    }
    EXPECT_TRUE(g.back().is_clean());
    for (int64_t i = 1; i + 1 < n; ++i) {
      const double step = std::atan(g[i].sigma_ve()) - std::atan(g[i - 1].sigma_ve());
      EXPECT_NEAR(step, (std::atan(lo) - std::atan(hi)) / (n - 1), 1e-12) << n << " " << i;
    }
  }
  // Its own range and the final point.
  const TimeGrid g =
      make_spacing("kl_optimal", {{"sigma_min", "0.1"}, {"sigma_max", "10"}, {"final", "min"}})
          ->grid(*s, 5);
  EXPECT_NEAR(g[0].sigma_ve(), 10.0, 1e-9);
  EXPECT_NEAR(g[4].sigma_ve(), 0.1, 1e-12);
  EXPECT_EQ(g[5], g[4]);
  EXPECT_THROW(make_spacing("kl_optimal", {{"sigma_min", "-1"}}), Error);
  // Continuous schedules work too (the range is the schedule's).
  EXPECT_EQ(make_spacing("kl_optimal")->grid(*make_schedule("edm"), 6).size(), 7u);
}

}  // namespace
}  // namespace diffuse
