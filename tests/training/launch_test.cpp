// SPDX-License-Identifier: Apache-2.0
// The single-machine launcher (training/distributed/launch.h) with /bin/sh scripts as the ranks:
// the variables each rank gets, output prefixing, a failing rank stopping the others with one
// line, SIGTERM-ignoring ranks killed after the grace period, signal forwarding and the limit.
#include <diffuse/training/distributed/launch.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "temp_dir.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

using diffuse::testing::read_text_file;

/// Options running `script` with /bin/sh as every rank, output into files in `dir`.
struct ShellLaunch {
  explicit ShellLaunch(const diffuse::test::TempDir& dir, const std::string& script, int nproc)
      : out_path(dir.path / "out.txt"), err_path(dir.path / "err.txt") {
    o.executable = "/bin/sh";
    o.args = {"-c", script};
    o.nproc = nproc;
    o.name = "test launch";
    out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    o.out_fd = out_fd;
    o.err_fd = err_fd;
  }
  ~ShellLaunch() {
    ::close(out_fd);
    ::close(err_fd);
  }
  diffuse::LaunchResult run() {
    const auto t0 = clock_type::now();
    auto r = diffuse::launch_processes(o);
    seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    return r;
  }
  std::string out() const { return read_text_file(out_path); }
  std::string err() const { return read_text_file(err_path); }

  diffuse::LaunchOptions o;
  fs::path out_path, err_path;
  int out_fd = -1, err_fd = -1;
  double seconds = 0;
};

TEST(Launch, EveryRankGetsTheTorchrunVariables) {
  diffuse::test::TempDir dir("launch_env");
  ShellLaunch l(dir,
                "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $MASTER_ADDR $MASTER_PORT $EXTRA\" > "
                "\"$DIR/rank$RANK.txt\"; echo out$RANK; echo err$RANK >&2",
                3);
  l.o.env = {"DIR=" + dir.path.string(), "EXTRA=x"};
  const auto r = l.run();
  EXPECT_EQ(r.exit_code, 0) << r.message;
  EXPECT_EQ(r.failed_rank, -1);
  EXPECT_TRUE(r.message.empty()) << r.message;
  ASSERT_GT(r.master_port, 0);
  ASSERT_EQ(r.statuses.size(), 3u);
  for (int rank = 0; rank < 3; ++rank) {
    const std::string want = std::to_string(rank) + " 3 " + std::to_string(rank) + " 127.0.0.1 " +
                             std::to_string(r.master_port) + " x\n";
    EXPECT_EQ(read_text_file(dir.path / ("rank" + std::to_string(rank) + ".txt")), want);
  }
  // Rank 0 as is; the others' lines prefixed, on the stream they wrote to.
  const std::string out = l.out(), err = l.err();
  EXPECT_NE(out.find("out0\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("] out0"), std::string::npos) << out;
  EXPECT_NE(out.find("[rank 1] out1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("[rank 2] out2\n"), std::string::npos) << out;
  EXPECT_NE(err.find("[rank 2] err2\n"), std::string::npos) << err;
  EXPECT_EQ(err.find("out1"), std::string::npos) << err;

  // A given port is passed on as is; the launcher's own RANK does not leak into the ranks.
  ::setenv("RANK", "7", 1);
  ShellLaunch p(dir, "echo $RANK:$MASTER_PORT", 2);
  p.o.master_port = 29517;
  ASSERT_EQ(p.run().exit_code, 0);
  ::unsetenv("RANK");
  EXPECT_NE(p.out().find("0:29517\n"), std::string::npos) << p.out();
  EXPECT_NE(p.out().find("[rank 1] 1:29517\n"), std::string::npos) << p.out();
}

// Rank 1 fails while rank 0 would run for 30 s: the launcher stops rank 0 (SIGTERM), keeps rank
// 1's last words, drops what rank 2 prints after the failure, and reports rank 1 in one line.
TEST(Launch, AFailingRankStopsTheOthersWithOneLine) {
  diffuse::test::TempDir dir("launch_fail");
  ShellLaunch l(dir,
                "if [ $RANK = 1 ]; then sleep 0.3; echo 'bad value' >&2; exit 3; fi; "
                "if [ $RANK = 2 ]; then trap 'kill $!; echo late >&2; exit 1' TERM; "
                "sleep 30 & wait; fi; exec sleep 30",
                3);
  const auto r = l.run();
  EXPECT_LT(l.seconds, 10) << "the other ranks were not stopped";
  EXPECT_EQ(r.failed_rank, 1);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(WIFEXITED(r.failed_status) && WEXITSTATUS(r.failed_status) == 3);
  EXPECT_TRUE(WIFSIGNALED(r.statuses[0]) && WTERMSIG(r.statuses[0]) == SIGTERM) << r.statuses[0];
  EXPECT_NE(r.message.find("test launch: rank 1 of 3 (pid "), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("exited with exit status 3; stopped the other ranks"), std::string::npos)
      << r.message;
  EXPECT_EQ(r.message.find('\n'), std::string::npos);
  const std::string err = l.err();
  EXPECT_EQ(err, "[rank 1] bad value\n" + r.message + "\n");
}

TEST(Launch, ARankKilledByASignalIsNamed) {
  diffuse::test::TempDir dir("launch_signal");
  ShellLaunch l(dir, "if [ $RANK = 0 ]; then kill -9 $$; fi; exec sleep 30", 2);
  const auto r = l.run();
  EXPECT_LT(l.seconds, 10);
  EXPECT_EQ(r.failed_rank, 0);
  EXPECT_EQ(r.exit_code, 128 + SIGKILL);
  EXPECT_NE(r.message.find("rank 0 of 2"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("was killed by signal 9 (SIGKILL)"), std::string::npos) << r.message;
}

// A rank that ignores SIGTERM is killed when the grace period ends. Rank 1 fails only once rank
// 0 has set its trap (a marker file): on a loaded machine the SIGTERM could otherwise arrive
// before the trap and kill rank 0 by TERM instead.
TEST(Launch, RanksIgnoringSigtermAreKilledAfterTheGracePeriod) {
  diffuse::test::TempDir dir("launch_grace");
  const std::string ready = (dir.path / "trap_set").string();
  ShellLaunch l(dir,
                "if [ $RANK = 1 ]; then while [ ! -f '" + ready +
                    "' ]; do sleep 0.02; done; exit 4; fi; trap '' TERM; : > '" + ready +
                    "'; exec sleep 30",
                2);
  l.o.grace = std::chrono::milliseconds(300);
  const auto r = l.run();
  EXPECT_LT(l.seconds, 10);
  EXPECT_EQ(r.failed_rank, 1);
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_TRUE(WIFSIGNALED(r.statuses[0]) && WTERMSIG(r.statuses[0]) == SIGKILL) << r.statuses[0];
}

// SIGTERM sent to the launcher reaches every rank; the result says so.
TEST(Launch, ForwardsSigtermToTheRanks) {
  diffuse::test::TempDir dir("launch_forward");
  ShellLaunch l(dir,
                "trap 'kill $!; echo \"got TERM $RANK\" > \"$DIR/term$RANK.txt\"; exit 0' TERM; "
                "touch \"$DIR/up$RANK\"; sleep 30 & wait",
                2);
  l.o.env = {"DIR=" + dir.path.string()};
  std::thread sender([&] {
    const auto deadline = clock_type::now() + std::chrono::seconds(10);
    while ((!fs::exists(dir.path / "up0") || !fs::exists(dir.path / "up1")) &&
           clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ::kill(::getpid(), SIGTERM);
  });
  const auto r = l.run();
  sender.join();
  EXPECT_LT(l.seconds, 12);
  EXPECT_EQ(r.interrupted_by, SIGTERM);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM);
  EXPECT_EQ(r.failed_rank, -1);
  EXPECT_EQ(read_text_file(dir.path / "term0.txt"), "got TERM 0\n");
  EXPECT_EQ(read_text_file(dir.path / "term1.txt"), "got TERM 1\n");
  EXPECT_NE(r.message.find("interrupted by signal 15 (SIGTERM), forwarded to the 2 ranks"),
            std::string::npos)
      << r.message;
  // The handlers are restored afterwards (the test process still has SIGTERM's default).
  struct sigaction now {};
  ::sigaction(SIGTERM, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);
}

TEST(Launch, TheLimitStopsAHungJob) {
  diffuse::test::TempDir dir("launch_limit");
  ShellLaunch l(dir, "exec sleep 30", 2);
  l.o.limit = std::chrono::milliseconds(500);
  const auto r = l.run();
  EXPECT_LT(l.seconds, 10);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 124);
  EXPECT_NE(r.message.find("ran past the limit of 500 ms"), std::string::npos) << r.message;
}

TEST(Launch, BadOptionsAreErrorsThatNameThem) {
  const auto error_of = [](const diffuse::LaunchOptions& o) -> std::string {
    try {
      diffuse::launch_processes(o);
    } catch (const diffuse::Error& e) {
      return e.what();
    }
    return "<no error>";
  };
  diffuse::LaunchOptions o;
  o.nproc = 0;
  EXPECT_NE(error_of(o).find("nproc must be >= 1, got 0"), std::string::npos);
  o.nproc = 1;
  o.master_port = 70000;
  EXPECT_NE(error_of(o).find("master_port must be in [0, 65535], got 70000"), std::string::npos);
  o.master_port = 0;
  o.executable = "/no/such/program";
  EXPECT_NE(error_of(o).find("cannot execute '/no/such/program'"), std::string::npos);
  // find_free_port gives a port that can be bound.
  const int port = diffuse::find_free_port();
  EXPECT_GT(port, 0);
  EXPECT_EQ(diffuse::describe_wait_status(3 << 8), "exit status 3");
}

}  // namespace
