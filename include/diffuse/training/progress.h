// SPDX-License-Identifier: Apache-2.0
// Reporters for the trainer's callbacks (the library itself never prints): a one-line console
// progress bar with it/s, images/s and ETA, plain progress log lines for when the output is not a
// terminal (a log file, CI), and an spdlog reporter for the periodic log rows, checkpoints and
// previews. Used by examples/train_dit and the diffuse CLI.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include <diffuse/training/trainer.h>

namespace diffuse {

/// "1:02:03" / "02:03" for a number of seconds (negative or non-finite: "--:--").
std::string format_duration(double seconds);

/// Seconds between two plain progress lines when the output is not a terminal (the diffuse CLI
/// reads DIFFUSE_PROGRESS_INTERVAL to override it; 0 = a line per update).
inline constexpr double kProgressLogIntervalSeconds = 5.0;

/// One plain progress line (no "\r", no ANSI codes), e.g.
///   "sampling: 120/400 steps (30%), 4.10 it/s, ETA 01:08"
/// `unit` may be empty; `fraction` in [0, 1] is shown as a whole percentage; `extra` (e.g.
/// "loss 0.041") goes before the rate; `rate` is in units per second, `eta_s` in seconds (negative
/// or non-finite: "--:--").
std::string progress_log_line(const std::string& label, int64_t done, int64_t total,
                              const std::string& unit, double fraction, double rate, double eta_s,
                              const std::string& extra = "");

/// When the next plain progress line is due: every `interval_s` seconds of elapsed time (<= 0:
/// every update), and always for the last update.
class ProgressLogThrottle {
 public:
  explicit ProgressLogThrottle(double interval_s = kProgressLogIntervalSeconds)
      : interval_(interval_s) {}
  /// True if a line should be printed now (and then counts it as printed).
  bool due(double elapsed_s, bool last) {
    if (!last && interval_ > 0 && elapsed_s - last_ < interval_) return false;
    last_ = elapsed_s;
    return true;
  }

 private:
  double interval_;
  double last_ = 0;
};

/// One console line, redrawn in place ("\r"); the bar shows StepStats::progress (steps or time
/// budget, whichever is further along):
///   [########------------]  1200/5000  loss 0.04123  lr 1.0e-04  3.2 it/s  205 img/s  ETA 19:47
class ProgressBar {
 public:
  /// `width`: characters of the bar, >= 1. `stream`: where to draw (stderr by default).
  explicit ProgressBar(int width = 30, std::FILE* stream = stderr)
      : width_(width < 1 ? 1 : width), stream_(stream) {}

  /// The text of the line for `st` (no "\r").
  std::string line(const StepStats& st) const;

  /// Redraws the line (throttled to about 10 redraws per second, always at the last step).
  void update(const StepStats& st);

  /// Ends the line (call before printing other output).
  void finish();

 private:
  int width_;
  std::FILE* stream_;
  double last_draw_ = -1;
  bool drawn_ = false;
};

/// The plain progress line of a training step:
///   "train: 1200/5000 steps (24%), loss 0.04123, 3.20 it/s, ETA 19:47"
/// (the percentage is StepStats::progress: steps or time budget, whichever is further along).
std::string train_progress_line(const StepStats& st);

/// Callbacks that draw a ProgressBar on every step (if `bar`) and log every on_log row,
/// checkpoint and preview through spdlog (info level, default logger), and a skipped corrupt
/// checkpoint at warn level. Without the bar and with `log_interval_s` >= 0 (for output that is not
/// a terminal), a train_progress_line is logged every log_interval_s seconds (0: every step) and at
/// the last step.
TrainerCallbacks console_reporter(bool bar = true, double log_interval_s = -1);

}  // namespace diffuse
