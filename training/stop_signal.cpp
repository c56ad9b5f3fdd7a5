// SPDX-License-Identifier: Apache-2.0
// Ctrl-C / SIGTERM for a training loop (declared in <diffuse/training/stop_signal.h>, which
// describes the protocol). The handler is async-signal-safe.
#include <diffuse/training/stop_signal.h>

#include <csignal>
#include <cstring>

#include <signal.h>
#include <unistd.h>

namespace diffuse {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;          // the first signal received, 0 if none
volatile std::sig_atomic_t g_stop_exit_on_repeat = 1;  // a second signal: _exit(128 + sig)
const char* volatile g_stop_signal_name = nullptr;     // stderr prefix; nullptr: write nothing

void stop_signal_write(const char* text) {
  if (text == nullptr) return;
  [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, text, std::strlen(text));
}

void stop_signal_handler(int sig) {
  const char* name = g_stop_signal_name;
  if (g_stop_signal != 0) {
    if (g_stop_exit_on_repeat == 0) return;
    if (name != nullptr) {
      stop_signal_write("\n");
      stop_signal_write(name);
      stop_signal_write(
          ": second signal, exiting at once (no checkpoint of the step in progress)\n");
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

}  // namespace

int stop_signal_received() { return static_cast<int>(g_stop_signal); }

StopSignalGuard::StopSignalGuard(const char* name, bool exit_on_repeat) {
  g_stop_signal = 0;
  g_stop_exit_on_repeat = exit_on_repeat ? 1 : 0;
  g_stop_signal_name = name;
  struct sigaction sa {};
  sa.sa_handler = stop_signal_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &old_int_);
  ::sigaction(SIGTERM, &sa, &old_term_);
}

StopSignalGuard::~StopSignalGuard() {
  ::sigaction(SIGINT, &old_int_, nullptr);
  ::sigaction(SIGTERM, &old_term_, nullptr);
}

}  // namespace diffuse
