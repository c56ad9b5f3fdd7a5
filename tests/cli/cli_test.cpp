// SPDX-License-Identifier: Apache-2.0
// The `diffuse` tool as a whole: help, version, unknown commands and options.
#include "cli/cli_test_util.h"

namespace {

using diffuse::test::expect_clean_error;
using diffuse::test::run_cli;

TEST(Cli, HelpListsEveryCommand) {
  const auto r = run_cli({"--help"});
  EXPECT_EQ(r.code, 0) << r.err;
  for (const char* c : {"sample", "train", "ays", "eval", "bench", "export"})
    EXPECT_NE(r.out.find(c), std::string::npos) << c << " missing from\n" << r.out;
}

TEST(Cli, EveryCommandHasHelpWithExamples) {
  for (const char* c : {"sample", "train", "ays", "eval", "bench", "export"}) {
    const auto r = diffuse::test::run_cli({c, "--help"});
    EXPECT_EQ(r.code, 0) << c << ": " << r.err;
    EXPECT_NE(r.out.find("Examples:"), std::string::npos) << c << " --help has no examples";
    EXPECT_NE(r.out.find(std::string("diffuse ") + c), std::string::npos) << c;
  }
}

TEST(Cli, Version) {
  const auto r = run_cli({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("0."), std::string::npos) << r.out;
}

TEST(Cli, NoCommandIsAUsageError) { expect_clean_error(run_cli({}), {"error"}, 2); }

TEST(Cli, UnknownCommandIsAUsageError) { expect_clean_error(run_cli({"smaple"}), {"smaple"}, 2); }

TEST(Cli, UnknownOptionIsAUsageError) {
  expect_clean_error(run_cli({"sample", "--no-such-option", "3"}), {"--no-such-option"}, 2);
}

}  // namespace
