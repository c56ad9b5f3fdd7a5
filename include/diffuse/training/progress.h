// SPDX-License-Identifier: Apache-2.0
// Reporters for the trainer's callbacks (the library itself never prints): a one-line console
// progress bar with it/s, images/s and ETA, plain progress log lines for when the output is not a
// terminal (a log file, CI), and an spdlog reporter for the periodic log rows, checkpoints and
// previews. Used by examples/train_dit and the diffuse CLI.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include <diffuse/training/trainer.h>

namespace diffuse {

/// "1:02:03" / "02:03" for a number of seconds (negative or non-finite: "--:--").
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

/// Seconds between two plain progress lines when the output is not a terminal (the diffuse CLI
/// reads DIFFUSE_PROGRESS_INTERVAL to override it; 0 = a line per update).
inline constexpr double kProgressLogIntervalSeconds = 5.0;

/// One plain progress line (no "\r", no ANSI codes), e.g.
///   "sampling: 120/400 steps (30%), 4.10 it/s, ETA 01:08"
/// `unit` may be empty; `fraction` in [0, 1] is shown as a whole percentage; `extra` (e.g.
/// "loss 0.041") goes before the rate; `rate` is in units per second, `eta_s` in seconds (negative
/// or non-finite: "--:--").
inline std::string progress_log_line(const std::string& label, int64_t done, int64_t total, const std::string& unit,
                                     double fraction, double rate, double eta_s, const std::string& extra = "") {
  const double pct = std::floor(100.0 * std::min(1.0, std::max(0.0, std::isfinite(fraction) ? fraction : 0.0)));
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%lld/%lld%s%s (%.0f%%), ", static_cast<long long>(done),
                static_cast<long long>(total), unit.empty() ? "" : " ", unit.c_str(), pct);
  char rate_buf[64];
  std::snprintf(rate_buf, sizeof(rate_buf), "%.2f it/s, ETA ", std::isfinite(rate) ? rate : 0.0);
  return label + ": " + buf + (extra.empty() ? "" : extra + ", ") + rate_buf + format_duration(eta_s);
}

/// When the next plain progress line is due: every `interval_s` seconds of elapsed time (<= 0:
/// every update), and always for the last update.
class ProgressLogThrottle {
 public:
  explicit ProgressLogThrottle(double interval_s = kProgressLogIntervalSeconds) : interval_(interval_s) {}
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
  explicit ProgressBar(int width = 30, std::FILE* stream = stderr) : width_(width < 1 ? 1 : width), stream_(stream) {}

  /// The text of the line for `st` (no "\r").
  std::string line(const StepStats& st) const {
    const double frac = std::min(1.0, std::max(0.0, st.progress));
    const int filled = static_cast<int>(frac * width_);
    std::string bar = "[" + std::string(filled, '#') + std::string(width_ - filled, '-') + "]";
    char buf[256];
    std::snprintf(buf, sizeof(buf), " %lld/%lld  loss %.5g  lr %.1e  %.2f it/s  %.0f img/s  ETA %s",
                  static_cast<long long>(st.step), static_cast<long long>(st.total_steps), st.loss, st.lr, st.it_per_s,
                  st.images_per_s, format_duration(st.eta_s).c_str());
    return bar + buf;
  }

  /// Redraws the line (throttled to about 10 redraws per second, always at the last step).
  void update(const StepStats& st) {
    const double now = st.elapsed_s;
    if (st.progress < 1 && now - last_draw_ < 0.1 && drawn_) return;
    last_draw_ = now;
    drawn_ = true;
    std::fprintf(stream_, "\r%s\033[K", line(st).c_str());
    if (st.progress >= 1) std::fprintf(stream_, "\n");
    std::fflush(stream_);
  }

  /// Ends the line (call before printing other output).
  void finish() {
    if (drawn_) std::fprintf(stream_, "\n");
    drawn_ = false;
  }

 private:
  int width_;
  std::FILE* stream_;
  double last_draw_ = -1;
  bool drawn_ = false;
};

/// The plain progress line of a training step:
///   "train: 1200/5000 steps (24%), loss 0.04123, 3.20 it/s, ETA 19:47"
/// (the percentage is StepStats::progress: steps or time budget, whichever is further along).
inline std::string train_progress_line(const StepStats& st) {
  char loss[48];
  std::snprintf(loss, sizeof(loss), "loss %.5g", st.loss);
  return progress_log_line("train", st.step, st.total_steps, "steps", st.progress, st.it_per_s, st.eta_s, loss);
}

/// Callbacks that draw a ProgressBar on every step (if `bar`) and log every on_log row,
/// checkpoint and preview through spdlog (info level, default logger), and a skipped corrupt
/// checkpoint at warn level. Without the bar and with `log_interval_s` >= 0 (for output that is not
/// a terminal), a train_progress_line is logged every log_interval_s seconds (0: every step) and at
/// the last step.
inline TrainerCallbacks console_reporter(bool bar = true, double log_interval_s = -1) {
  auto pb = std::make_shared<ProgressBar>();
  TrainerCallbacks cb;
  if (bar) {
    cb.on_step = [pb](const StepStats& st) { pb->update(st); };
  } else if (log_interval_s >= 0) {
    auto throttle = std::make_shared<ProgressLogThrottle>(log_interval_s);
    cb.on_step = [throttle](const StepStats& st) {
      if (throttle->due(st.elapsed_s, st.progress >= 1)) spdlog::info("{}", train_progress_line(st));
    };
  }
  cb.on_log = [pb, bar](const StepStats& st) {
    std::string terms;
    for (const auto& kv : st.terms) terms += " " + kv.first + "=" + std::to_string(kv.second);
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::info("step {}/{} epoch {} loss {:.5g}{} lr {:.2e} grad_norm {:.3g} | {:.2f} it/s {:.1f} img/s | "
                 "elapsed {} ETA {}",
                 st.step, st.total_steps, st.epoch, st.loss, terms, st.lr, st.grad_norm, st.it_per_s, st.images_per_s,
                 format_duration(st.elapsed_s), format_duration(st.eta_s));
  };
  cb.on_checkpoint = [bar](const std::string& path, int64_t step) {
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::info("checkpoint at step {}: {}", step, path);
  };
  cb.on_sample = [bar](const Tensor& x, const std::string& path, int64_t step) {
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::info("samples at step {}: {} ({} samples, mean {:.3f}, std {:.3f})", step, path.empty() ? "-" : path,
                 x.size(0), x.mean().item<double>(), x.std().item<double>());
  };
  cb.on_checkpoint_skipped = [bar](const std::string& path, const std::string& reason, const std::string& renamed) {
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::warn("skipped checkpoint {}: {}; {}", path, reason,
                 renamed.empty() ? std::string("it could not be renamed, move it away yourself")
                                 : "kept as " + renamed + " (not deleted); resuming from an older checkpoint");
  };
  return cb;
}

}  // namespace diffuse
