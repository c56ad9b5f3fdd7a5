// SPDX-License-Identifier: Apache-2.0
// Reporters for the trainer's callbacks (the library itself never prints): a one-line console
// progress bar with it/s, images/s and ETA, and an spdlog reporter for the periodic log rows,
// checkpoints and previews. Used by examples/train_dit.
#pragma once

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

/// Callbacks that draw a ProgressBar on every step (if `bar`) and log every on_log row,
/// checkpoint and preview through spdlog (info level, default logger), and a skipped corrupt
/// checkpoint at warn level.
inline TrainerCallbacks console_reporter(bool bar = true) {
  auto pb = std::make_shared<ProgressBar>();
  TrainerCallbacks cb;
  if (bar) cb.on_step = [pb](const StepStats& st) { pb->update(st); };
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
