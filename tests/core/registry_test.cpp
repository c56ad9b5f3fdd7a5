// SPDX-License-Identifier: Apache-2.0
#include "test_util.h"

#include <diffuse/detail/module_list.h>

#include <cmath>
#include <cstdlib>

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

TEST(FormatDouble, ShortestTextThatReadsBackExactly) {
  EXPECT_EQ(format_double(0.1), "0.1");
  EXPECT_EQ(format_double(0.3), "0.3");
  EXPECT_EQ(format_double(1e-4), "0.0001");
  // Values that need 16 or 17 digits keep them.
  for (double v : {1.0 / 3.0, 0.1 + 0.2, std::ldexp(1.0, -24), 1e-300, 6.02214076e23, -2.5e-7,
                   std::nextafter(1.0, 2.0), 0.99999999999999989}) {
    const std::string text = format_double(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
  EXPECT_EQ(format_double(0.1 + 0.2), "0.30000000000000004");
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
    } else if (folder == "training/objectives") {
      EXPECT_TRUE(Registry<Objective>::get().contains(stem)) << folder << "/" << stem;
    } else {
      ADD_FAILURE() << "module folder without a registry: " << folder;
    }
  }
}

TEST(Registry, A1111AndComfyUiNamesResolve) {
  // The names users type in A1111 / ComfyUI map onto our keys with the right preset options.
  const std::vector<std::pair<std::string, std::string>> names{
      {"euler_a", "euler_ancestral"},
      {"Euler a", "euler_ancestral"},
      {"k_euler_a", "euler_ancestral"},
      {"Euler", "euler"},
      {"k_euler", "euler"},
      {"Heun", "heun"},
      {"DDIM", "ddim"},
      {"dpmpp_2m", "dpm_solver_pp"},
      {"DPM++ 2M", "dpm_solver_pp"},
      {"k_dpmpp_2m", "dpm_solver_pp"},
      {"dpmpp_3m", "dpm_solver_pp"},
      {"dpmpp_2m_sde", "dpm_solver_pp_sde"},
      {"DPM++ 2M SDE", "dpm_solver_pp_sde"},
      {"dpmpp_2s", "dpm_solver_pp_singlestep"}};
  for (const auto& [alias, key] : names) {
    auto s = make_sampler(alias);
    EXPECT_EQ(s->name(), key) << alias;
  }
  EXPECT_EQ(make_sampler("DPM++ 2M")->to_config().at("order"), "2");
  EXPECT_EQ(make_sampler("dpmpp_3m")->to_config().at("order"), "3");
  // User options override an alias's preset.
  EXPECT_EQ(make_sampler("dpmpp_2m", {{"order", "1"}})->to_config().at("order"), "1");
  EXPECT_EQ(sampler_from_spec("ddim:eta=0.5")->to_config().at("eta"), "0.5");
}

TEST(Registry, DistinctSamplerNamesListEachConfigurationOnce) {
  const auto names = distinct_sampler_names();
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  for (const auto& key : Registry<Sampler>::get().keys()) EXPECT_TRUE(has(key)) << key;
  EXPECT_TRUE(has("dpmpp_2m"));
  EXPECT_TRUE(has("dpmpp_3m"));
  for (const char* n : {"DPM++ 2M", "k_dpmpp_2m", "euler_a", "k_euler", "Euler a"})
    EXPECT_FALSE(has(n)) << n;
  std::set<std::string> configs;
  for (const auto& n : names) {
    const auto [key, preset] = Registry<Sampler>::get().resolve(n, {});
    EXPECT_TRUE(configs.insert(key + ":" + format_config(preset)).second) << n;
  }
}

TEST(Config, ParsesAndRejectsMalformedItems) {
  const Config c = parse_config(" eta = 0.5 , order=2");
  EXPECT_EQ(c.at("eta"), "0.5");
  EXPECT_EQ(c.at("order"), "2");
  EXPECT_THROW(parse_config("eta"), Error);
  EXPECT_THROW(parse_config("eta=1,eta=2"), Error);
}

enum class Fruit { apple, pear, plum };
const EnumNames<Fruit> kFruitNames = {
    {"apple", Fruit::apple}, {"pear", Fruit::pear}, {"plum", Fruit::plum}};

// The shared enum helpers every parse_*() and validate() uses: exact names only, and errors that
// list the valid names and name the bad value.
TEST(Config, EnumNamesParseExactlyAndErrorsNameTheBadValue) {
  EXPECT_EQ(parse_enum("pear", kFruitNames, "fruit"), Fruit::pear);
  EXPECT_EQ(enum_name(Fruit::plum, kFruitNames), "plum");
  EXPECT_ERROR_NAMING(parse_enum("Pear", kFruitNames, "fruit"),
                      "fruit must be apple, pear or plum, got 'Pear'");
  EXPECT_THROW(parse_enum("", kFruitNames, "fruit"), ConfigError);
  EXPECT_NO_THROW(check_enum(Fruit::apple, kFruitNames, "fruit"));
  const auto bad = static_cast<Fruit>(7);
  EXPECT_EQ(enum_name(bad, kFruitNames), "?");
  EXPECT_ERROR_NAMING(check_enum(bad, kFruitNames, "fruit"),
                      "fruit must be apple, pear or plum, got enum value 7");
  EXPECT_EQ(detail::one_of({"a"}), "a");
  EXPECT_EQ(detail::one_of({"a", "b"}), "a or b");
  // ConfigReader::get_enum: the same table, the owner's key in the message.
  const Config c = parse_config("fruit=fig");
  ConfigReader r(c, "bowl");  // holds a reference to c
  EXPECT_ERROR_NAMING((void)r.get_enum("fruit", Fruit::apple, kFruitNames),
                      "bowl: fruit='fig' is not one of: apple, pear, plum");
}

}  // namespace
}  // namespace diffuse
