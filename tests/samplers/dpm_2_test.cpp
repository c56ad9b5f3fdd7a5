// SPDX-License-Identifier: Apache-2.0
// DPM2 and DPM2 ancestral (samplers/dpm_2.h) against k-diffusion sample_dpm_2 /
// sample_dpm_2_ancestral (4601bf0; tests/reference/kdiffusion.py dpm_2, dpm_2_ancestral).
#include <cmath>

#include "samplers/k_sampler_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

using testing::CheckGoldenCase;
using testing::GoldenCase;

const std::vector<GoldenCase>& KDiffusionDpm2Goldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_dpm_2.inc"
  };
  return cases;
}

TEST(Dpm2Sampler, MatchesKDiffusion) {
  for (const auto& g : KDiffusionDpm2Goldens()) CheckGoldenCase("dpm_2", g);
}

const std::vector<GoldenCase>& KDiffusionDpm2AncestralGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_dpm_2_ancestral.inc"
  };
  return cases;
}

TEST(Dpm2AncestralSampler, MatchesKDiffusion) {
  for (const auto& g : KDiffusionDpm2AncestralGoldens()) CheckGoldenCase("dpm_2_ancestral", g);
}

TEST(Dpm2Sampler, AliasesDeterminismAndErrors) {
  EXPECT_EQ(make_sampler("dpm_2_ancestral")->to_config().at("eta"), "1");
  EXPECT_EQ(make_sampler("DPM2 a")->to_config().at("eta"), "1");
  EXPECT_EQ(make_sampler("k_dpm_2")->to_config().at("eta"), "0");
  EXPECT_FALSE(make_sampler("dpm_2")->is_stochastic());
  EXPECT_TRUE(make_sampler("dpm_2_ancestral")->is_stochastic());
  // Deterministic: no noise source needed, the same result at any seed.
  testing::ExpectTensorNear(testing::run_sd("dpm_2", "karras", 8, 2, 1),
                            testing::run_sd("dpm_2", "karras", 8, 2, 2), 0, 0, "seed-independent");
  // Ancestral with eta = 0 is DPM2.
  testing::ExpectTensorNear(testing::run_sd("dpm_2:eta=0", "karras", 8),
                            testing::run_sd("dpm_2", "karras", 8), 0, 0, "eta 0");
  testing::expect_sampler_error("dpm_2", {{"eta", "1"}, {"s_churn", "1"}}, "do not combine");
  testing::expect_sampler_error("dpm_2", {{"eta", "-1"}}, "-1");
  testing::expect_sampler_error("dpm_2", {{"s_tmax", "0.5"}, {"s_tmin", "1"}}, "s_tmax");
}

}  // namespace
}  // namespace diffuse
