// SPDX-License-Identifier: Apache-2.0
// The trainer's loss reporting (training/loss_log.h).
#include "loss_log.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include <diffuse/config.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/checkpoint.h>
#include <diffuse/training/fault_injection.h>
#include <diffuse/training/plot.h>

namespace diffuse {
namespace detail {

namespace {

std::string csv_path(const std::string& output_dir) {
  return output_dir.empty() ? "" : (std::filesystem::path(output_dir) / "loss.csv").string();
}

}  // namespace

void LossLog::accumulate(const StepStats& st) {
  window_loss_ += st.loss;
  window_lr_ += st.lr;
  window_grad_ += st.grad_norm;
  for (const auto& kv : st.terms) window_terms_[kv.first] += kv.second;
  ++window_count_;
}

std::optional<StepStats> LossLog::flush(const StepStats& last) {
  if (window_count_ == 0) return std::nullopt;
  StepStats avg = last;
  const double n = static_cast<double>(window_count_);
  avg.loss = window_loss_ / n;
  avg.lr = window_lr_ / n;
  avg.grad_norm = window_grad_ / n;
  avg.terms.clear();
  for (const auto& kv : window_terms_) avg.terms[kv.first] = kv.second / n;
  window_loss_ = window_lr_ = window_grad_ = 0;
  window_count_ = 0;
  window_terms_.clear();
  return avg;
}

Tensor LossLog::window_tensor() const {
  std::vector<double> v{static_cast<double>(window_count_), window_loss_, window_lr_, window_grad_};
  for (const auto& kv : window_terms_) v.push_back(kv.second);
  return at::tensor(v, at::TensorOptions().dtype(at::kDouble));
}

std::string LossLog::window_names() const {
  std::string names;
  for (const auto& kv : window_terms_) names += kv.first + "\n";
  return names;
}

void LossLog::set_window(const Tensor& t, const std::string& names) {
  check(t.dim() == 1 && t.size(0) >= 4 && t.scalar_type() == at::kDouble,
        "checkpoint log window is malformed");
  auto a = t.accessor<double, 1>();
  window_count_ = static_cast<int64_t>(a[0]);
  window_loss_ = a[1];
  window_lr_ = a[2];
  window_grad_ = a[3];
  window_terms_.clear();
  std::istringstream is(names);
  std::string name;
  int64_t i = 4;
  while (std::getline(is, name)) {
    check(i < t.size(0), "checkpoint log window has more term names than values");
    window_terms_[name] = a[i++];
  }
}

void LossLog::prepare(const std::string& output_dir, int64_t step, bool resumed) {
  if (output_dir.empty()) return;
  create_directories_or_throw(output_dir);
  // Temporaries of loss.csv, previews or other files whose writer was killed.
  remove_stale_temporaries(output_dir);
  curve_steps_.clear();
  curve_loss_.clear();
  csv_header_.clear();
  const std::string path = csv_path(output_dir);
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  bool first = true;
  while (std::getline(in, line)) {
    if (first) {
      csv_header_ = line;
      kept += line + "\n";
      first = false;
      continue;
    }
    // A row is kept if it is complete (as many fields as the header, a final newline was
    // written before it) and not after the checkpoint; the first other row ends the file (a row
    // cut short by a kill is always the last one).
    if (std::count(line.begin(), line.end(), ',') !=
        std::count(csv_header_.begin(), csv_header_.end(), ','))
      break;
    std::istringstream ls(line);
    std::string f0, f1;
    std::getline(ls, f0, ',');
    std::getline(ls, f1, ',');
    int64_t s = 0;
    try {
      s = std::stoll(f0);
    } catch (...) {
      break;
    }
    if (s > step) break;
    kept += line + "\n";
    curve_steps_.push_back(static_cast<double>(s));
    curve_loss_.push_back(std::stod(f1));
  }
  in.close();
  if (step == 0 && !resumed) {  // a fresh run starts a fresh curve
    kept.clear();
    csv_header_.clear();
    curve_steps_.clear();
    curve_loss_.clear();
  }
  write_text_file_atomic(path, kept);
}

void LossLog::append(const std::string& output_dir, const StepStats& avg) {
  curve_steps_.push_back(static_cast<double>(avg.step));
  curve_loss_.push_back(avg.loss);
  const std::string path = csv_path(output_dir);
  if (path.empty()) return;
  std::ofstream out(path, std::ios::app);
  check_io(static_cast<bool>(out), "cannot append to '", path, "'");
  if (csv_header_.empty()) {
    csv_header_ = "step,loss";
    for (const auto& kv : avg.terms) csv_header_ += "," + kv.first;
    csv_header_ += ",lr,grad_norm";
    out << csv_header_ << "\n";
  }
  std::ostringstream row;
  row << avg.step << "," << format_double(avg.loss);
  for (const auto& kv : avg.terms) row << "," << format_double(kv.second);
  row << "," << format_double(avg.lr) << "," << format_double(avg.grad_norm) << "\n";
  const std::string text = row.str();
  size_t half = 0;
  if (fault_injection_armed()) {  // tests: a row cut short by a kill
    half = text.size() / 2;
    out << text.substr(0, half);
    out.flush();
    fault_point("mid_log_append", path);
  }
  out << text.substr(half);
  out.flush();
  check_io(static_cast<bool>(out), "cannot append to '", path, "'");
}

void LossLog::write_plot(const std::string& output_dir, const std::string& objective_name) const {
  if (output_dir.empty() || curve_steps_.empty()) return;
  PlotOptions po;
  po.title = "training loss (" + objective_name + ")";
  po.log_y = true;
  plot_curves_png((std::filesystem::path(output_dir) / "loss.png").string(), {"loss"},
                  {curve_steps_}, {curve_loss_}, po);
}

}  // namespace detail
}  // namespace diffuse
