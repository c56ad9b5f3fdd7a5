// SPDX-License-Identifier: Apache-2.0
// `diffuse ays`: an optimised schedule file that `diffuse sample --schedule file:` runs exactly,
// and one-line errors.
#include <fstream>

#include <nlohmann/json.hpp>

#include <diffuse/training/model_file.h>

#include "cli/cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;

TEST(CliAys, ScheduleFileRoundTripsThroughSample) {
  const std::string dir = cli_test_dir("ays_roundtrip");
  const std::string file = dir + "/ays3.json";
  auto r = run_cli({"-v", "ays", "--steps", "3", "--sweeps", "1", "--search-iters", "3", "--nodes",
                    "2", "--limit", "8", "--out", file},
                   "", 300, {"DIFFUSE_PROGRESS_INTERVAL=0"});
  ASSERT_EQ(r.code, 0) << r.err;
  // The KLUB as it goes: the initial schedule and each sweep (info), each point (debug, -v), and
  // plain progress lines (stderr is not a terminal).
  EXPECT_NE(r.err.find("info: ays: initial karras schedule (3 steps): KLUB "), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("debug: ays: sweep 1/1, point 1/2 (sigma_ve "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("debug: ays: sweep 1/1, point 2/2 (sigma_ve "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("info: ays: sweep 1/1: KLUB "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("info: ays: 1/"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" denoiser batches ("), std::string::npos) << r.err;
  const nlohmann::json s = nlohmann::json::parse(read_text_file(file));
  const auto ts = s.at("timesteps").get<std::vector<double>>();
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(s.at("final"), "zero");
  // The card's schedule string exactly (sample compares them).
  const diffuse::LoadedModel m = diffuse::load_model(diffuse::default_model_path());
  EXPECT_EQ(s.at("noise_schedule"), m.card.schedule);
  auto schedule = m.make_schedule();
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_GE(ts[i], schedule->t_min());
    EXPECT_LE(ts[i], schedule->t_max());
    if (i > 0) {
      EXPECT_LT(ts[i], ts[i - 1]);
    }
  }
  // Printed too.
  EXPECT_NE(r.out.find("timesteps:"), std::string::npos) << r.out;

  // sample runs exactly these times, then the clean point.
  r = run_cli({"sample", "--schedule", "file:" + file, "-n", "2", "-o", dir + "/s.png", "--record",
               dir + "/rec.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const nlohmann::json rec = nlohmann::json::parse(read_text_file(dir + "/rec.json"));
  const auto grid = rec.at("resolved").at("grid_t").get<std::vector<double>>();
  ASSERT_EQ(grid.size(), 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(grid[i], ts[i]) << i;
  EXPECT_DOUBLE_EQ(grid[3], schedule->clean_point().t);
  EXPECT_EQ(rec.at("settings").at("steps"), 3);

  // -o ays3.png would write its record over ays3.json, the schedule file it reads: refused, the
  // file untouched.
  const std::string before = read_text_file(file);
  expect_clean_error(
      run_cli({"sample", "--schedule", "file:" + file, "-n", "2", "-o", dir + "/ays3.png"}),
      {"the settings record of --out", "the schedule file"}, 2);
  EXPECT_EQ(read_text_file(file), before);
  EXPECT_FALSE(fs::exists(dir + "/ays3.png"));
}

TEST(CliAys, BadArgumentsAreOneLineErrors) {
  const std::string dir = cli_test_dir("ays_bad");
  expect_clean_error(run_cli({"ays", "--steps", "-2", "--out", dir + "/a.json"}), {"--steps", "-2"},
                     2);
  expect_clean_error(run_cli({"ays", "--estimator", "guess", "--out", dir + "/a.json"}), {"guess"},
                     2);
  expect_clean_error(run_cli({"ays", "--model", dir + "/none.pt", "--out", dir + "/a.json"}),
                     {"none.pt"}, 2);
  {
    std::ofstream f(dir + "/junk.pt", std::ios::binary);
    f << std::string(64, '\x7f');
  }
  expect_clean_error(run_cli({"ays", "--model", dir + "/junk.pt", "--out", dir + "/a.json"}),
                     {"junk.pt"}, 3);  // corrupt: I/O
  EXPECT_FALSE(fs::exists(dir + "/a.json"));
}

}  // namespace
