// SPDX-License-Identifier: Apache-2.0
// Runs the built `diffuse` tool as a subprocess (fork + exec, stdout/stderr captured through
// files, killed after a timeout) for the CLI tests.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_util.h"

namespace diffuse::test {

struct CliResult {
  int code = -1;  ///< exit status; 128 + signal if killed by a signal
  bool timed_out = false;
  std::string out, err;  ///< stdout, stderr
  /// Number of non-empty lines of stderr.
  int err_lines() const {
    std::istringstream is(err);
    std::string line;
    int n = 0;
    while (std::getline(is, line))
      if (!line.empty()) ++n;
    return n;
  }
};

using diffuse::testing::read_text_file;

/// A fresh directory for one test under the build tree's cli_tests/ (removed first if present).
inline std::string cli_test_dir(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DIFFUSE_CLI_TEST_DIR) / name;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  return dir.string();
}

/// A `diffuse` process started by start_cli(): its pid and the files its stdout/stderr go to.
struct CliProcess {
  pid_t pid = -1;
  std::string out_path, err_path;
  /// What it has written to stderr so far.
  std::string err_so_far() const { return read_text_file(err_path); }
};

/// Starts `diffuse --threads 1 args...` (`diffuse args...` with one_thread false) in `cwd`
/// (default: the current directory) and returns at once. One intra-op thread: ctest runs test
/// binaries side by side on 2 cores, and OpenMP threads that spin on busy cores are many times
/// slower. Environment: the test's own plus `env`
/// ("KEY=VALUE").
inline CliProcess start_cli(const std::vector<std::string>& args, const std::string& cwd = "",
                            const std::vector<std::string>& env = {}, bool one_thread = true) {
  namespace fs = std::filesystem;
  static int counter = 0;
  const fs::path tmp = fs::path(DIFFUSE_CLI_TEST_DIR) / "_io";
  fs::create_directories(tmp);
  const std::string tag = std::to_string(::getpid()) + "_" + std::to_string(counter++);
  CliProcess p;
  p.out_path = (tmp / ("out_" + tag)).string();
  p.err_path = (tmp / ("err_" + tag)).string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
    const int fo = ::open(p.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int fe = ::open(p.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fo, 1);
    ::dup2(fe, 2);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    std::string bin = DIFFUSE_CLI_PATH;
    argv.push_back(bin.data());
    std::string threads_flag = "--threads", one = "1";
    if (one_thread) {
      argv.push_back(threads_flag.data());
      argv.push_back(one.data());
    }
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  p.pid = pid;
  return p;
}

/// Waits for a started process (SIGKILL after timeout_s) and collects its result.
inline CliResult wait_cli(const CliProcess& p, double timeout_s = 300) {
  namespace fs = std::filesystem;
  CliResult r;
  int status = 0;
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const pid_t w = ::waitpid(p.pid, &status, WNOHANG);
    if (w == p.pid) break;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
        timeout_s) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  r.out = read_text_file(p.out_path);
  r.err = read_text_file(p.err_path);
  std::error_code ec;
  fs::remove(p.out_path, ec);
  fs::remove(p.err_path, ec);
  return r;
}

/// Runs `diffuse --threads 1 args...` to the end (see start_cli), killed after timeout_s.
inline CliResult run_cli(const std::vector<std::string>& args, const std::string& cwd = "",
                         double timeout_s = 300, const std::vector<std::string>& env = {},
                         bool one_thread = true) {
  return wait_cli(start_cli(args, cwd, env, one_thread), timeout_s);
}

/// Expects a clean failure: non-zero exit (not a signal, not a timeout), exactly one line on stderr
/// that contains every `needles` text.
inline void expect_clean_error(const CliResult& r, const std::vector<std::string>& needles,
                               int code = -1) {
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.code, 0) << r.err;
  EXPECT_LT(r.code, 128) << "killed by a signal: " << r.err;
  if (code >= 0) {
    EXPECT_EQ(r.code, code) << r.err;
  }
  EXPECT_EQ(r.err_lines(), 1) << r.err;
  for (const auto& n : needles)
    EXPECT_NE(r.err.find(n), std::string::npos) << "'" << n << "' not in: " << r.err;
}

/// a followed by b (argument lists).
inline std::vector<std::string> with(std::vector<std::string> a,
                                     const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// Writes text to path (binary, truncating).
inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

}  // namespace diffuse::test
