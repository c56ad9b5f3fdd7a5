// SPDX-License-Identifier: Apache-2.0
// DPM++ 3M SDE (samplers/dpmpp_3m_sde.h) against k-diffusion sample_dpmpp_3m_sde (4601bf0,
// with default_noise_sampler; tests/reference/kdiffusion.py dpmpp_3m_sde); eta = 0 is diffusers'
// DPM-Solver++ 3M with heun warm-up.
#include <cmath>

#include "samplers/k_sampler_fixtures.h"
#include "test_util.h"

namespace diffuse {
namespace {

using testing::CheckGoldenCase;
using testing::GoldenCase;

const std::vector<GoldenCase>& KDiffusionDpmPP3MSdeGoldens() {
  static const std::vector<GoldenCase> cases = {
#include "samplers/kdiffusion_dpmpp_3m_sde.inc"
  };
  return cases;
}

TEST(DpmPP3MSdeSampler, MatchesKDiffusion) {
  for (const auto& g : KDiffusionDpmPP3MSdeGoldens()) CheckGoldenCase("dpmpp_3m_sde", g);
}

// k-diffusion's 3M update at eta = 0 is diffusers' third-order multistep update, its second-order
// warm-up step the heun one, and it ends with x0 on the step onto sigma = 0.
TEST(DpmPP3MSdeSampler, EtaZeroIsDpmSolverPP3M) {
  testing::ExpectTensorNear(
      testing::run_sd("dpmpp_3m_sde:eta=0", "karras", 12),
      testing::run_sd("dpm_solver_pp:order=3,solver_type=heun,lower_order_final=false", "karras",
                      12),
      1e-12, 1e-10, "eta 0");
}

TEST(DpmPP3MSdeSampler, BrownianNoiseIsPerSampleAndErrors) {
  const Tensor one = testing::run_sd("dpmpp_3m_sde", "karras", 8, 1);
  const Tensor two = testing::run_sd("dpmpp_3m_sde", "karras", 8, 2);
  testing::ExpectTensorNear(two.narrow(0, 0, 1), one, 0, 0, "batch-size independent");
  EXPECT_EQ(make_sampler("dpmpp_3m_sde")->history_size(), 2);
  const Config c{{"eta", "0.5"}, {"s_noise", "1.1"}, {"noise", "gaussian"}};
  EXPECT_EQ(make_sampler("dpmpp_3m_sde", c)->to_config(), c);
  testing::expect_sampler_error("dpmpp_3m_sde", {{"noise", "white"}}, "white");
  testing::expect_sampler_error("dpmpp_3m_sde", {{"s_noise", "-2"}}, "-2");
}

}  // namespace
}  // namespace diffuse
