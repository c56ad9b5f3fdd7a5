// SPDX-License-Identifier: Apache-2.0
// from_diffusers(): diffusers scheduler configs map onto schedule + spacing + sampler. The grids are
// checked against set_timesteps() of diffusers 58eb52c (values in diffusers-test-expectations.md
// and the diffusers test-suite); the samplers' numerics are checked in tests/samplers/.
#include "test_util.h"

#include <diffuse/diffusers.h>

namespace diffuse {
namespace {

std::vector<double> times(const TimeGrid& g) {
  std::vector<double> out;
  for (size_t i = 0; i + 1 < g.size(); ++i) out.push_back(g[i].t);
  return out;
}

TEST(FromDiffusers, DdimDefaultsAndStepsOffset) {
  auto s = from_diffusers("DDIMScheduler", {});
  EXPECT_EQ(s.sampler->name(), "ddim");
  EXPECT_TRUE(s.denoiser_options.clip_sample);  // DDIMScheduler's default clip_sample=True
  EXPECT_EQ(times(s.grid(10)), (std::vector<double>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0}));
  EXPECT_TRUE(s.grid(10).back().is_clean());  // set_alpha_to_one=True
  // test_steps_offset: steps_offset=1, set_timesteps(5) -> [801, 601, 401, 201, 1].
  auto o = from_diffusers("DDIMScheduler", {{"steps_offset", "1"}});
  EXPECT_EQ(times(o.grid(5)), (std::vector<double>{801, 601, 401, 201, 1}));
  auto n = from_diffusers("DDIMScheduler", {{"set_alpha_to_one", "false"}});
  EXPECT_EQ(n.grid(10).back(), n.schedule->at(0));
}

TEST(FromDiffusers, UnknownClassesAndKeysAreErrors) {
  EXPECT_THROW(from_diffusers("PNDMScheduler", {}), Error);
  EXPECT_THROW(from_diffusers("DDIMScheduler", {{"solver_order", "2"}}), Error);
  EXPECT_NO_THROW(from_diffusers("DDIMScheduler", {{"solver_order", "2"}}, /*strict=*/false));
  EXPECT_NO_THROW(from_diffusers("DDIMScheduler", {{"_class_name", "DDIMScheduler"}}));
  EXPECT_THROW(from_diffusers("DDIMScheduler", {{"timestep_spacing", "quadratic"}}), Error);
}

}  // namespace
}  // namespace diffuse
