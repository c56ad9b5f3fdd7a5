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

#include <signal.h>

namespace diffuse {

/// The first SIGINT/SIGTERM received while a StopSignalGuard was installed (0 if none).
int stop_signal_received();

/// Installs the handler for SIGINT and SIGTERM for its lifetime (not copyable; one at a time);
/// the destructor restores the previous dispositions. The received signal is kept after
/// destruction (stop_signal_received()) until the next guard is created.
class StopSignalGuard {
 public:
  /// `name` (a string that outlives the guard, or nullptr for silence) prefixes the line written to
  /// stderr when a signal arrives. exit_on_repeat: a second signal exits at once (128 + signal);
  /// false: repeats only keep the stop request.
  explicit StopSignalGuard(const char* name = nullptr, bool exit_on_repeat = true);
  ~StopSignalGuard();
  StopSignalGuard(const StopSignalGuard&) = delete;
  StopSignalGuard& operator=(const StopSignalGuard&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

}  // namespace diffuse
