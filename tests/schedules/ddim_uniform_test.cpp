// SPDX-License-Identifier: Apache-2.0
// The ddim_uniform spacing (schedules/spacing/ddim_uniform.h) against ComfyUI's ddim_scheduler
// (comfy/samplers.py), restated: sigs = [sigmas[x] for x = 1, 1 + ss, ... < len(sigmas)] with
// ss = max(len // steps, 1), reversed, then 0.
#include <diffuse/schedules/spacing/ddim_uniform.h>

#include <gtest/gtest.h>

#include <diffuse/diffuse.h>

namespace diffuse {
namespace {

std::vector<double> comfy_ddim_uniform_times(int64_t T, int64_t steps) {
  const int64_t ss = std::max<int64_t>(T / steps, 1);
  std::vector<double> t;
  for (int64_t x = 1; x < T; x += ss) t.insert(t.begin(), static_cast<double>(x));
  return t;
}

TEST(DdimUniformSpacing, TimesAreComfyUIsWhereTheCountsAgree) {
  auto sched = make_schedule("discrete");
  auto sp = make_spacing("ddim_uniform");
  int64_t agreed = 0;
  for (int64_t n = 1; n <= 1000; ++n) {
    const std::vector<double> want = comfy_ddim_uniform_times(1000, n);
    EXPECT_EQ(DdimUniformSpacing::comfy_steps(1000, n), static_cast<int64_t>(want.size())) << n;
    if (static_cast<int64_t>(want.size()) != n) {
      EXPECT_THROW(sp->grid(*sched, n), Error) << n;
      continue;
    }
    ++agreed;
    const TimeGrid g = sp->grid(*sched, n);
    ASSERT_EQ(g.size(), want.size() + 1) << n;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(g[i].t, want[i]) << n << " " << i;
      EXPECT_EQ(g[i], sched->at(want[i])) << n << " " << i;
    }
    EXPECT_TRUE(g.back().is_clean());
  }
  EXPECT_EQ(agreed, 22);  // n = 1, 2, 3, 4, 5, 8, 10, 20, 25, 50, ... of 1 .. 1000
  const TimeGrid ten = sp->grid(*sched, 10);
  EXPECT_EQ(ten.front().t, 901);
  EXPECT_EQ(ten[ten.size() - 2].t, 1);
  try {
    sp->grid(*sched, 7);
    ADD_FAILURE() << "no error for 7 steps";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run 8 steps"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sp->grid(*make_schedule("vp"), 10), Error);
  EXPECT_EQ(make_spacing("ddim_uniform", {{"final", "min"}})->grid(*sched, 10).back().t, 0);
}

}  // namespace
}  // namespace diffuse
