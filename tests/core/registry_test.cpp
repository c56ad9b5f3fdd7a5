// SPDX-License-Identifier: Apache-2.0
#include "test_util.h"

#include <diffuse/detail/module_list.h>

namespace diffuse {
namespace {

TEST(Registry, UnknownSamplerListsValidNames) {
  try {
    make_sampler("no_such_sampler");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no_such_sampler"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ddim"), std::string::npos) << msg;
  }
}

TEST(Registry, UnknownOptionIsAnError) {
  EXPECT_THROW(make_sampler("ddim", {{"etaa", "1"}}), Error);
  EXPECT_THROW(make_sampler("ddim", {{"eta", "abc"}}), Error);
  EXPECT_THROW(make_sampler("ddim", {{"eta", "-1"}}), Error);
}

TEST(Registry, EveryModuleFileStemIsARegistryKey) {
  for (const auto& [folder, stem] : detail::module_list()) {
    if (folder == "samplers") {
      EXPECT_TRUE(Registry<Sampler>::get().contains(stem)) << folder << "/" << stem;
    } else if (folder == "samplers/guidance") {
      EXPECT_TRUE(Registry<Guidance>::get().contains(stem)) << folder << "/" << stem;
    } else if (folder == "samplers/corrections") {
      EXPECT_TRUE(Registry<Correction>::get().contains(stem)) << folder << "/" << stem;
    } else if (folder == "schedules") {
      EXPECT_TRUE(Registry<NoiseSchedule>::get().contains(stem)) << folder << "/" << stem;
    } else if (folder == "schedules/spacing") {
      EXPECT_TRUE(Registry<TimestepSpacing>::get().contains(stem)) << folder << "/" << stem;
    } else {
      ADD_FAILURE() << "module folder without a registry: " << folder;
    }
  }
}

TEST(Config, ParsesAndRejectsMalformedItems) {
  const Config c = parse_config(" eta = 0.5 , order=2");
  EXPECT_EQ(c.at("eta"), "0.5");
  EXPECT_EQ(c.at("order"), "2");
  EXPECT_THROW(parse_config("eta"), Error);
  EXPECT_THROW(parse_config("eta=1,eta=2"), Error);
}

}  // namespace
}  // namespace diffuse
