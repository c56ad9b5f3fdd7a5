// SPDX-License-Identifier: Apache-2.0
// diffuse bench: one tiny benchmark end to end (markdown table, JSON, PNG), baselines run with the
// rows that need them, and bad arguments.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>

#include "cli/cli_test_util.h"

namespace {

using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;
namespace fs = std::filesystem;

TEST(CliBench, OneSamplerWritesTableJsonAndPlot) {
  const std::string dir = cli_test_dir("bench_one");
  const auto r =
      run_cli({"bench", "--filter", "sampler_overhead/euler$", "--min-time", "0.01", "--out", dir});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string md = read_text_file(dir + "/benchmarks.md");
  // The header names the machine, the threads and LibTorch; the table has the row and its baseline.
  EXPECT_NE(md.find("Intra-op threads: 1."), std::string::npos) << md;
  EXPECT_NE(md.find("LibTorch "), std::string::npos) << md;
  EXPECT_NE(md.find("| euler | "), std::string::npos) << md;
  EXPECT_NE(md.find("| ddim | "), std::string::npos) << md;  // the baseline, though not matched
  EXPECT_EQ(md.find("| heun | "), std::string::npos) << md;  // filtered out
  EXPECT_NE(md.find("(this row) | 1.00 |"), std::string::npos) << md;

  const auto j = nlohmann::json::parse(read_text_file(dir + "/benchmarks.json"));
  ASSERT_EQ(j["benchmarks"].size(), 2u) << j.dump(2);
  for (const auto& b : j["benchmarks"]) {
    const double over = b["values"]["overhead µs/step"].get<double>();
    EXPECT_GT(over, 0.0) << b.dump();
    EXPECT_GE(b["repetitions"].get<int64_t>(), 1);
    EXPECT_DOUBLE_EQ(b["values"]["NFE/step"].get<double>(), 1.0) << b.dump();  // one call per step
  }
  // The ratio is the row's value over its baseline's, both from this run.
  const auto& ddim = j["benchmarks"][0]["name"] == "sampler_overhead/ddim" ? j["benchmarks"][0]
                                                                           : j["benchmarks"][1];
  const auto& euler = j["benchmarks"][0]["name"] == "sampler_overhead/ddim" ? j["benchmarks"][1]
                                                                            : j["benchmarks"][0];
  EXPECT_DOUBLE_EQ(euler["ratios_to_baseline"]["overhead µs/step"].get<double>(),
                   euler["values"]["overhead µs/step"].get<double>() /
                       ddim["values"]["overhead µs/step"].get<double>());

  const std::string png = read_text_file(dir + "/sampler_overhead.png");
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST(CliBench, ScalingRowsAreAgainstBatchOneAndMemoryGrowsWithBatch) {
  const std::string dir = cli_test_dir("bench_scaling");
  const auto r = run_cli({"bench", "--filter", "scaling/(sample_batch|train_batch/tiny28)/4$",
                          "--min-time", "0.01", "--out", dir});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_text_file(dir + "/benchmarks.json"));
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& b : j["benchmarks"]) by_name[b["name"].get<std::string>()] = b;
  // The two matched rows and their batch-1 baselines, nothing else.
  ASSERT_EQ(by_name.size(), 4u) << j.dump(2);
  for (const std::string kind : {"sample_batch", "train_batch/tiny28"}) {
    const auto& one = by_name.at("scaling/" + kind + "/1");
    const auto& four = by_name.at("scaling/" + kind + "/4");
    EXPECT_EQ(four["baseline"], "scaling/" + kind + "/1");
    // images/s counts the 4 images of one run (sampling: 10 steps; training: one step).
    const auto& v = four["values"];
    const double per_run = kind == "sample_batch" ? 400.0 : 4000.0;  // 4 images * 1000 / steps
    EXPECT_NEAR(v["images/s"].get<double>() * v["ms/step"].get<double>(), per_run, 1e-6 * per_run)
        << v.dump();
    EXPECT_DOUBLE_EQ(four["ratios_to_baseline"]["images/s"].get<double>(),
                     v["images/s"].get<double>() / one["values"]["images/s"].get<double>());
    // Exact tensor memory: four images' activations need more than one image's, but not more than
    // four times as much plus slack (nothing in a step is quadratic in the batch).
    const double mem_ratio = four["ratios_to_baseline"]["peak MiB"].get<double>();
    EXPECT_GT(mem_ratio, 1.5) << kind;
    EXPECT_LT(mem_ratio, 4.5) << kind;
  }
  const double share = by_name.at("scaling/sample_batch/4")["values"]["network %"].get<double>();
  EXPECT_GT(share, 0.0);
  EXPECT_LE(share, 100.0);
}

TEST(CliBench, ListNamesEverySuite) {
  const auto r = run_cli({"bench", "--list"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* name :
       {"sampler_overhead/ddim", "corrections/ddim/none", "training/fmnist/mask_0.5",
        "scaling/sample_batch/32", "scaling/sample_resolution/64", "scaling/train_batch/tiny28/1"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name << " not in\n" << r.out;
}

TEST(CliBench, BadArgumentsAreOneLineUsageErrors) {
  const std::string dir = cli_test_dir("bench_bad");
  expect_clean_error(run_cli({"bench", "--suite", "samplers", "--out", dir}),
                     {"--suite", "samplers"}, 2);
  expect_clean_error(run_cli({"bench", "--filter", "euler(", "--out", dir}), {"--filter", "euler("},
                     2);
  expect_clean_error(run_cli({"bench", "--filter", "no_such_benchmark", "--out", dir}),
                     {"no_such_benchmark"}, 2);
  expect_clean_error(run_cli({"bench", "--min-time", "-1", "--out", dir}), {"--min-time"}, 2);
  EXPECT_FALSE(fs::exists(dir + "/benchmarks.md"));
}

}  // namespace
