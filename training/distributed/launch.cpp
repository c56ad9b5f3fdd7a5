// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/distributed/launch.h>.
#include <diffuse/training/distributed/launch.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#endif

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <diffuse/config.h>

extern char** environ;
namespace diffuse {

std::string describe_signal(int sig) {
  const char* name = sig == SIGKILL   ? "SIGKILL"
                     : sig == SIGTERM ? "SIGTERM"
                     : sig == SIGINT  ? "SIGINT"
                     : sig == SIGSEGV ? "SIGSEGV"
                     : sig == SIGABRT ? "SIGABRT"
                     : sig == SIGBUS  ? "SIGBUS"
                     : sig == SIGHUP  ? "SIGHUP"
                     : sig == SIGPIPE ? "SIGPIPE"
                     : sig == SIGFPE  ? "SIGFPE"
                     : sig == SIGILL  ? "SIGILL"
                                      : nullptr;
  return "signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : std::string());
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return describe_signal(WTERMSIG(status));
  return "wait status " + std::to_string(status);
}

int find_free_port(const std::string& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  check(fd >= 0, "find_free_port: socket() failed: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  if (::inet_pton(AF_INET, addr.c_str(), &a.sin_addr) != 1) a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(a);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  const int err = errno;
  ::close(fd);
  check(ok, "find_free_port: cannot bind a TCP port on ", addr, ": ", std::strerror(err));
  return ntohs(a.sin_port);
}

namespace detail {

int& launch_signal_fd() {
  static int fd = -1;
  return fd;
}

void launch_on_signal(int sig) {
  const int saved = errno;
  const int fd = launch_signal_fd();
  if (fd >= 0) {
    const unsigned char b = static_cast<unsigned char>(sig);
    [[maybe_unused]] const ssize_t n = ::write(fd, &b, 1);
  }
  errno = saved;
}

void write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // a closed terminal or pipe: drop the output, keep supervising
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

/// One rank's pipe: bytes in, "[rank r] "-prefixed complete lines out.
struct LaunchStream {
  int fd = -1;      ///< read end, -1 when closed
  int out_fd = -1;  ///< where its lines go
  int rank = 0;
  std::string pending;  ///< an incomplete last line

  void emit(const std::string& data, bool forward) {
    pending += data;
    size_t start = 0;
    for (size_t nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
      if (forward) {
        const std::string line =
            "[rank " + std::to_string(rank) + "] " + pending.substr(start, nl + 1 - start);
        write_all(out_fd, line.data(), line.size());
      }
      start = nl + 1;
    }
    pending.erase(0, start);
  }
  /// Reads what is there (non-blocking); closes at EOF, flushing an unterminated last line.
  void drain(bool forward) {
    if (fd < 0) return;
    char buf[4096];
    while (true) {
      const ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n > 0) {
        emit(std::string(buf, static_cast<size_t>(n)), forward);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      ::close(fd);  // EOF or an error
      fd = -1;
      if (!pending.empty()) emit("\n", forward);
      return;
    }
  }
};

}  // namespace detail

LaunchResult launch_processes(const LaunchOptions& options) {
  using clock = std::chrono::steady_clock;
  const LaunchOptions& o = options;
  check(o.nproc >= 1, "launch: nproc must be >= 1, got ", o.nproc);
  check(!o.executable.empty(), "launch: executable must not be empty");
  check(!o.master_addr.empty(), "launch: master_addr must not be empty");
  check(o.master_port >= 0 && o.master_port <= 65535,
        "launch: master_port must be in [0, 65535], got ", o.master_port);
  check(o.grace.count() >= 0, "launch: grace must be >= 0 ms, got ", o.grace.count());
  check(o.limit.count() >= 0, "launch: limit must be >= 0 ms, got ", o.limit.count());
  check(::access(o.executable.c_str(), X_OK) == 0, "launch: cannot execute '", o.executable,
        "': ", std::strerror(errno));

  LaunchResult res;
  res.master_port = o.master_port > 0 ? o.master_port : find_free_port(o.master_addr);
  res.statuses.assign(static_cast<size_t>(o.nproc), 0);

  // Everything a child needs is built before fork(): after it only async-signal-safe calls.
  std::vector<std::string> base_env;
  const auto overridden = [&](const std::string& kv) {
    for (const char* k : {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=",
                          "MASTER_ADDR=", "MASTER_PORT="})
      if (kv.rfind(k, 0) == 0) return true;
    for (const std::string& e : o.env) {
      const auto eq = e.find('=');
      if (eq != std::string::npos && kv.compare(0, eq + 1, e, 0, eq + 1) == 0) return true;
    }
    return false;
  };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    if (!overridden(*e)) base_env.emplace_back(*e);
  for (const std::string& e : o.env) base_env.push_back(e);
  base_env.push_back("WORLD_SIZE=" + std::to_string(o.nproc));
  base_env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(o.nproc));
  base_env.push_back("MASTER_ADDR=" + o.master_addr);
  base_env.push_back("MASTER_PORT=" + std::to_string(res.master_port));

  std::vector<std::string> argv_text;
  argv_text.push_back(o.executable);
  for (const std::string& a : o.args) argv_text.push_back(a);
  std::vector<char*> argv;
  for (std::string& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Signals -> a self-pipe the loop polls (SIGCHLD too, so an exit is seen at once).
  int sig_pipe[2];
  check(::pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) == 0,
        "launch: pipe() failed: ", std::strerror(errno));
  detail::launch_signal_fd() = sig_pipe[1];
  const int handled[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};
  struct sigaction old_actions[4];
  for (int i = 0; i < 4; ++i) {
    struct sigaction sa {};
    sa.sa_handler = detail::launch_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | (handled[i] == SIGCHLD ? SA_NOCLDSTOP : 0);
    ::sigaction(handled[i], &sa, &old_actions[i]);
  }
  const auto restore = [&] {
    for (int i = 0; i < 4; ++i) ::sigaction(handled[i], &old_actions[i], nullptr);
    detail::launch_signal_fd() = -1;
    ::close(sig_pipe[0]);
    ::close(sig_pipe[1]);
  };

  std::vector<pid_t> pids(static_cast<size_t>(o.nproc), -1);
  std::vector<bool> alive(static_cast<size_t>(o.nproc), false);
  std::vector<detail::LaunchStream> streams;  // ranks >= 1: stdout, stderr
  const pid_t launcher = ::getpid();
  const auto kill_all = [&](int sig) {
    for (size_t r = 0; r < pids.size(); ++r)
      if (alive[r]) ::kill(pids[r], sig);
  };

  for (int rank = 0; rank < o.nproc; ++rank) {
    std::vector<std::string> env_text = base_env;
    env_text.push_back("RANK=" + std::to_string(rank));
    env_text.push_back("LOCAL_RANK=" + std::to_string(rank));
    std::vector<char*> envp;
    for (std::string& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    if (rank > 0 && (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0)) {
      const int err = errno;
      kill_all(SIGKILL);
      for (size_t r = 0; r < pids.size(); ++r)
        if (alive[r]) ::waitpid(pids[r], nullptr, 0);
      restore();
      throw Error(detail::cat("launch: pipe() failed: ", std::strerror(err)));
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      // The child: default signal dispositions, its output descriptors, then exec.
      for (int i = 0; i < 4; ++i) ::signal(handled[i], SIG_DFL);
#if defined(__linux__)
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher) ::_exit(127);
#endif
      const int out_fd = rank > 0 ? out_pipe[1] : o.out_fd;
      const int err_fd = rank > 0 ? err_pipe[1] : o.err_fd;
      if (out_fd != STDOUT_FILENO) ::dup2(out_fd, STDOUT_FILENO);
      if (err_fd != STDERR_FILENO) ::dup2(err_fd, STDERR_FILENO);
      ::execve(argv[0], argv.data(), envp.data());
      const char msg[] = "launch: execve failed\n";
      [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
      ::_exit(127);
    }
    if (pid < 0) {
      const int err = errno;
      for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]})
        if (fd >= 0) ::close(fd);
      kill_all(SIGKILL);
      for (size_t r = 0; r < pids.size(); ++r)
        if (alive[r]) ::waitpid(pids[r], nullptr, 0);
      restore();
      throw Error(detail::cat("launch: fork() failed for rank ", rank, ": ", std::strerror(err)));
    }
    pids[static_cast<size_t>(rank)] = pid;
    alive[static_cast<size_t>(rank)] = true;
    if (rank > 0) {
      ::close(out_pipe[1]);
      ::close(err_pipe[1]);
      for (int fd : {out_pipe[0], err_pipe[0]})
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      streams.push_back({out_pipe[0], o.out_fd, rank, {}});
      streams.push_back({err_pipe[0], o.err_fd, rank, {}});
    }
  }

  const auto start = clock::now();
  int left = o.nproc;
  bool stopping = false;  // SIGTERM sent, SIGKILL at kill_at
  bool killed = false;    // SIGKILL sent
  clock::time_point kill_at{};
  const auto stop_all = [&] {
    if (stopping) return;
    stopping = true;
    kill_all(SIGTERM);
    kill_at = clock::now() + o.grace;
  };
  const auto forward_of = [&](int rank) { return res.failed_rank < 0 || rank == res.failed_rank; };

  clock::time_point all_exited{};
  const auto streams_open = [&] {
    for (const auto& s : streams)
      if (s.fd >= 0) return true;
    return false;
  };
  // After the last exit, the pipes are read to their end (at most 2 s more: a grandchild could
  // hold one open).
  while (left > 0 || (streams_open() && clock::now() - all_exited < std::chrono::seconds(2))) {
    std::vector<pollfd> fds;
    fds.push_back({sig_pipe[0], POLLIN, 0});
    for (const auto& s : streams)
      if (s.fd >= 0) fds.push_back({s.fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), left > 0 ? 50 : 200);

    // Signals received.
    unsigned char sigs[64];
    for (ssize_t n; (n = ::read(sig_pipe[0], sigs, sizeof(sigs))) > 0;) {
      for (ssize_t i = 0; i < n; ++i) {
        const int sig = sigs[i];
        if (sig == SIGCHLD || left == 0) continue;
        if (res.interrupted_by == 0) {
          res.interrupted_by = sig;
          kill_all(sig);  // forward; SIGKILL if they ignore it past the grace period
          stopping = true;
          kill_at = clock::now() + o.grace;
        } else if (!killed) {
          kill_all(SIGKILL);  // asked twice
          killed = true;
        }
      }
    }

    // Exits: the first failure stops the others.
    for (int rank = 0; rank < o.nproc; ++rank) {
      const size_t r = static_cast<size_t>(rank);
      if (!alive[r]) continue;
      int st = 0;
      const pid_t w = ::waitpid(pids[r], &st, WNOHANG);
      if (w != pids[r]) continue;
      alive[r] = false;
      if (--left == 0) all_exited = clock::now();
      res.statuses[r] = st;
      const bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
      if (!ok && res.failed_rank < 0 && res.interrupted_by == 0 && !res.timed_out) {
        res.failed_rank = rank;
        res.failed_status = st;
        stop_all();
      }
    }

    // Output of ranks >= 1 (after their exits, so a failed rank's last words are kept).
    for (auto& s : streams) s.drain(forward_of(s.rank));

    const auto now = clock::now();
    if (o.limit.count() > 0 && left > 0 && !res.timed_out && res.failed_rank < 0 &&
        now - start > o.limit) {
      res.timed_out = true;
      stop_all();
    }
    if (stopping && !killed && left > 0 && now >= kill_at) {
      kill_all(SIGKILL);
      killed = true;
    }
  }
  for (auto& s : streams)
    if (s.fd >= 0) ::close(s.fd);
  restore();

  const std::string of = " of " + std::to_string(o.nproc);
  if (res.failed_rank >= 0) {
    const int st = res.failed_status;
    res.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    res.message =
        detail::cat(o.name, ": rank ", res.failed_rank, of, " (pid ",
                    pids[static_cast<size_t>(res.failed_rank)], ") ",
                    WIFSIGNALED(st) ? "was killed by " : "exited with ", describe_wait_status(st),
                    o.nproc > 1 ? "; stopped the other ranks" : "");
  } else if (res.interrupted_by != 0) {
    res.exit_code = 128 + res.interrupted_by;
    res.message = detail::cat(o.name, ": interrupted by ", describe_signal(res.interrupted_by),
                              ", forwarded to the ", o.nproc, " ranks");
  } else if (res.timed_out) {
    res.exit_code = 124;
    res.message = detail::cat(o.name, ": the ", o.nproc, " ranks ran past the limit of ",
                              o.limit.count(), " ms and were stopped");
  }
  if (!res.message.empty()) {
    const std::string line = res.message + "\n";
    detail::write_all(o.err_fd, line.data(), line.size());
  }
  return res;
}

}  // namespace diffuse
