// SPDX-License-Identifier: Apache-2.0
// diffuse eval, shared by its source files: the options, a setting (one row of the table), a
// measured row, and the table (eval_table.cpp: eval.csv, exposure_bias.csv, eval.md, the plots,
// --resume). The command itself, its options and its steps are in eval.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace diffuse::cli::eval_command {

struct EvalArgs {
  std::string model = "default";
  std::string model_card;
  std::vector<std::string> samplers;
  std::vector<std::string> schedules;
  std::vector<std::string> steps;
  std::vector<std::string> cfgs;
  std::vector<std::string> corrections;
  uint64_t seed = 0;
  int64_t num = 500;
  int64_t batch_size = 250;
  int64_t reference_limit = -1;
  int64_t eb_num = 200;
  std::string eb_mode = "accumulated";
  std::string data_dir;
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string out = "diffuse_eval";
  bool resume = false;
};

/// One row of the table.
struct Setting {
  std::string sampler, schedule;  // schedule "" = the model's default spacing
  int64_t steps = 0;
  double cfg = 1;
};

/// One measured setting: a row of eval.csv / eval.md and its exposure-bias rows.
struct Row {
  Setting setting;
  std::vector<std::string>
      run;  // the run columns, eval_columns() order (corrections, num_samples, seed, ...)
  double fd = 0, precision = 0, recall = 0, eb_total = 0, eb_ratio = 0, seconds = 0;
  std::vector<std::vector<std::string>>
      eb;  // exposure_bias.csv rows without the leading setting number
};

/// The key that matches a setting across runs (the setting columns of eval.csv as written).
std::string setting_key(const Setting& s);

/// The rows of an earlier eval.csv (and their exposure_bias.csv rows) for --resume. A table with
/// other columns, or measured with other run columns (seed, samples, reference, model, ...), is a
/// UsageError naming the first difference; a malformed row an IOError.
std::vector<Row> read_previous_rows(const std::filesystem::path& out,
                                    const std::vector<std::string>& run);

/// The table of a run: this run's settings in grid order (measured now, or taken from the earlier
/// table), then earlier rows of settings outside this grid (kept, not lost).
class EvalTable {
 public:
  /// `previous`: the rows of an earlier table (--resume); logs how many settings they hold.
  EvalTable(std::vector<Setting> settings, const std::vector<Row>& previous, bool resume,
            const std::string& out);
  /// Whether setting `i` (of the grid) already has a row from the earlier table.
  bool measured(size_t i) const { return measured_[i]; }
  void add(Row row) { rows_.push_back(std::move(row)); }
  const Row& last() const { return rows_.back(); }
  /// The rows in table order: grid order for this run's settings, then the others.
  std::vector<Row> ordered() const;
  /// Rewrites eval.csv, exposure_bias.csv (with_eb) and eval.md (`preamble`, the table, the
  /// command line) in `out`, each atomically (a reader, or a --resume after a crash, never sees a
  /// half-written file).
  void write(const std::filesystem::path& out, bool with_eb, const std::string& preamble) const;

 private:
  std::vector<Setting> settings_;
  std::vector<Row> rows_;
  std::vector<bool> measured_;
};

/// The markdown table of `table` (also printed to stdout).
std::string markdown(const std::vector<Row>& table);

/// What the plot legends name besides the sampler: the schedule, cfg and steps when they vary.
struct CurveLabels {
  bool schedule = false, cfg = false, steps = false;
};
/// fd_vs_steps.png, and exposure_bias.png (with_eb), from the whole table.
void write_plots(const std::filesystem::path& out, const std::vector<Row>& table, bool with_eb,
                 const CurveLabels& labels);

}  // namespace diffuse::cli::eval_command
