// SPDX-License-Identifier: Apache-2.0
// --nproc for `diffuse train` and `diffuse sample`: the options, the launcher (this program
// re-executed N times through <diffuse/training/distributed/launch.h>) and, in a launched rank, its
// membership of the c10d process group (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as torchrun
// sets them; a manual launch with these variables works the same).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <diffuse/training/distributed/launch.h>
#include <diffuse/training/distributed/sampling.h>

#if __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && \
    __has_include(<gloo/config.h>) && defined(USE_C10D_GLOO)
#define DIFFUSE_CLI_DISTRIBUTED 1
#include <diffuse/training/distributed.h>
#else
#define DIFFUSE_CLI_DISTRIBUTED 0
#endif

#include "cli.h"

namespace diffuse::cli {

/// The options --nproc, --master-port and --dist-timeout.
struct ParallelArgs {
  int nproc = 1;
  std::string master_port = "auto";
  double timeout_s = 300;
};

inline void add_parallel_options(CLI::App& app, ParallelArgs& p) {
  app.add_option(
         "--nproc", p.nproc,
         "Processes on this machine (data-parallel ranks): re-runs this command N times with "
         "RANK/WORLD_SIZE/MASTER_PORT set; --threads defaults to cores / N")
      ->capture_default_str()
      ->group("Processes");
  app.add_option("--master-port", p.master_port,
                 "TCP port of rank 0's rendezvous with --nproc (auto or 0: a free one)")
      ->capture_default_str()
      ->group("Processes");
  app.add_option("--dist-timeout", p.timeout_s,
                 "Seconds a rank waits for the others in a collective before failing (a rank that "
                 "dies is noticed at once)")
      ->capture_default_str()
      ->group("Processes");
}

/// This process's place in a launched job.
struct RankInfo {
  int rank = 0;
  int world_size = 1;
  bool launched() const { return world_size > 1; }
};

/// RANK / WORLD_SIZE from the environment (a launched rank) or rank 0 of 1. Ranks other than 0
/// log warnings and errors only and draw no progress bar.
inline RankInfo rank_from_env() {
  RankInfo info;
  const char* ws = std::getenv("WORLD_SIZE");
  if (ws == nullptr || *ws == '\0') return info;
#if DIFFUSE_CLI_DISTRIBUTED
  diffuse::DistributedOptions o;
  try {
    o = diffuse::DistributedOptions::from_env();
  } catch (const diffuse::Error& e) {
    throw UsageError(error_message(e));
  }
  info.rank = o.rank;
  info.world_size = o.world_size;
#else
  require(std::string(ws) == "1",
          std::string("WORLD_SIZE=") + ws +
              ": this build of diffuse has no c10d/Gloo (distributed) support");
#endif
  if (info.rank != 0) {
    global().no_progress = true;
    if (global().verbose == 0) spdlog::set_level(spdlog::level::warn);
  }
  return info;
}

/// The checks of the options shared by both commands (before launching or in a rank).
inline void check_parallel_args(const ParallelArgs& p) {
  require(p.nproc >= 1 && p.nproc <= 1024,
          "--nproc must be in [1, 1024], got " + std::to_string(p.nproc));
  require(
      p.timeout_s > 0 && p.timeout_s <= 86400,
      "--dist-timeout must be in (0, 86400] seconds, got " + diffuse::format_double(p.timeout_s));
}

inline int parse_master_port(const std::string& text) {
  if (text == "auto" || text == "0") return 0;
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  require(!text.empty() && *end == '\0' && v >= 1 && v <= 65535,
          "--master-port must be auto, 0 or a port in [1, 65535], got '" + text + "'");
  return static_cast<int>(v);
}

/// This process's command line (Linux /proc/self/cmdline), argv[0] included.
inline std::vector<std::string> own_arguments() {
  std::vector<std::string> args;
  const int fd = ::open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw diffuse::IOError("--nproc: cannot read /proc/self/cmdline (the launcher needs Linux)");
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) all.append(buf, static_cast<size_t>(n));
  ::close(fd);
  size_t start = 0;
  for (size_t z = all.find('\0'); z != std::string::npos; z = all.find('\0', start)) {
    args.push_back(all.substr(start, z - start));
    start = z + 1;
  }
  return args;
}

/// The ranks' arguments: this command line without argv[0], --nproc and --master-port (and their
/// values), with "--threads T" in front when --threads was not given (T = max(1, cores / nproc)).
inline std::vector<std::string> rank_arguments(const std::vector<std::string>& own, int nproc,
                                               int64_t threads) {
  std::vector<std::string> out;
  if (threads == 0) {
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    out.push_back("--threads");
    out.push_back(std::to_string(std::max(1, hw / nproc)));
  }
  for (size_t i = 1; i < own.size(); ++i) {
    const std::string& a = own[i];
    // An explicit "--threads 0" is replaced by the split above.
    const bool drop_threads = threads == 0 && a == "--threads";
    if (a == "--nproc" || a == "--master-port" || drop_threads) {
      ++i;  // and its value
      continue;
    }
    if (a.rfind("--nproc=", 0) == 0 || a.rfind("--master-port=", 0) == 0) continue;
    if (threads == 0 && a.rfind("--threads=", 0) == 0) continue;
    out.push_back(a);
  }
  return out;
}

/// With --nproc N > 1 (in a process that is not itself a launched rank): runs this command as N
/// ranks and returns the launcher's exit code; otherwise nothing (run the command here).
inline std::optional<int> launch_if_requested(const ParallelArgs& p, const std::string& command) {
  check_parallel_args(p);
  const int port = parse_master_port(p.master_port);
  if (p.nproc <= 1) return std::nullopt;
  const char* ws = std::getenv("WORLD_SIZE");
  require(ws == nullptr || *ws == '\0',
          "--nproc " + std::to_string(p.nproc) +
              " in a process that is already a rank (WORLD_SIZE=" + std::string(ws ? ws : "") +
              " is set): use one or the other");
#if !DIFFUSE_CLI_DISTRIBUTED
  (void)port;
  throw UsageError("--nproc " + std::to_string(p.nproc) +
                   ": this build of diffuse has no c10d/Gloo (distributed) support");
#else
  diffuse::LaunchOptions lo;
  lo.nproc = p.nproc;
  lo.args = rank_arguments(own_arguments(), p.nproc, global().threads);
  lo.master_port = port > 0 ? port : diffuse::find_free_port(lo.master_addr);
  lo.name = "diffuse " + command;
  // train: a forwarded SIGINT/SIGTERM makes every rank finish its step and rank 0 write a
  // checkpoint (diffuse::StopSignalGuard); give that time before SIGKILL (a second signal still
  // kills at once).
  if (command == "train") lo.grace = std::chrono::seconds(60);
  spdlog::info(
      "launching {} processes (RANK 0..{}, MASTER_PORT {}, {} intra-op threads each); "
      "rank 0 reports, the other ranks' warnings and errors are prefixed [rank r]",
      p.nproc, p.nproc - 1, lo.master_port,
      lo.args.size() >= 2 && lo.args[0] == "--threads" ? lo.args[1]
                                                       : std::to_string(global().threads));
  return diffuse::launch_processes(lo).exit_code;
#endif
}

/// The process group of a launched rank (nullptr-equivalent when world_size is 1).
struct RankGroup {
  RankInfo info;
#if DIFFUSE_CLI_DISTRIBUTED
  std::unique_ptr<diffuse::DistributedContext> ctx;
#endif
  /// The gather sample_sharded() needs (empty for one process).
  diffuse::AllGatherFn all_gather() {
#if DIFFUSE_CLI_DISTRIBUTED
    if (ctx) return [this](const at::Tensor& t) { return ctx->all_gather(t); };
#endif
    return {};
  }
};

/// Joins the job's process group (the rendezvous with the other ranks) when this is a launched
/// rank; does nothing for a single process.
inline void join_group(RankGroup& g, const ParallelArgs& p) {
  if (!g.info.launched()) return;
#if DIFFUSE_CLI_DISTRIBUTED
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(p.timeout_s * 1000.0));
  g.ctx =
      std::make_unique<diffuse::DistributedContext>(diffuse::DistributedOptions::from_env(timeout));
#else
  (void)p;
#endif
}

}  // namespace diffuse::cli
