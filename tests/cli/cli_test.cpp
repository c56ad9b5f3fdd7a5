// SPDX-License-Identifier: Apache-2.0
// The `diffuse` tool as a whole: help, version, unknown commands and options, progress lines when
// stderr is not a terminal.
#include <sstream>

#include "cli/cli_test_util.h"

namespace {

using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::run_cli;

/// The lines of `text` that contain `needle`.
std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::istringstream is(text);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(is, line))
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

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

// The tests' stderr is a file, not a terminal: progress comes as plain log lines (no carriage
// returns, no ANSI codes), one per update with DIFFUSE_PROGRESS_INTERVAL=0.
TEST(CliProgress, PlainLinesWhenStderrIsNotATerminal) {
  const std::string dir = cli_test_dir("progress_lines");
  auto r = run_cli({"sample", "-n", "2", "--steps", "3", "-o", dir + "/a.png"}, "", 300,
                   {"DIFFUSE_PROGRESS_INTERVAL=0"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = lines_with(r.err, "sampling: ");
  ASSERT_EQ(lines.size(), 3u) << r.err;
  EXPECT_EQ(lines[0].rfind("info: sampling: 1/3 steps (33%), ", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("info: sampling: 2/3 steps (66%), ", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("info: sampling: 3/3 steps (100%), ", 0), 0u) << lines[2];
  for (const auto& l : lines) {
    EXPECT_NE(l.find(" it/s, ETA "), std::string::npos) << l;
  }
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\033'), std::string::npos) << r.err;

  // The default interval (5 s) still logs the last update.
  r = run_cli({"sample", "-n", "2", "--steps", "3", "-o", dir + "/b.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_FALSE(lines_with(r.err, "sampling: ").empty()) << r.err;
  EXPECT_EQ(lines_with(r.err, "sampling: ").back().rfind("info: sampling: 3/3 steps (100%), ", 0),
            0u)
      << r.err;

  // -q and --no-progress: none.
  for (const char* flag : {"-q", "--no-progress"}) {
    r = run_cli({flag, "sample", "-n", "2", "--steps", "3", "-o", dir + "/c.png"}, "", 300,
                {"DIFFUSE_PROGRESS_INTERVAL=0"});
    ASSERT_EQ(r.code, 0) << flag << ": " << r.err;
    EXPECT_TRUE(lines_with(r.err, "sampling: ").empty()) << flag << ": " << r.err;
  }
}

TEST(CliProgress, BadIntervalIsAUsageError) {
  const std::string dir = cli_test_dir("progress_bad");
  for (const char* v : {"soon", "-1", "5s"}) {
    expect_clean_error(run_cli({"sample", "-n", "2", "--steps", "2", "-o", dir + "/a.png"}, "", 300,
                               {std::string("DIFFUSE_PROGRESS_INTERVAL=") + v}),
                       {"DIFFUSE_PROGRESS_INTERVAL", std::string("'") + v + "'"}, 2);
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.png"));
}

}  // namespace
