// SPDX-License-Identifier: Apache-2.0
#include "test_util.h"

namespace diffuse {
namespace {

TEST(DdimSampler, DiffusersFullLoopNoNoise) {
  // diffusers-test-expectations.md, DDIM test_full_loop_no_noise: sum 172.0067, mean 0.223967.
  auto sched = make_schedule("discrete");
  auto grid = make_spacing("leading")->grid(*sched, 10);
  ASSERT_EQ(grid.front().t, 900);
  DenoiserOptions dopt;
  dopt.clip_sample = true;
  Denoiser d([](const Tensor& x, const Tensor& t, const Conditioning&) { return x * t.view({-1, 1, 1, 1}) / (t.view({-1, 1, 1, 1}) + 1); }, dopt);
  Tensor x = at::arange(768, at::kFloat).reshape({3, 8, 8, 4}).div(768).permute({3, 0, 1, 2}).contiguous();
  SampleContext ctx;
  ctx.schedule = sched.get();
  ModelFn fn = [&](const Tensor& xx, const TimePoint& at, const StepContext&) { return d(xx, at, {}); };
  Tensor out = make_sampler("ddim")->sample(fn, x, grid, ctx);
  EXPECT_NEAR(out.abs().sum().item<double>(), 172.0067, 1e-2);
  EXPECT_NEAR(out.abs().mean().item<double>(), 0.223967, 1e-3);
}

}  // namespace
}  // namespace diffuse
