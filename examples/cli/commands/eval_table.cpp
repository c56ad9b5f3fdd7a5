// SPDX-License-Identifier: Apache-2.0
// diffuse eval: the table. eval.csv (one row per setting, with the run columns a --resume checks),
// exposure_bias.csv (one row per setting and step), eval.md (the markdown table and what was
// measured) and the two plots; reading an earlier table back for --resume.
#include "commands/eval.h"

#include "cli.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

#include <diffuse/config.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/image.h>
#include <diffuse/training/plot.h>

namespace diffuse::cli::eval_command {

namespace fs = std::filesystem;
using diffuse::format_double;

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

/// The fields of one CSV line as csv_field writes them (quoted fields with "" for a quote).
std::vector<std::string> parse_csv_line(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        out.back() += ch;
      }
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      out.emplace_back();
    } else if (ch != '\r') {
      out.back() += ch;
    }
  }
  return out;
}

/// The columns of eval.csv: the setting, the measurements, then what the whole run shares (a
/// --resume only continues a table whose run columns equal this run's).
const std::vector<std::string>& eval_columns() {
  static const std::vector<std::string> c = {"sampler",
                                             "schedule",
                                             "steps",
                                             "cfg",
                                             "corrections",
                                             "num_samples",
                                             "fd",
                                             "precision",
                                             "recall",
                                             "eb_total_delta",
                                             "eb_final_variance_ratio",
                                             "seconds",
                                             "seed",
                                             "batch_size",
                                             "reference_limit",
                                             "eb_num",
                                             "eb_mode",
                                             "model",
                                             "dtype"};
  return c;
}
constexpr size_t kFirstRunColumn =
    12;  // "seed"; "corrections" and "num_samples" are run columns too

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + csv_field(fields[i]);
  return line + "\n";
}

std::vector<std::string> row_fields(const Row& r) {
  const Setting& s = r.setting;
  std::vector<std::string> f = {s.sampler,
                                s.schedule.empty() ? "default" : s.schedule,
                                std::to_string(s.steps),
                                format_double(s.cfg),
                                r.run[0],
                                r.run[1],
                                format_double(r.fd),
                                format_double(r.precision),
                                format_double(r.recall),
                                format_double(r.eb_total),
                                format_double(r.eb_ratio),
                                format_double(r.seconds)};
  f.insert(f.end(), r.run.begin() + 2, r.run.end());
  return f;
}

std::string md_row(size_t number, const Row& r) {
  const Setting& s = r.setting;
  char row[512];
  std::snprintf(row, sizeof(row),
                "| %zu | %s | %s | %lld | %s | %.2f | %.3f | %.3f | %.4g | %.4f | %.1f |\n", number,
                s.sampler.c_str(), s.schedule.empty() ? "default" : s.schedule.c_str(),
                static_cast<long long>(s.steps), format_double(s.cfg).c_str(), r.fd, r.precision,
                r.recall, r.eb_total, r.eb_ratio, r.seconds);
  return row;
}

/// A number of an earlier eval.csv; anything else means the file is corrupt (an I/O error).
double parse_number(const std::string& text, const std::string& where) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0')
    throw diffuse::IOError(where + ": '" + text + "' is not a number");
  return v;
}

/// One line of an earlier eval.csv, checked against this run's columns.
Row parse_previous_row(const std::vector<std::string>& v, const std::vector<std::string>& run,
                       const std::string& where) {
  const std::vector<std::string>& cols = eval_columns();
  if (v.size() != cols.size())
    throw diffuse::IOError(where + " has " + std::to_string(v.size()) + " fields, not " +
                           std::to_string(cols.size()));
  Row r;
  r.setting.sampler = v[0];
  r.setting.schedule = v[1] == "default" ? "" : v[1];
  r.setting.steps = static_cast<int64_t>(parse_number(v[2], where + " steps"));
  r.setting.cfg = parse_number(v[3], where + " cfg");
  r.run = {v[4], v[5]};
  r.run.insert(r.run.end(), v.begin() + kFirstRunColumn, v.end());
  for (size_t i = 0; i < run.size(); ++i) {
    const size_t col = i < 2 ? 4 + i : kFirstRunColumn + i - 2;
    require(r.run[i] == run[i], where + " was measured with " + cols[col] + " '" + r.run[i] +
                                    "', this run has '" + run[i] +
                                    "'; resume with the same settings or use another --out");
  }
  r.fd = parse_number(v[6], where + " fd");
  r.precision = parse_number(v[7], where + " precision");
  r.recall = parse_number(v[8], where + " recall");
  r.eb_total = parse_number(v[9], where + " eb_total_delta");
  r.eb_ratio = parse_number(v[10], where + " eb_final_variance_ratio");
  r.seconds = parse_number(v[11], where + " seconds");
  return r;
}

/// Exposure-bias rows of an earlier exposure_bias.csv (setting,sampler,schedule(empty = default),
/// steps,cfg,index,...), each added to the row of its setting.
void read_previous_eb_rows(const fs::path& path, const std::map<std::string, size_t>& index,
                           std::vector<Row>& rows) {
  std::ifstream e(path.string());
  std::string line;
  if (!e || !std::getline(e, line)) return;
  while (std::getline(e, line)) {
    std::vector<std::string> v = parse_csv_line(line);
    if (v.size() < 6) continue;
    Setting s{v[1], v[2] == "default" ? "" : v[2],
              static_cast<int64_t>(std::strtoll(v[3].c_str(), nullptr, 10)),
              std::strtod(v[4].c_str(), nullptr)};
    const auto it = index.find(setting_key(s));
    if (it != index.end()) rows[it->second].eb.emplace_back(v.begin() + 1, v.end());
  }
}

}  // namespace

std::string setting_key(const Setting& s) {
  return s.sampler + "\n" + (s.schedule.empty() ? "default" : s.schedule) + "\n" +
         std::to_string(s.steps) + "\n" + format_double(s.cfg);
}

std::vector<Row> read_previous_rows(const fs::path& out, const std::vector<std::string>& run) {
  const std::string path = (out / "eval.csv").string();
  std::vector<Row> rows;
  std::error_code ec;
  if (!fs::exists(path, ec)) return rows;
  std::ifstream f(path);
  std::string line;
  require(std::getline(f, line) && parse_csv_line(line) == eval_columns(),
          "--resume: '" + path +
              "' does not have the columns this version of eval writes; use another --out");
  std::map<std::string, size_t> index;  // setting key -> row
  for (int64_t number = 2; std::getline(f, line); ++number) {
    if (line.empty()) continue;
    Row r = parse_previous_row(parse_csv_line(line), run,
                               "--resume: '" + path + "' line " + std::to_string(number));
    index[setting_key(r.setting)] = rows.size();
    rows.push_back(std::move(r));
  }
  read_previous_eb_rows(out / "exposure_bias.csv", index, rows);
  return rows;
}

EvalTable::EvalTable(std::vector<Setting> settings, const std::vector<Row>& previous, bool resume,
                     const std::string& out)
    : settings_(std::move(settings)), measured_(settings_.size(), false) {
  std::map<std::string, size_t> have;
  for (size_t i = 0; i < previous.size(); ++i) have[setting_key(previous[i].setting)] = i;
  std::vector<bool> used(previous.size(), false);
  for (size_t si = 0; si < settings_.size(); ++si) {
    const auto it = have.find(setting_key(settings_[si]));
    if (it != have.end() && !used[it->second]) {
      used[it->second] = true;
      measured_[si] = true;
    }
  }
  for (size_t i = 0; i < previous.size(); ++i)
    if (used[i]) rows_.push_back(previous[i]);
  size_t kept = 0;
  for (size_t i = 0; i < previous.size(); ++i)
    if (!used[i]) rows_.push_back(previous[i]), ++kept;
  if (resume)
    spdlog::info("--resume: {} of {} settings already in {}/eval.csv{}", rows_.size() - kept,
                 settings_.size(), out,
                 kept > 0 ? ", and " + std::to_string(kept) + " other rows kept" : std::string());
}

std::vector<Row> EvalTable::ordered() const {
  std::vector<Row> ordered;
  std::vector<bool> taken(rows_.size(), false);
  for (const Setting& s : settings_)
    for (size_t i = 0; i < rows_.size(); ++i)
      if (!taken[i] && setting_key(rows_[i].setting) == setting_key(s)) {
        ordered.push_back(rows_[i]);
        taken[i] = true;
        break;
      }
  for (size_t i = 0; i < rows_.size(); ++i)
    if (!taken[i]) ordered.push_back(rows_[i]);
  return ordered;
}

void EvalTable::write(const fs::path& out, bool with_eb, const std::string& preamble) const {
  const std::vector<Row> table = ordered();
  std::string csv = csv_line(eval_columns());
  std::string eb_csv =
      "setting,sampler,schedule,steps,cfg,index,t,sigma,sigma_hat,delta,var_chain,var_forward,"
      "variance_ratio\n";
  for (size_t i = 0; i < table.size(); ++i) {
    csv += csv_line(row_fields(table[i]));
    for (const auto& e : table[i].eb) {
      std::vector<std::string> f = {std::to_string(i + 1)};
      f.insert(f.end(), e.begin(), e.end());
      eb_csv += csv_line(f);
    }
  }
  diffuse::write_text_file_atomic((out / "eval.csv").string(), csv);
  if (with_eb) diffuse::write_text_file_atomic((out / "exposure_bias.csv").string(), eb_csv);
  diffuse::write_text_file_atomic(
      (out / "eval.md").string(),
      preamble + markdown(table) + "\nCommand: `" + invocation() + "`\n");
}

std::string markdown(const std::vector<Row>& table) {
  std::string md =
      "| # | sampler | schedule | steps | cfg | FD | precision | recall | EB sum delta | "
      "EB var ratio (last) | s |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < table.size(); ++i) md += md_row(i + 1, table[i]);
  return md;
}

void write_plots(const fs::path& out, const std::vector<Row>& table, bool with_eb,
                 const CurveLabels& labels) {
  // A plot legend names what varies besides the steps.
  auto curve_label = [&](const Setting& s) {
    std::string label = s.sampler;
    if (labels.schedule) label += " " + (s.schedule.empty() ? std::string("default") : s.schedule);
    if (labels.cfg) label += " cfg " + format_double(s.cfg);
    return label;
  };
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>>
      fd_curves;  // per sampler/schedule/cfg
  std::vector<std::string> eb_names;
  std::vector<std::vector<double>> eb_xs, eb_ys;
  for (const Row& r : table) {
    const Setting& s = r.setting;
    fd_curves[curve_label(s)].first.push_back(static_cast<double>(s.steps));
    fd_curves[curve_label(s)].second.push_back(r.fd);
    if (with_eb && !r.eb.empty()) {
      std::vector<double> xs, ys;
      for (const auto& e : r.eb) {
        xs.push_back((std::strtod(e[4].c_str(), nullptr) + 1.0) / static_cast<double>(s.steps));
        ys.push_back(std::strtod(e[8].c_str(), nullptr));
      }
      eb_names.push_back(curve_label(s) +
                         (labels.steps ? " " + std::to_string(s.steps) + " steps" : ""));
      eb_xs.push_back(xs);
      eb_ys.push_back(ys);
    }
  }
  std::vector<std::string> names;
  std::vector<std::vector<double>> xs, ys;
  for (const auto& kv : fd_curves) {
    names.push_back(kv.first);
    xs.push_back(kv.second.first);
    ys.push_back(kv.second.second);
  }
  diffuse::PlotOptions po;
  po.title = "FD vs steps";
  diffuse::plot_curves_png((out / "fd_vs_steps.png").string(), names, xs, ys, po);
  if (with_eb) {
    diffuse::PlotOptions pe;
    pe.title = "exposure bias delta per step (x: fraction of the run)";
    pe.log_y = true;
    diffuse::plot_curves_png((out / "exposure_bias.png").string(), eb_names, eb_xs, eb_ys, pe);
  }
}

}  // namespace diffuse::cli::eval_command
