// SPDX-License-Identifier: Apache-2.0
// The trainer's loss reporting (private to libdiffuse_training): the window of step statistics
// averaged every log_every steps, loss.csv (truncated to the checkpoint's step on resume; rows are
// appended, a row cut short by a kill is dropped) and the loss curve loss.png.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <diffuse/tensor.h>
#include <diffuse/training/trainer.h>

namespace diffuse {
namespace detail {

class LossLog {
 public:
  /// Adds a step to the window.
  void accumulate(const StepStats& st);
  /// The window's averages (loss, lr, grad_norm, terms; the rest from `last`) and a fresh window;
  /// nullopt if the window is empty.
  std::optional<StepStats> flush(const StepStats& last);

  /// The partial window as [count, loss, lr, grad_norm, terms...] and the term names (one per
  /// line, in the same order), for checkpoints; set_window() restores them.
  Tensor window_tensor() const;
  std::string window_names() const;
  void set_window(const Tensor& t, const std::string& names);

  /// Creates output_dir, and on resume truncates loss.csv to rows with step <= `step` (rows
  /// written after the checkpoint by the interrupted run are dropped) and reloads the curve; a
  /// fresh run (step 0, not resumed) starts a fresh curve. Nothing if output_dir is empty.
  void prepare(const std::string& output_dir, int64_t step, bool resumed);
  /// Adds a row to the curve and to loss.csv (if output_dir is not empty).
  void append(const std::string& output_dir, const StepStats& avg);
  /// Writes loss.png (if output_dir is not empty and the curve has a point).
  void write_plot(const std::string& output_dir, const std::string& objective_name) const;
  /// Rows of the curve.
  size_t rows() const { return curve_steps_.size(); }

 private:
  int64_t window_count_ = 0;
  double window_loss_ = 0, window_lr_ = 0, window_grad_ = 0;
  std::map<std::string, double> window_terms_;
  std::vector<double> curve_steps_, curve_loss_;
  std::string csv_header_;
};

}  // namespace detail
}  // namespace diffuse
