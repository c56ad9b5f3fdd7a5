// SPDX-License-Identifier: Apache-2.0
// LMS (samplers/lms.h) against k-diffusion sample_lms (4601bf0; tests/reference/kdiffusion.py lms),
// the closed-form coefficients and the Euler identity.
#include <cmath>

#include "samplers/k_sampler_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

using testing::CheckGoldenCase;
using testing::GoldenCase;

const std::vector<GoldenCase>& KDiffusionLmsGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_lms.inc"
  };
  return cases;
}

TEST(LmsSampler, MatchesKDiffusion) {
  for (const auto& g : KDiffusionLmsGoldens()) CheckGoldenCase("lms", g);
}

TEST(LmsSampler, CoefficientsIntegrateTheLagrangeBasis) {
  // Order 1: the step length. Any order: the basis sums to 1, so the coefficients sum to it.
  EXPECT_DOUBLE_EQ(LmsSampler::coefficients({3.0}, 2.0)[0], -1.0);
  for (const auto& nodes :
       std::vector<std::vector<double>>{{3.0, 5.0}, {3.0, 5.0, 9.0}, {3.0, 5.0, 9.0, 14.0}}) {
    const auto c = LmsSampler::coefficients(nodes, 1.5);
    double sum = 0;
    for (double v : c) sum += v;
    EXPECT_NEAR(sum, -1.5, 1e-12) << nodes.size();
    // Exact for polynomial slopes of degree < k: integral of tau^m over [3, 1.5].
    for (size_t m = 0; m < nodes.size(); ++m) {
      double q = 0;
      for (size_t j = 0; j < nodes.size(); ++j)
        q += c[j] * std::pow(nodes[j], static_cast<double>(m));
      const double exact = (std::pow(1.5, m + 1.0) - std::pow(3.0, m + 1.0)) / (m + 1.0);
      EXPECT_NEAR(q, exact, 1e-11) << "degree " << m << " with " << nodes.size() << " nodes";
    }
  }
  // Two nodes, closed form (Adams-Bashforth 2 on unequal steps): c1 = h^2 / (2 (s1 - s0)) with
  // h = to - s0.
  const auto c = LmsSampler::coefficients({3.0, 5.0}, 2.0);
  EXPECT_NEAR(c[1], 1.0 / (2.0 * 2.0), 1e-14);
  EXPECT_NEAR(c[0], -1.0 - c[1], 1e-14);
}

TEST(LmsSampler, OrderOneIsEulerAndErrors) {
  testing::ExpectTensorNear(testing::run_sd("lms:order=1", "karras", 10),
                            testing::run_sd("euler", "karras", 10), 1e-12, 1e-10, "order 1");
  EXPECT_GT((testing::run_sd("lms", "karras", 10) - testing::run_sd("euler", "karras", 10))
                .abs()
                .max()
                .item<double>(),
            1e-4);
  EXPECT_EQ(make_sampler("k_lms")->to_config().at("order"), "4");
  EXPECT_EQ(make_sampler("LMS")->history_size(), 3);
  EXPECT_EQ(make_sampler("lms", {{"order", "2"}})->to_config(), (Config{{"order", "2"}}));
  testing::expect_sampler_error("lms", {{"order", "5"}}, "5");
  testing::expect_sampler_error("lms", {{"order", "0"}}, "0");
  testing::expect_sampler_error("lms", {{"bad", "1"}}, "bad");
}

}  // namespace
}  // namespace diffuse
