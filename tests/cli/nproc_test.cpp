// SPDX-License-Identifier: Apache-2.0
// `diffuse sample|train --nproc N`: the CLI launches itself as N data-parallel ranks. Sampling
// sharded over 2 ranks writes the same PNG bytes as 1 process; training with 2 ranks ends at the
// 1-process model (same global batch) and resumes; a rank that fails or is killed makes the
// launcher exit non-zero with one line naming it, in time.
#include <dirent.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include <diffuse/training/image.h>
#include <diffuse/training/model_file.h>

#include "cli/cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using diffuse::test::cli_test_dir;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;
using diffuse::test::with;
using diffuse::test::write_file;

/// The last non-empty line of a text.
std::string last_line(const std::string& text) {
  std::istringstream is(text);
  std::string line, last;
  while (std::getline(is, line))
    if (!line.empty()) last = line;
  return last;
}

TEST(CliNproc, ShardedSamplingWritesTheSameBytesAsOneProcess) {
  const std::string dir = cli_test_dir("nproc_sample");
  // A stochastic sampler with guidance, 9 images. With 2 processes and no --batch-size each rank
  // samples one batch of ceil(9 / 2) = 5 (images 0-4 on rank 0, 5-8 on rank 1) and the record
  // says batch_size 5: the same bytes as one process with --batch-size 5.
  const std::vector<std::string> base = {"sample", "--sampler", "euler_a", "--steps", "3",  "-n",
                                         "9",      "--seed",    "5",       "--cfg",   "2.5"};
  auto r = run_cli(
      with(base, {"--batch-size", "5", "--nproc", "1", "-o", "one.png", "--save-tensor", "one.pt"}),
      dir);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli(with(base, {"--nproc", "2", "--master-port", "auto", "-o", "two.png", "--save-tensor",
                          "two.pt"}),
              dir, 120);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("launching 2 processes"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("[rank 1]"), std::string::npos) << "rank 1 should be quiet: " << r.err;
  const std::string one = read_text_file(dir + "/one.png");
  ASSERT_FALSE(one.empty());
  EXPECT_EQ(one, read_text_file(dir + "/two.png"))
      << "the 2-process grid differs from the 1-process grid";
  EXPECT_EQ(read_text_file(dir + "/one.pt"), read_text_file(dir + "/two.pt"));
  const auto rec = nlohmann::json::parse(read_text_file(dir + "/two.json"));
  EXPECT_EQ(rec["settings"]["batch_size"], 5);
  EXPECT_EQ(read_text_file(dir + "/one.json"), read_text_file(dir + "/two.json"));
}

/// The DiT parameters of a model file.
std::vector<at::Tensor> model_parameters(const std::string& path) {
  const diffuse::LoadedModel m = diffuse::load_model(path);
  EXPECT_TRUE(m.dit.has_value());
  std::vector<at::Tensor> p;
  if (m.dit)
    for (const auto& t : (*m.dit)->parameters()) p.push_back(t.detach().clone());
  return p;
}

double max_difference(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
  return d;
}

// Global batch 8: 2 ranks x 4 train 3 steps, then resume to 5 steps; one process trains the 5
// steps straight. ema_decay 0 makes model.pt hold the trained weights themselves. Tolerance as in
// the library test (tests/training/distributed_test.cpp): the ranks' gradient sums round
// differently.
TEST(CliNproc, TrainingOnTwoRanksResumesToTheOneProcessModel) {
  const std::string dir = cli_test_dir("nproc_train");
  write_file(dir + "/tiny.json",
             R"({"preset": "tiny", "patch": 4, "limit": 64, "batch_size": 8, "steps": 5,
    "minutes": 0, "sample_every": 0, "sample_steps": 1, "checkpoint_every": 0, "log_every": 1,
    "warmup": 0, "ema_decay": 0, "lr": 1e-3})");
  auto r = run_cli({"train", "--config", dir + "/tiny.json", "--out", dir + "/one"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"train", "--config", dir + "/tiny.json", "--out", dir + "/two", "--steps", "3",
               "--nproc", "2"},
              "", 120);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("x 2 processes"), std::string::npos) << r.err;
  for (const char* f : {"config.json", "loss.csv", "loss.png", "samples_final.png", "model.pt",
                        "checkpoints/ckpt_00000003.pt"})
    EXPECT_TRUE(fs::exists(dir + "/two/" + f)) << f;
  const auto p3 = model_parameters(dir + "/two/model.pt");

  // Both ranks resume from rank 0's checkpoint.
  r = run_cli({"train", "--out", dir + "/two", "--steps", "5", "--nproc", "2"}, "", 120);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("ckpt_00000003.pt at step 3"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/two/checkpoints/ckpt_00000005.pt"));
  const auto p1 = model_parameters(dir + "/one/model.pt");
  const double d = max_difference(p1, model_parameters(dir + "/two/model.pt"));
  EXPECT_LT(d, 2e-5);
  std::printf("max |2 ranks (resumed at 3) - 1 process| of the model after 5 steps: %.3g\n", d);
  // Not vacuous: the last two steps moved the weights by much more than the tolerance.
  EXPECT_GT(max_difference(p1, p3), 1e-3);
  // The loss log is continued, with the global means of one process's (to float precision).
  std::istringstream one(read_text_file(dir + "/one/loss.csv")),
      two(read_text_file(dir + "/two/loss.csv"));
  std::string a, b;
  int rows = 0;
  while (std::getline(one, a) && std::getline(two, b)) {
    if (rows++ == 0) continue;  // header
    const double la = std::stod(a.substr(a.find(',') + 1)),
                 lb = std::stod(b.substr(b.find(',') + 1));
    EXPECT_EQ(a.substr(0, a.find(',')), b.substr(0, b.find(',')));
    EXPECT_NEAR(la, lb, 1e-5 * std::abs(la)) << a << " vs " << b;
  }
  EXPECT_EQ(rows, 6);
}

// A bad argument is found before launching (one line, nothing started); a failure that only the
// ranks meet (here: a data folder without Fashion-MNIST, an I/O error: exit 3) ends the launcher
// with the failed rank's exit status and, as the last line, the launcher's line naming it.
TEST(CliNproc, ARankThatFailsMakesTheLauncherFailWithOneLine) {
  const std::string dir = cli_test_dir("nproc_fail");
  auto r = run_cli({"sample", "--nproc", "2", "--model", "no_such_model.pt", "-n", "2"}, dir, 60);
  diffuse::test::expect_clean_error(r, {"no_such_model.pt", "does not exist"}, 2);

  fs::create_directories(dir + "/empty");
  r = run_cli({"train", "--nproc", "2", "--out", dir + "/run", "--minutes", "0", "--batch-size",
               "8", "--data-dir", dir + "/empty"},
              dir, 60);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.code, 3) << r.err;
  const std::string last = last_line(r.err);
  EXPECT_NE(last.find("diffuse train: rank "), std::string::npos) << r.err;
  EXPECT_NE(last.find(" of 2 (pid "), std::string::npos) << r.err;
  EXPECT_NE(last.find("exited with exit status 3; stopped the other ranks"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(dir + "/empty"), std::string::npos) << r.err;  // the rank's own error
  EXPECT_LE(r.err_lines(), 4)
      << r.err;  // launching, the rank's error (once or twice), the last line
  EXPECT_FALSE(fs::exists(dir + "/run/model.pt"));
}

/// The pid of a process whose environment holds every one of `entries`, or -1.
pid_t find_process_with_env(const std::vector<std::string>& entries) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  pid_t found = -1;
  while (const dirent* e = ::readdir(proc)) {
    const std::string name = e->d_name;
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string env = read_text_file("/proc/" + name + "/environ");
    std::vector<std::string> vars;
    for (size_t start = 0, z; (z = env.find('\0', start)) != std::string::npos; start = z + 1)
      vars.push_back(env.substr(start, z - start));
    bool all = true;
    for (const auto& want : entries)
      all = all && std::find(vars.begin(), vars.end(), want) != vars.end();
    if (all) {
      found = static_cast<pid_t>(std::stol(name));
      break;
    }
  }
  ::closedir(proc);
  return found;
}

// Rank 1 is SIGKILLed while sampling: the launcher stops rank 0 and reports rank 1's signal.
TEST(CliNproc, AKilledRankMakesTheLauncherFailInTime) {
  const std::string dir = cli_test_dir("nproc_kill");
  const std::string mark = "DIFFUSE_NPROC_TEST_MARK=" + std::to_string(::getpid());
  std::atomic<bool> done{false};
  std::atomic<pid_t> killed{-1};
  std::thread killer([&] {
    while (!done) {
      const pid_t pid = find_process_with_env({mark, "RANK=1"});
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        killed = pid;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_cli({"sample", "--nproc", "2", "--steps", "2000", "-n", "4"}, dir, 60, {mark});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done = true;
  killer.join();
  ASSERT_GT(killed.load(), 0) << "rank 1 was never seen: " << r.err;
  EXPECT_FALSE(r.timed_out);
  EXPECT_LT(secs, 30);
  EXPECT_EQ(r.code, 128 + SIGKILL) << r.err;
  EXPECT_EQ(last_line(r.err), "diffuse sample: rank 1 of 2 (pid " + std::to_string(killed.load()) +
                                  ") was killed by signal 9 (SIGKILL); stopped the other ranks")
      << r.err;
  EXPECT_FALSE(fs::exists(dir + "/diffuse_samples.png"));
}

TEST(CliNproc, BadOptionsAreOneLineUsageErrors) {
  const std::string dir = cli_test_dir("nproc_usage");
  auto r = run_cli({"sample", "--nproc", "2", "--master-port", "x"}, dir);
  diffuse::test::expect_clean_error(
      r, {"--master-port must be auto, 0 or a port in [1, 65535], got 'x'"}, 2);
  // The training time budget cannot be shared by the ranks; the global batch must split evenly.
  r = run_cli({"train", "--nproc", "2", "--out", dir + "/run", "--minutes", "5"}, dir);
  diffuse::test::expect_clean_error(r, {"config key 'minutes' = 5.0 must be 0 with 2 processes"},
                                    2);
  r = run_cli(
      {"train", "--nproc", "3", "--out", dir + "/run", "--minutes", "0", "--batch-size", "8"}, dir);
  diffuse::test::expect_clean_error(r, {"must be divisible by grad_accum * processes (1 * 3)"}, 2);
  // --nproc inside a launched rank.
  r = run_cli({"sample", "--nproc", "2"}, dir, 60, {"WORLD_SIZE=2", "RANK=0", "MASTER_PORT=29999"});
  diffuse::test::expect_clean_error(r, {"already a rank (WORLD_SIZE=2 is set)"}, 2);
}

}  // namespace
