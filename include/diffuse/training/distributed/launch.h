// SPDX-License-Identifier: Apache-2.0
// A single-machine launcher for data-parallel jobs (what torchrun --nproc_per_node does): starts N
// copies of a program with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set (the
// variables DistributedOptions::from_env reads), forwards SIGINT / SIGTERM / SIGHUP to them,
// passes rank 0's output through and prefixes the other ranks' lines with "[rank r] ", waits for
// all of them and, when one fails, stops the others (SIGTERM, then SIGKILL after a grace period)
// and reports the failed rank in one line. POSIX (fork + exec); the children die with the launcher
// on Linux (PR_SET_DEATHSIG). Independent of LibTorch. `diffuse train|sample --nproc N` use it.
#pragma once

#include <unistd.h>  // STDOUT_FILENO, STDERR_FILENO

#include <chrono>
#include <string>
#include <vector>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here

namespace diffuse {

/// What launch_processes() starts and how it supervises it.
struct LaunchOptions {
  /// Program to run; default "/proc/self/exe" (this program again, Linux).
  std::string executable = "/proc/self/exe";
  /// argv[1..] of every rank (argv[0] is `executable`).
  std::vector<std::string> args;
  /// Number of processes, >= 1. They get RANK = LOCAL_RANK = 0 .. nproc-1 and WORLD_SIZE = nproc.
  int nproc = 1;
  /// MASTER_ADDR given to the ranks (non-empty). Default "127.0.0.1" (one machine).
  std::string master_addr = "127.0.0.1";
  /// MASTER_PORT given to the ranks, in [0, 65535]; 0 (default) picks a free port on master_addr
  /// (find_free_port; another program could take it before rank 0 binds it, which is unlikely).
  int master_port = 0;
  /// Extra "KEY=VALUE" entries of every rank's environment (on top of this process's; the
  /// launcher's own variables win over inherited ones).
  std::vector<std::string> env;
  /// After the first failure (or a forwarded signal), how long the others get between SIGTERM and
  /// SIGKILL, >= 0. Default 5 s.
  std::chrono::milliseconds grace{5000};
  /// Whole-job limit (0 = none, the default): when it passes, every rank is stopped like after a
  /// failure and the result says timed_out. For tests and batch systems.
  std::chrono::milliseconds limit{0};
  /// Where the output goes: rank 0 writes to these descriptors directly (so a terminal stays a
  /// terminal for its progress bar); ranks >= 1 write into pipes that the launcher copies here
  /// line by line with the prefix "[rank r] ". After the first failure the other ranks' remaining
  /// output (typically "a peer exited" errors) is dropped, the failed rank's is kept.
  int out_fd = STDOUT_FILENO;
  int err_fd = STDERR_FILENO;
  /// Start of the failure line ("diffuse train" -> "diffuse train: rank 1 of 2 ...").
  std::string name = "launch";
};

/// How a launch ended.
struct LaunchResult {
  /// 0 when every rank exited with status 0. Otherwise the failed rank's exit status, 128 + signal
  /// if it was killed by one, 128 + the forwarded signal when interrupted, 124 on the limit.
  int exit_code = 0;
  /// The first rank that failed (exited non-zero or was killed by a signal), -1 if none.
  int failed_rank = -1;
  /// Its raw wait status (describe_wait_status()).
  int failed_status = 0;
  /// The signal this launcher received and forwarded (SIGINT, SIGTERM, SIGHUP), 0 if none.
  int interrupted_by = 0;
  /// Whether LaunchOptions::limit stopped the job.
  bool timed_out = false;
  /// The MASTER_PORT the ranks got.
  int master_port = 0;
  /// Every rank's wait status, by rank.
  std::vector<int> statuses;
  /// One line naming what went wrong ("" on success); launch_processes() also writes it to err_fd.
  std::string message;
};

/// "signal 9 (SIGKILL)" (the name for the common ones).
std::string describe_signal(int sig);

/// "exit status 3" or "signal 9 (SIGKILL)" for a waitpid() status.
std::string describe_wait_status(int status);

/// A TCP port that was free on `addr` (an IPv4 address; anything else binds all interfaces) when
/// this returned: binds port 0, reads the port the kernel chose and closes the socket. Throws
/// diffuse::Error if no socket can be bound.
int find_free_port(const std::string& addr = "127.0.0.1");

/// Starts options.nproc processes and supervises them until all have exited (see the file comment
/// and LaunchOptions). Returns when every rank is gone; on a failure the result's message (also
/// written to err_fd as one line) names the first failed rank and its exit status or signal, e.g.
/// "diffuse train: rank 1 of 2 (pid 4242) exited with exit status 2; stopped the other ranks".
/// SIGINT, SIGTERM and SIGHUP received meanwhile are forwarded to every rank (a second one, or the
/// grace period running out, sends SIGKILL). Throws diffuse::Error for bad options
/// or when a process cannot be started (the ranks already started are killed first). Not
/// thread-safe (it installs signal handlers for its duration).
LaunchResult launch_processes(const LaunchOptions& options);

}  // namespace diffuse
