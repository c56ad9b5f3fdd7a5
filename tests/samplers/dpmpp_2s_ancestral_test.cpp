// SPDX-License-Identifier: Apache-2.0
// DPM++ 2S ancestral (samplers/dpmpp_2s_ancestral.h) against k-diffusion
// sample_dpmpp_2s_ancestral (4601bf0; tests/reference/kdiffusion.py dpmpp_2s_ancestral).
#include <cmath>

#include "samplers/k_sampler_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

using testing::CheckGoldenCase;
using testing::GoldenCase;

const std::vector<GoldenCase>& KDiffusionDpmPP2SAGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_dpmpp_2s_ancestral.inc"
  };
  return cases;
}

TEST(DpmPP2SAncestralSampler, MatchesKDiffusion) {
  for (const auto& g : KDiffusionDpmPP2SAGoldens()) CheckGoldenCase("dpmpp_2s_ancestral", g);
}

TEST(DpmPP2SAncestralSampler, AliasesAndErrors) {
  EXPECT_EQ(make_sampler("DPM++ 2S a")->name(), "dpmpp_2s_ancestral");
  EXPECT_EQ(make_sampler("k_dpmpp_2s_a")->to_config().at("eta"), "1");
  EXPECT_FALSE(make_sampler("dpmpp_2s_ancestral", {{"eta", "0"}})->is_stochastic());
  testing::ExpectTensorNear(testing::run_sd("dpmpp_2s_ancestral:eta=0", "karras", 8, 2, 1),
                            testing::run_sd("dpmpp_2s_ancestral:eta=0", "karras", 8, 2, 9), 0, 0,
                            "eta 0 is deterministic");
  testing::expect_sampler_error("dpmpp_2s_ancestral", {{"eta", "-0.5"}}, "-0.5");
  testing::expect_sampler_error("dpmpp_2s_ancestral", {{"s_noise", "nan"}}, "s_noise");
}

}  // namespace
}  // namespace diffuse
