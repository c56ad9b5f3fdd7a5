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
  const auto r = run_cli({"eval", "--num", "20", "--steps", "1,2", "--sampler", "ddim,euler_a:eta=0.5,s_noise=1",
                          "--reference-limit", "64", "--eb-num", "16", "--batch-size", "10", "--out", dir + "/e"});
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
  EXPECT_NE(r.out.find("| 4 | euler_a:eta=0.5,s_noise=1 | default | 2 |"), std::string::npos) << r.out;
  EXPECT_NE(read_text_file(dir + "/e/eval.md").find("| 1 | ddim | default | 1 |"), std::string::npos);
  for (const char* f : {"fd_vs_steps.png", "exposure_bias.png"}) {
    const std::string png = read_text_file(dir + "/e/" + f);
    ASSERT_GT(png.size(), 8u) << f;
    EXPECT_EQ(png.substr(1, 3), "PNG") << f;
  }
}

TEST(CliEval, BadArgumentsAreOneLineErrors) {
  const std::string dir = cli_test_dir("eval_bad");
  expect_clean_error(run_cli({"eval", "--sampler", "ddim,no_such_sampler", "--out", dir}), {"no_such_sampler"}, 2);
  expect_clean_error(run_cli({"eval", "--steps", "2,-3", "--out", dir}), {"--steps", "-3"}, 2);
  expect_clean_error(run_cli({"eval", "--num", "2", "--out", dir}), {"--num"}, 2);
  expect_clean_error(run_cli({"eval", "--model", dir + "/missing.pt", "--out", dir}), {"missing.pt"}, 2);
  {
    std::ofstream f(dir + "/junk.pt", std::ios::binary);
    f << "this is not a model file \x01\x02\x03 at all";
  }
  expect_clean_error(run_cli({"eval", "--model", dir + "/junk.pt", "--num", "4", "--steps", "1", "--out", dir}),
                     {"junk.pt"}, 1);
  EXPECT_FALSE(fs::exists(dir + "/eval.csv"));
}

}  // namespace
