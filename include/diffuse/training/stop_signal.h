// SPDX-License-Identifier: Apache-2.0
// Ctrl-C / SIGTERM for a training loop: the first SIGINT or SIGTERM only records the signal (a
// std::sig_atomic_t) and, optionally, writes one line to stderr; the loop polls it through
// TrainerCallbacks::should_stop, finishes the step in progress, writes a checkpoint and returns
// StopReason::kInterrupted (training/trainer.h). A second signal exits at once with status
// 128 + signal (_exit: no destructors; checkpoints are written atomically, so the folder stays
// sound and resumes from the last complete one), unless repeats are ignored (a rank of a launched
// job, whose launcher kills every rank on the second signal itself).
//
// The handler is async-signal-safe: it reads and writes volatile std::sig_atomic_t variables and
// calls only write(2) and _exit(2). `diffuse train` installs it for the training loop only.
//
//   StopSignalGuard guard("diffuse train");  // installs; the destructor restores the old handlers
//   callbacks.should_stop = [] { return stop_signal_received() != 0; };
#pragma once

#include <csignal>
#include <cstring>

#include <signal.h>
#include <unistd.h>

namespace diffuse {

namespace detail {

inline volatile std::sig_atomic_t g_stop_signal = 0;          // the first signal received, 0 if none
inline volatile std::sig_atomic_t g_stop_exit_on_repeat = 1;  // a second signal: _exit(128 + sig)
inline const char* volatile g_stop_signal_name = nullptr;     // stderr prefix; nullptr: write nothing

inline void stop_signal_write(const char* text) {
  if (text == nullptr) return;
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, text, std::strlen(text));
}

inline void stop_signal_handler(int sig) {
  const char* name = g_stop_signal_name;
  if (g_stop_signal != 0) {
    if (g_stop_exit_on_repeat == 0) return;
    if (name != nullptr) {
      stop_signal_write("\n");
      stop_signal_write(name);
      stop_signal_write(": second signal, exiting at once (no checkpoint of the step in progress)\n");
    }
    ::_exit(128 + sig);
  }
  g_stop_signal = sig;
  if (name != nullptr) {
    stop_signal_write("\n");
    stop_signal_write(name);
    stop_signal_write(sig == SIGINT ? ": SIGINT" : sig == SIGTERM ? ": SIGTERM" : ": signal");
    stop_signal_write(" received, stopping after the current step with a checkpoint");
    stop_signal_write(g_stop_exit_on_repeat != 0 ? " (send it again to exit at once)\n" : "\n");
  }
}

}  // namespace detail

/// The first SIGINT/SIGTERM received while a StopSignalGuard was installed (0 if none).
inline int stop_signal_received() { return static_cast<int>(detail::g_stop_signal); }

/// Installs the handler for SIGINT and SIGTERM for its lifetime (not copyable; one at a time);
/// the destructor restores the previous dispositions. The received signal is kept after
/// destruction (stop_signal_received()) until the next guard is created.
class StopSignalGuard {
 public:
  /// `name` (a string that outlives the guard, or nullptr for silence) prefixes the line written to
  /// stderr when a signal arrives. exit_on_repeat: a second signal exits at once (128 + signal);
  /// false: repeats only keep the stop request.
  explicit StopSignalGuard(const char* name = nullptr, bool exit_on_repeat = true) {
    detail::g_stop_signal = 0;
    detail::g_stop_exit_on_repeat = exit_on_repeat ? 1 : 0;
    detail::g_stop_signal_name = name;
    struct sigaction sa {};
    sa.sa_handler = detail::stop_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignalGuard() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignalGuard(const StopSignalGuard&) = delete;
  StopSignalGuard& operator=(const StopSignalGuard&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

}  // namespace diffuse
