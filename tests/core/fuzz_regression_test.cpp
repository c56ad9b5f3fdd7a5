// SPDX-License-Identifier: Apache-2.0
// Specification strings found by the libFuzzer target tests/fuzz/fuzz_config.cpp that broke the
// library (crash, sanitizer report or an allocation of gigabytes), each now a one-line
// diffuse::Error naming the bad value. The inputs are the fuzzer's (minimised) lines, verbatim.
#include "test_util.h"

#include <diffuse/diffusers.h>

namespace diffuse {
namespace {

// Finding: num_train_timesteps=2000000000 allocated tables of 2e9 doubles (16 GB each) before any
// check; now capped at 1e6 (as from a card, a spec or a diffusers config).
TEST(FuzzRegression, HugeNumTrainTimestepsIsAnError) {
  EXPECT_ERROR_NAMING((void)Registry<NoiseSchedule>::get().make_from_spec(
                          "discrete:num_train_timesteps=2000000000"),
                      "2000000000");
  EXPECT_ERROR_NAMING((void)from_diffusers("EulerDiscreteScheduler",
                                           parse_config("num_train_timesteps=2000000000")),
                      "2000000000");
  // The bounds themselves are accepted.
  EXPECT_EQ(make_schedule("discrete", {{"num_train_timesteps", "2"}})->num_train_timesteps(), 2);
  EXPECT_EQ(make_schedule("discrete", {{"num_train_timesteps", "1000000"}})->num_train_timesteps(),
            1000000);
}

}  // namespace
}  // namespace diffuse
