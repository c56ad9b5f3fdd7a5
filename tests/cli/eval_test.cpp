// SPDX-License-Identifier: Apache-2.0
// `diffuse eval`: a tiny grid of settings (one table row each, CSV + markdown + plots) and
// one-line errors.
#include <fstream>
#include <sstream>

#include "cli/cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;

std::vector<std::string> lines(const std::string& text) {
  std::istringstream is(text);
  std::vector<std::string> out;
  std::string l;
  while (std::getline(is, l))
    if (!l.empty()) out.push_back(l);
  return out;
}

TEST(CliEval, TinyGridWritesTablesAndPlots) {
  const std::string dir = cli_test_dir("eval_grid");
  const auto r = run_cli({"eval", "--num", "20", "--steps", "1,2", "--sampler",
                          "ddim,euler_a:eta=0.5,s_noise=1", "--reference-limit", "64", "--eb-num",
                          "16", "--batch-size", "10", "--out", dir + "/e"});
  ASSERT_EQ(r.code, 0) << r.err;
  // 2 samplers x 2 step counts: 4 rows, the sampler spec with two options kept whole.
  const auto csv = lines(read_text_file(dir + "/e/eval.csv"));
  ASSERT_EQ(csv.size(), 5u) << read_text_file(dir + "/e/eval.csv");
  EXPECT_EQ(csv[0].rfind("sampler,schedule,steps,cfg,", 0), 0u) << csv[0];
  EXPECT_EQ(csv[1].rfind("ddim,default,1,2,", 0), 0u) << csv[1];
  EXPECT_EQ(csv[2].rfind("ddim,default,2,2,", 0), 0u) << csv[2];
  EXPECT_EQ(csv[4].rfind("\"euler_a:eta=0.5,s_noise=1\",default,2,", 0), 0u) << csv[4];
  for (size_t i = 1; i < csv.size(); ++i) {
    EXPECT_EQ(csv[i].find("nan"), std::string::npos) << csv[i];
    EXPECT_NE(csv[i].find(",20,"), std::string::npos) << "num_samples: " << csv[i];
  }
  // Exposure bias: one row per setting and step (1 + 2 + 1 + 2).
  EXPECT_EQ(lines(read_text_file(dir + "/e/exposure_bias.csv")).size(), 1u + 6u);
  // The markdown table on stdout and in eval.md.
  EXPECT_NE(r.out.find("| 4 | euler_a:eta=0.5,s_noise=1 | default | 2 |"), std::string::npos)
      << r.out;
  EXPECT_NE(read_text_file(dir + "/e/eval.md").find("| 1 | ddim | default | 1 |"),
            std::string::npos);
  for (const char* f : {"fd_vs_steps.png", "exposure_bias.png"}) {
    const std::string png = read_text_file(dir + "/e/" + f);
    ASSERT_GT(png.size(), 8u) << f;
    EXPECT_EQ(png.substr(1, 3), "PNG") << f;
  }
}

// Each row is written as soon as it is measured, so a run that fails later keeps it; --resume
// measures only the missing settings and refuses a table of other run settings.
TEST(CliEval, RowsAreWrittenAsMeasuredAndResumeSkipsThem) {
  const std::string dir = cli_test_dir("eval_resume");
  // A two-time schedule: the 2-step setting runs, the 3-step one fails when its grid is made (a
  // configuration error, exit 2, found by the library), after the first row was measured.
  const std::string sched = "timesteps:timesteps=999;500";
  const std::vector<std::string> common = {"eval",    "--num",      "8",   "--reference-limit",
                                           "16",      "--eb-num",   "4",   "--batch-size",
                                           "8",       "--schedule", sched, "--out",
                                           dir + "/e"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  auto r = run_cli(with({"--steps", "2,3"}));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("num_steps=3"), std::string::npos) << r.err;
  auto csv = lines(read_text_file(dir + "/e/eval.csv"));
  ASSERT_EQ(csv.size(), 2u) << r.err;
  EXPECT_EQ(csv[1].rfind("dpmpp_2m," + sched + ",2,2,", 0), 0u) << csv[1];
  EXPECT_NE(read_text_file(dir + "/e/eval.md").find("| 1 | dpmpp_2m | " + sched + " | 2 | 2 |"),
            std::string::npos);
  EXPECT_EQ(lines(read_text_file(dir + "/e/exposure_bias.csv")).size(),
            1u + 2u);  // header + 2 steps
  const std::string first = csv[1];

  // --resume with a grid of two: the measured row is kept byte for byte (its seconds too), the
  // other is measured; progress counts only the new one; the plots are drawn from both.
  r = run_cli(with({"--steps", "2", "--cfg", "2,3", "--resume"}), "", 300,
              {"DIFFUSE_PROGRESS_INTERVAL=0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("--resume: 1 of 2 settings already in"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("info: eval: 1/4 steps (25%), "), std::string::npos)
      << r.err;  // 2 steps x (1 chunk + EB)
  EXPECT_NE(r.err.find("info: eval: 4/4 steps (100%), "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("info: eval: 5/"), std::string::npos) << r.err;
  csv = lines(read_text_file(dir + "/e/eval.csv"));
  ASSERT_EQ(csv.size(), 3u);
  EXPECT_EQ(csv[1], first);
  EXPECT_EQ(csv[2].rfind("dpmpp_2m," + sched + ",2,3,", 0), 0u) << csv[2];
  EXPECT_EQ(lines(read_text_file(dir + "/e/exposure_bias.csv")).size(), 1u + 2u + 2u);
  EXPECT_NE(r.out.find("| 2 | dpmpp_2m | " + sched + " | 2 | 3 |"), std::string::npos) << r.out;
  EXPECT_GT(read_text_file(dir + "/e/fd_vs_steps.png").size(), 8u);

  // A table measured with another seed or sample count is refused before any work.
  expect_clean_error(run_cli(with({"--steps", "2", "--seed", "3", "--resume"})),
                     {"seed", "'0'", "'3'"}, 2);
  std::vector<std::string> more = with({"--steps", "2", "--resume"});
  more[2] = "12";  // --num
  expect_clean_error(run_cli(more), {"num_samples", "'8'", "'12'"}, 2);
  EXPECT_EQ(lines(read_text_file(dir + "/e/eval.csv")).size(), 3u);
}

TEST(CliEval, BadArgumentsAreOneLineErrors) {
  const std::string dir = cli_test_dir("eval_bad");
  expect_clean_error(run_cli({"eval", "--sampler", "ddim,no_such_sampler", "--out", dir}),
                     {"no_such_sampler"}, 2);
  expect_clean_error(run_cli({"eval", "--steps", "2,-3", "--out", dir}), {"--steps", "-3"}, 2);
  expect_clean_error(run_cli({"eval", "--num", "2", "--out", dir}), {"--num"}, 2);
  expect_clean_error(run_cli({"eval", "--model", dir + "/missing.pt", "--out", dir}),
                     {"missing.pt"}, 2);
  {
    std::ofstream f(dir + "/junk.pt", std::ios::binary);
    f << "this is not a model file \x01\x02\x03 at all";
  }
  expect_clean_error(
      run_cli({"eval", "--model", dir + "/junk.pt", "--num", "4", "--steps", "1", "--out", dir}),
      {"junk.pt"}, 3);  // a corrupt model file: an I/O error
  EXPECT_FALSE(fs::exists(dir + "/eval.csv"));
}

}  // namespace
