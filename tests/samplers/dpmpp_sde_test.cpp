// SPDX-License-Identifier: Apache-2.0
// DPM++ SDE (samplers/dpmpp_sde.h) against k-diffusion sample_dpmpp_sde (4601bf0, with
// default_noise_sampler; tests/reference/kdiffusion.py dpmpp_sde), and its Brownian-tree noise.
#include <cmath>

#include "samplers/k_sampler_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

using testing::CheckGoldenCase;
using testing::GoldenCase;

const std::vector<GoldenCase>& KDiffusionDpmPPSdeGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_dpmpp_sde.inc"
  };
  return cases;
}

TEST(DpmPPSdeSampler, MatchesKDiffusion) {
  for (const auto& g : KDiffusionDpmPPSdeGoldens()) CheckGoldenCase("dpmpp_sde", g);
}

// With per-sample noise each sample's Brownian path (and so its result) does not depend on the
// batch size, and the default (brownian) noise differs from independent draws.
TEST(DpmPPSdeSampler, BrownianNoiseIsPerSampleAndSeeded) {
  const Tensor one = testing::run_sd("dpmpp_sde", "karras", 8, 1);
  const Tensor three = testing::run_sd("dpmpp_sde", "karras", 8, 3);
  testing::ExpectTensorNear(three.narrow(0, 0, 1), one, 0, 0, "batch-size independent");
  testing::ExpectTensorNear(testing::run_sd("dpmpp_sde", "karras", 8, 3), three, 0, 0,
                            "reproducible");
  EXPECT_GT((testing::run_sd("dpmpp_sde", "karras", 8, 3, 6) - three).abs().max().item<double>(),
            1e-3);
  EXPECT_GT((testing::run_sd("dpmpp_sde:noise=gaussian", "karras", 8, 3) - three)
                .abs()
                .max()
                .item<double>(),
            1e-3);
  EXPECT_TRUE(at::isfinite(three).all().item<bool>());
}

TEST(DpmPPSdeSampler, AliasesAndErrors) {
  EXPECT_EQ(make_sampler("DPM++ SDE")->name(), "dpmpp_sde");
  EXPECT_EQ(make_sampler("k_dpmpp_sde")->to_config().at("noise"), "brownian");
  EXPECT_FALSE(make_sampler("dpmpp_sde", {{"eta", "0"}})->is_stochastic());
  const Config c{{"eta", "0.5"}, {"s_noise", "1.1"}, {"r", "0.4"}, {"noise", "gaussian"}};
  EXPECT_EQ(make_sampler("dpmpp_sde", c)->to_config(), c);
  testing::expect_sampler_error("dpmpp_sde", {{"r", "0"}}, "r must");
  testing::expect_sampler_error("dpmpp_sde", {{"r", "1.5"}}, "1.5");
  testing::expect_sampler_error("dpmpp_sde", {{"noise", "pink"}}, "pink");
  testing::expect_sampler_error("dpmpp_sde", {{"eta", "-1"}}, "-1");
}

}  // namespace
}  // namespace diffuse
