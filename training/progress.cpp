// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/progress.h>.
#include <diffuse/training/progress.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

namespace diffuse {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buf;
}

std::string progress_log_line(const std::string& label, int64_t done, int64_t total,
                              const std::string& unit, double fraction, double rate, double eta_s,
                              const std::string& extra) {
  const double pct =
      std::floor(100.0 * std::min(1.0, std::max(0.0, std::isfinite(fraction) ? fraction : 0.0)));
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%lld/%lld%s%s (%.0f%%), ", static_cast<long long>(done),
                static_cast<long long>(total), unit.empty() ? "" : " ", unit.c_str(), pct);
  char rate_buf[64];
  std::snprintf(rate_buf, sizeof(rate_buf), "%.2f it/s, ETA ", std::isfinite(rate) ? rate : 0.0);
  return label + ": " + buf + (extra.empty() ? "" : extra + ", ") + rate_buf +
         format_duration(eta_s);
}

std::string train_progress_line(const StepStats& st) {
  char loss[48];
  std::snprintf(loss, sizeof(loss), "loss %.5g", st.loss);
  return progress_log_line("train", st.step, st.total_steps, "steps", st.progress, st.it_per_s,
                           st.eta_s, loss);
}

TrainerCallbacks console_reporter(bool bar, double log_interval_s) {
  auto pb = std::make_shared<ProgressBar>();
  TrainerCallbacks cb;
  if (bar) {
    cb.on_step = [pb](const StepStats& st) { pb->update(st); };
  } else if (log_interval_s >= 0) {
    auto throttle = std::make_shared<ProgressLogThrottle>(log_interval_s);
    cb.on_step = [throttle](const StepStats& st) {
      if (throttle->due(st.elapsed_s, st.progress >= 1))
        spdlog::info("{}", train_progress_line(st));
    };
  }
  cb.on_log = [pb, bar](const StepStats& st) {
    std::string terms;
    for (const auto& kv : st.terms) terms += " " + kv.first + "=" + std::to_string(kv.second);
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::info(
        "step {}/{} epoch {} loss {:.5g}{} lr {:.2e} grad_norm {:.3g} | {:.2f} it/s {:.1f} img/s | "
        "elapsed {} ETA {}",
        st.step, st.total_steps, st.epoch, st.loss, terms, st.lr, st.grad_norm, st.it_per_s,
        st.images_per_s, format_duration(st.elapsed_s), format_duration(st.eta_s));
  };
  cb.on_checkpoint = [bar](const std::string& path, int64_t step) {
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::info("checkpoint at step {}: {}", step, path);
  };
  cb.on_sample = [bar](const Tensor& x, const std::string& path, int64_t step) {
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::info("samples at step {}: {} ({} samples, mean {:.3f}, std {:.3f})", step,
                 path.empty() ? "-" : path, x.size(0), x.mean().item<double>(),
                 x.std().item<double>());
  };
  cb.on_checkpoint_skipped = [bar](const std::string& path, const std::string& reason,
                                   const std::string& renamed) {
    if (bar) std::fprintf(stderr, "\r\033[K");
    spdlog::warn("skipped checkpoint {}: {}; {}", path, reason,
                 renamed.empty()
                     ? std::string("it could not be renamed, move it away yourself")
                     : "kept as " + renamed + " (not deleted); resuming from an older checkpoint");
  };
  return cb;
}

std::string ProgressBar::line(const StepStats& st) const {
  const double frac = std::min(1.0, std::max(0.0, st.progress));
  const int filled = static_cast<int>(frac * width_);
  std::string bar = "[" + std::string(filled, '#') + std::string(width_ - filled, '-') + "]";
  char buf[256];
  std::snprintf(buf, sizeof(buf), " %lld/%lld  loss %.5g  lr %.1e  %.2f it/s  %.0f img/s  ETA %s",
                static_cast<long long>(st.step), static_cast<long long>(st.total_steps), st.loss,
                st.lr, st.it_per_s, st.images_per_s, format_duration(st.eta_s).c_str());
  return bar + buf;
}

void ProgressBar::update(const StepStats& st) {
  const double now = st.elapsed_s;
  if (st.progress < 1 && now - last_draw_ < 0.1 && drawn_) return;
  last_draw_ = now;
  drawn_ = true;
  std::fprintf(stream_, "\r%s\033[K", line(st).c_str());
  if (st.progress >= 1) std::fprintf(stream_, "\n");
  std::fflush(stream_);
}

void ProgressBar::finish() {
  if (drawn_) std::fprintf(stream_, "\n");
  drawn_ = false;
}

}  // namespace diffuse
