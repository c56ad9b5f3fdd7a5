// SPDX-License-Identifier: Apache-2.0
// diffuse eval: sample quality of a model under one or several sampler settings, measured against
// the Fashion-MNIST test set: Frechet distance, precision and recall in the feature space of the
// shipped classifier (training/evaluation.h), and the exposure-bias metric per step on real test
// images (diffuse/exposure_bias.h). --sampler, --schedule, --steps and --cfg take lists; every
// combination is one row of the table. Writes eval.csv, exposure_bias.csv, eval.md (rewritten after
// every setting; --resume continues a table) and two PNG plots into --out and prints the markdown
// table.
#include "cli.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <diffuse/all.h>
#include <diffuse/exposure_bias.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/data.h>
#include <diffuse/training/evaluation.h>
#include <diffuse/training/image.h>
#include <diffuse/training/plot.h>
#include <diffuse/training/model_file.h>

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;
using diffuse::format_double;

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

/// Splits a list of specs at top-level commas: a piece with '=' but no ':' before it continues the
/// previous spec's options ("dpmpp_2m:order=2,solver_type=midpoint,euler" -> 2 specs).
std::vector<std::string> split_specs(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    std::stringstream ss(v);
    std::string piece;
    bool first = true;
    while (std::getline(ss, piece, ',')) {
      const auto eq = piece.find('='), colon = piece.find(':');
      const bool option = eq != std::string::npos && (colon == std::string::npos || colon > eq);
      if (option && !first && !out.empty()) {
        out.back() += "," + piece;
      } else {
        out.push_back(diffuse::detail::trim(piece));
      }
      first = false;
    }
  }
  return out;
}

std::vector<std::string> split_plain(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    std::stringstream ss(v);
    std::string piece;
    while (std::getline(ss, piece, ',')) out.push_back(diffuse::detail::trim(piece));
  }
  return out;
}

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
  static const std::vector<std::string> c = {
      "sampler", "schedule", "steps", "cfg", "corrections", "num_samples", "fd", "precision", "recall",
      "eb_total_delta", "eb_final_variance_ratio", "seconds", "seed", "batch_size", "reference_limit",
      "eb_num", "eb_mode", "model", "dtype"};
  return c;
}
constexpr size_t kFirstRunColumn = 12;  // "seed"; "corrections" and "num_samples" are run columns too

/// One measured setting: a row of eval.csv / eval.md and its exposure-bias rows.
struct Row {
  Setting setting;
  std::vector<std::string> run;  // the run columns, eval_columns() order (corrections, num_samples, seed, ...)
  double fd = 0, precision = 0, recall = 0, eb_total = 0, eb_ratio = 0, seconds = 0;
  std::vector<std::vector<std::string>> eb;  // exposure_bias.csv rows without the leading setting number
};

/// The key that matches a setting across runs (the setting columns of eval.csv as written).
std::string setting_key(const Setting& s) {
  return s.sampler + "\n" + (s.schedule.empty() ? "default" : s.schedule) + "\n" + std::to_string(s.steps) + "\n" +
         format_double(s.cfg);
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + csv_field(fields[i]);
  return line + "\n";
}

std::vector<std::string> row_fields(const Row& r) {
  const Setting& s = r.setting;
  std::vector<std::string> f = {s.sampler, s.schedule.empty() ? "default" : s.schedule, std::to_string(s.steps),
                                format_double(s.cfg), r.run[0], r.run[1], format_double(r.fd),
                                format_double(r.precision), format_double(r.recall), format_double(r.eb_total),
                                format_double(r.eb_ratio), format_double(r.seconds)};
  f.insert(f.end(), r.run.begin() + 2, r.run.end());
  return f;
}

std::string md_row(size_t number, const Row& r) {
  const Setting& s = r.setting;
  char row[512];
  std::snprintf(row, sizeof(row), "| %zu | %s | %s | %lld | %s | %.2f | %.3f | %.3f | %.4g | %.4f | %.1f |\n", number,
                s.sampler.c_str(), s.schedule.empty() ? "default" : s.schedule.c_str(),
                static_cast<long long>(s.steps), format_double(s.cfg).c_str(), r.fd, r.precision, r.recall,
                r.eb_total, r.eb_ratio, r.seconds);
  return row;
}

double parse_number(const std::string& text, const std::string& where) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  require(!text.empty() && *end == '\0', where + ": '" + text + "' is not a number");
  return v;
}

/// The rows of an earlier eval.csv (and their exposure_bias.csv rows) for --resume. A table with
/// other columns, or measured with other run columns (seed, samples, reference, model, ...), is a
/// UsageError naming the first difference.
std::vector<Row> read_previous_rows(const fs::path& out, const std::vector<std::string>& run) {
  const std::string path = (out / "eval.csv").string();
  std::vector<Row> rows;
  std::error_code ec;
  if (!fs::exists(path, ec)) return rows;
  std::ifstream f(path);
  std::string line;
  const std::vector<std::string>& cols = eval_columns();
  require(std::getline(f, line) && parse_csv_line(line) == cols,
          "--resume: '" + path + "' does not have the columns this version of eval writes; use another --out");
  std::map<std::string, size_t> index;  // setting key -> row
  for (int64_t number = 2; std::getline(f, line); ++number) {
    if (line.empty()) continue;
    const std::vector<std::string> v = parse_csv_line(line);
    const std::string where = "--resume: '" + path + "' line " + std::to_string(number);
    require(v.size() == cols.size(), where + " has " + std::to_string(v.size()) + " fields, not " +
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
      require(r.run[i] == run[i], where + " was measured with " + cols[col] + " '" + r.run[i] + "', this run has '" +
                                      run[i] + "'; resume with the same settings or use another --out");
    }
    r.fd = parse_number(v[6], where + " fd");
    r.precision = parse_number(v[7], where + " precision");
    r.recall = parse_number(v[8], where + " recall");
    r.eb_total = parse_number(v[9], where + " eb_total_delta");
    r.eb_ratio = parse_number(v[10], where + " eb_final_variance_ratio");
    r.seconds = parse_number(v[11], where + " seconds");
    index[setting_key(r.setting)] = rows.size();
    rows.push_back(std::move(r));
  }
  // Exposure-bias rows: setting,sampler,schedule(empty = default),steps,cfg,index,...
  std::ifstream e((out / "exposure_bias.csv").string());
  if (e && std::getline(e, line)) {
    while (std::getline(e, line)) {
      std::vector<std::string> v = parse_csv_line(line);
      if (v.size() < 6) continue;
      Setting s{v[1], v[2] == "default" ? "" : v[2], static_cast<int64_t>(std::strtoll(v[3].c_str(), nullptr, 10)),
                std::strtod(v[4].c_str(), nullptr)};
      const auto it = index.find(setting_key(s));
      if (it != index.end()) rows[it->second].eb.emplace_back(v.begin() + 1, v.end());
    }
  }
  return rows;
}

std::vector<std::shared_ptr<diffuse::Correction>> make_corrections(const std::vector<std::string>& specs) {
  std::vector<std::shared_ptr<diffuse::Correction>> out;
  for (const std::string& spec : specs) {
    try {
      out.push_back(diffuse::correction_from_spec(spec));
    } catch (const diffuse::Error& e) {
      throw UsageError("--correction " + spec + ": " + error_message(e));
    }
  }
  return out;
}

/// The spacing of a --schedule value ("" = default: null), with the steps of a schedule file.
std::shared_ptr<diffuse::TimestepSpacing> make_spacing_for(const std::string& spec, int64_t steps,
                                                          std::string* noise_schedule) {
  if (spec.empty()) return nullptr;
  std::string text = spec;
  if (spec.rfind("file:", 0) == 0) {
    const ScheduleFile f = read_schedule_file(spec.substr(5));
    require(static_cast<int64_t>(f.timesteps.size()) == steps,
            "--steps " + std::to_string(steps) + " does not match the " + std::to_string(f.timesteps.size()) +
                " steps of schedule file '" + spec.substr(5) + "'");
    if (noise_schedule) *noise_schedule = f.noise_schedule;
    text = spacing_spec(f);
  }
  try {
    return diffuse::Registry<diffuse::TimestepSpacing>::get().make_from_spec(text);
  } catch (const diffuse::Error& e) {
    throw UsageError("--schedule " + spec + ": " + error_message(e));
  }
}

int run_eval(const EvalArgs& a) {
  // ----- arguments (all checked before anything heavy is loaded)
  std::vector<std::string> samplers = split_specs(a.samplers.empty() ? std::vector<std::string>{"dpmpp_2m"} : a.samplers);
  std::vector<std::string> schedules = a.schedules.empty() ? std::vector<std::string>{""} : split_specs(a.schedules);
  for (auto& s : schedules)
    if (s == "default") s.clear();
  std::vector<int64_t> steps;
  for (const std::string& s : split_plain(a.steps.empty() ? std::vector<std::string>{"10,20"} : a.steps)) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    require(!s.empty() && *end == '\0', "--steps: '" + s + "' is not an integer");
    require(v >= 1 && v <= 100000, "--steps must be in [1, 100000], got " + s);
    steps.push_back(v);
  }
  std::vector<double> cfgs;
  for (const std::string& s : split_plain(a.cfgs.empty() ? std::vector<std::string>{"2"} : a.cfgs)) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    require(!s.empty() && *end == '\0' && std::isfinite(v), "--cfg: '" + s + "' is not a finite number");
    cfgs.push_back(v);
  }
  require(a.num >= 4 && a.num <= 1000000, "--num must be in [4, 1000000], got " + std::to_string(a.num));
  require(a.batch_size >= 1, "--batch-size must be >= 1, got " + std::to_string(a.batch_size));
  require(a.reference_limit == -1 || a.reference_limit >= 4,
          "--reference-limit must be -1 (all 10000) or >= 4, got " + std::to_string(a.reference_limit));
  require(a.eb_num == 0 || a.eb_num >= 2, "--eb-num must be 0 (off) or >= 2, got " + std::to_string(a.eb_num));
  require(a.reference_limit == -1 || a.eb_num <= a.reference_limit,
          "--eb-num " + std::to_string(a.eb_num) + " exceeds --reference-limit " + std::to_string(a.reference_limit));
  require(a.eb_mode == "accumulated" || a.eb_mode == "single_step",
          "--eb-mode must be accumulated or single_step, got '" + a.eb_mode + "'");
  for (const std::string& s : samplers) {
    try {
      (void)diffuse::sampler_from_spec(s);
    } catch (const diffuse::Error& e) {
      throw UsageError("--sampler: " + error_message(e));
    }
  }
  (void)make_corrections(a.corrections);
  for (const std::string& sch : schedules)
    for (int64_t n : steps) (void)make_spacing_for(sch, n, nullptr);
  const c10::Device device = parse_device(a.device);
  const c10::ScalarType dtype = parse_dtype(a.dtype);

  std::vector<Setting> settings;
  for (const auto& sampler : samplers)
    for (const auto& schedule : schedules)
      for (double cfg : cfgs)
        for (int64_t n : steps) settings.push_back({sampler, schedule, n, cfg});

  std::string corr_text;
  for (const auto& c : a.corrections) corr_text += (corr_text.empty() ? "" : " ") + c;
  // What every row of this run shares (eval.csv's run columns): --resume continues only such a
  // table, and checks it before anything heavy is loaded.
  const std::vector<std::string> run = {corr_text,
                                        std::to_string(a.num),
                                        std::to_string(a.seed),
                                        std::to_string(a.batch_size),
                                        std::to_string(a.reference_limit),
                                        std::to_string(a.eb_num),
                                        a.eb_mode,
                                        a.model.empty() ? std::string("default") : a.model,
                                        dtype_name(dtype)};
  const fs::path out(a.out);
  std::vector<Row> previous;
  if (a.resume) previous = read_previous_rows(out, run);

  // ----- model, classifier, reference
  const auto t_start = std::chrono::steady_clock::now();
  diffuse::LoadedModel model = load_cli_model(a.model, a.model_card, device, dtype);
  const diffuse::ModelCard& card = model.card;
  require(card.sample_shape == std::vector<int64_t>({1, 28, 28}),
          "eval measures Fashion-MNIST models (sample_shape 1x28x28); the model's is " +
              diffuse::detail::card_shape_text(card.sample_shape));
  auto schedule = model.make_schedule();
  for (const std::string& sch : schedules) {
    std::string ns;
    for (int64_t n : steps) (void)make_spacing_for(sch, n, &ns);
    if (!ns.empty())
      require(ns == card.schedule, "schedule file '" + sch.substr(5) + "' was made for noise schedule '" + ns +
                                       "' but the model uses '" + card.schedule + "'");
  }
  diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
  const diffuse::Dataset test = diffuse::load_fashion_mnist("test", a.data_dir, a.reference_limit);
  const diffuse::FashionReference ref = diffuse::make_fashion_reference(classifier, test);
  const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  spdlog::info("model {} ({}), {} settings x {} samples (seed {}), reference {} ({} images), exposure bias on {} "
               "test images ({}) | set-up {:.1f} s",
               model.source == "default" ? std::string("default") : model.source, model.format, settings.size(), a.num,
               a.seed, ref.name, test.size(), a.eb_num, a.eb_mode, setup_s);

  std::error_code ec;
  fs::create_directories(a.out, ec);
  require(!ec, "cannot create --out folder '" + a.out + "': " + ec.message());

  // The table: this run's settings in grid order (measured now, or taken from the earlier table),
  // then earlier rows of settings outside this grid (kept, not lost).
  std::vector<Row> rows;
  std::vector<bool> measured(settings.size(), false);
  {
    std::map<std::string, size_t> have;
    for (size_t i = 0; i < previous.size(); ++i) have[setting_key(previous[i].setting)] = i;
    std::vector<bool> used(previous.size(), false);
    for (size_t si = 0; si < settings.size(); ++si) {
      const auto it = have.find(setting_key(settings[si]));
      if (it != have.end() && !used[it->second]) {
        used[it->second] = true;
        measured[si] = true;
      }
    }
    for (size_t i = 0; i < previous.size(); ++i)
      if (used[i]) rows.push_back(previous[i]);
    size_t kept = 0;
    for (size_t i = 0; i < previous.size(); ++i)
      if (!used[i]) rows.push_back(previous[i]), ++kept;
    if (a.resume)
      spdlog::info("--resume: {} of {} settings already in {}/eval.csv{}", rows.size() - kept, settings.size(), a.out,
                   kept > 0 ? ", and " + std::to_string(kept) + " other rows kept" : std::string());
  }
  // Rows in table order: grid order for this run's settings.
  auto table_order = [&]() {
    std::vector<Row> ordered;
    std::vector<bool> taken(rows.size(), false);
    for (const Setting& s : settings)
      for (size_t i = 0; i < rows.size(); ++i)
        if (!taken[i] && setting_key(rows[i].setting) == setting_key(s)) {
          ordered.push_back(rows[i]);
          taken[i] = true;
          break;
        }
    for (size_t i = 0; i < rows.size(); ++i)
      if (!taken[i]) ordered.push_back(rows[i]);
    return ordered;
  };

  std::string header_md = "| # | sampler | schedule | steps | cfg | FD | precision | recall | EB sum delta | "
                          "EB var ratio (last) | s |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto markdown = [&](const std::vector<Row>& table) {
    std::string md = header_md;
    for (size_t i = 0; i < table.size(); ++i) md += md_row(i + 1, table[i]);
    return md;
  };
  auto document = [&](const std::string& md) {
    std::ostringstream doc;
    doc << "# diffuse eval\n\n"
        << "Model: " << (model.source == "default" ? std::string("the shipped default model") : model.source) << " ("
        << model.format << ", " << card.schedule << ", " << card.prediction_type << "). " << a.num
        << " samples per setting (seed " << a.seed << ", class i % " << card.num_classes << "), against "
        << test.size() << " images of " << ref.name << " in the feature space of the shipped Fashion-MNIST classifier."
        << (a.corrections.empty() ? std::string() : " Corrections: " + corr_text + ".") << " Exposure bias ("
        << a.eb_mode << ") on " << a.eb_num << " test images: sum over steps of (sigma_hat - sigma)^2, and "
        << "var(chain) / var(forward) at the last step.\n\n"
        << md << "\nCommand: `" << invocation() << "`\n";
    return doc.str();
  };
  // Rewrites eval.csv, exposure_bias.csv and eval.md from `rows`, each atomically (a reader, or a
  // --resume after a crash, never sees a half-written file).
  auto write_tables = [&]() {
    const std::vector<Row> table = table_order();
    std::string csv = csv_line(eval_columns());
    std::string eb_csv = "setting,sampler,schedule,steps,cfg,index,t,sigma,sigma_hat,delta,var_chain,var_forward,"
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
    if (a.eb_num > 0) diffuse::write_text_file_atomic((out / "exposure_bias.csv").string(), eb_csv);
    diffuse::write_text_file_atomic((out / "eval.md").string(), document(markdown(table)));
  };

  diffuse::Denoiser denoiser(model.network, model.denoiser_options());
  const auto topt = at::TensorOptions().dtype(dtype).device(device);
  const int64_t chunk = std::min(a.batch_size, a.num);
  const int64_t chunks = (a.num + chunk - 1) / chunk;
  int64_t total_work = 0;
  for (size_t si = 0; si < settings.size(); ++si)
    if (!measured[si]) total_work += settings[si].steps * (chunks + (a.eb_num > 0 ? 1 : 0));
  Progress bar("eval", total_work, "steps");
  int64_t done = 0;

  for (size_t si = 0; si < settings.size(); ++si) {
    if (measured[si]) continue;
    const Setting& s = settings[si];
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<diffuse::Sampler> sampler = diffuse::sampler_from_spec(s.sampler);
    const bool guided = card.num_classes > 0 && s.cfg != 1.0;
    diffuse::SampleOptions so;
    so.num_steps = s.steps;
    so.spacing = make_spacing_for(s.schedule, s.steps, nullptr);
    if (guided) so.guidance = diffuse::make_guidance("cfg", {{"scale", format_double(s.cfg)}});

    // Samples: image i has class i % num_classes and seed seed + i (as `diffuse sample`).
    std::vector<at::Tensor> parts;
    {
      at::NoGradGuard no_grad;
      for (int64_t start = 0; start < a.num; start += chunk) {
        const int64_t m = std::min(chunk, a.num - start);
        diffuse::SampleOptions co = so;
        co.corrections = make_corrections(a.corrections);
        co.seed = a.seed + static_cast<uint64_t>(start);
        if (card.num_classes > 0) {
          co.cond.value = at::arange(start, start + m, at::kLong).remainder(card.num_classes).to(device);
          if (guided) co.uncond.value = at::full({m}, card.num_classes, at::TensorOptions(at::kLong).device(device));
        }
        co.on_step = [&](const diffuse::StepInfo&) { bar.update(++done); };
        std::vector<int64_t> shape = {m};
        shape.insert(shape.end(), card.sample_shape.begin(), card.sample_shape.end());
        parts.push_back(
            diffuse::sample(*sampler, denoiser, *schedule, diffuse::randn(shape, co.seed, topt), co).cpu());
      }
    }
    const at::Tensor samples = at::cat(parts).to(at::kFloat);
    if (!at::isfinite(samples).all().item<bool>())
      throw diffuse::Error("setting " + std::to_string(si + 1) + " (" + s.sampler + ", " + std::to_string(s.steps) +
                           " steps) produced NaN/Inf samples");
    const diffuse::EvalResult r = diffuse::evaluate_fashion_mnist(samples.clamp(-1, 1), classifier, ref);

    Row row;
    row.setting = s;
    row.run = run;
    row.run[1] = std::to_string(r.num_samples);
    row.fd = r.fd;
    row.precision = r.precision;
    row.recall = r.recall;
    // Exposure bias on real test images (their labels as the condition).
    row.eb_total = row.eb_ratio = std::nan("");
    if (a.eb_num > 0) {
      at::NoGradGuard no_grad;
      const int64_t n = std::min<int64_t>(a.eb_num, test.size());
      diffuse::SampleOptions eo = so;
      eo.corrections = make_corrections(a.corrections);
      eo.seed = a.seed + 7919;
      if (card.num_classes > 0) {
        eo.cond.value = test.labels.narrow(0, 0, n).to(device);
        if (guided) eo.uncond.value = at::full({n}, card.num_classes, at::TensorOptions(at::kLong).device(device));
      }
      eo.on_step = [&](const diffuse::StepInfo&) { bar.update(++done); };
      const auto eb_options =
          diffuse::ExposureBiasOptions().mode(diffuse::parse_exposure_bias_mode(a.eb_mode));
      const auto records = diffuse::measure_exposure_bias(*sampler, denoiser, *schedule,
                                                          test.data.narrow(0, 0, n).to(topt), eo,
                                                          eb_options);
      row.eb_total = diffuse::total_delta(records);
      row.eb_ratio = records.empty() ? std::nan("") : records.back().variance_ratio;
      for (const auto& rec : records)
        row.eb.push_back({s.sampler, s.schedule, std::to_string(s.steps), format_double(s.cfg),
                          std::to_string(rec.index), format_double(rec.t), format_double(rec.sigma),
                          format_double(rec.sigma_hat), format_double(rec.delta), format_double(rec.var_chain),
                          format_double(rec.var_forward), format_double(rec.variance_ratio)});
    }
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rows.push_back(std::move(row));
    write_tables();  // each row as soon as it is measured
    bar.finish();
    spdlog::info("[{}/{}] {} {} steps{}{}: FD {:.2f} precision {:.3f} recall {:.3f} | EB sum delta {:.4g} | {:.1f} s",
                 si + 1, settings.size(), s.sampler, s.steps, s.schedule.empty() ? "" : " " + s.schedule,
                 guided ? " cfg " + format_double(s.cfg) : "", r.fd, r.precision, r.recall, rows.back().eb_total,
                 rows.back().seconds);
  }
  bar.finish();
  write_tables();  // also when every setting was already measured (--resume): the command line is this one's

  // Plots from the whole table. A plot legend names what varies besides the steps.
  const std::vector<Row> table = table_order();
  auto curve_label = [&](const Setting& s) {
    std::string label = s.sampler;
    if (schedules.size() > 1) label += " " + (s.schedule.empty() ? std::string("default") : s.schedule);
    if (cfgs.size() > 1) label += " cfg " + format_double(s.cfg);
    return label;
  };
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> fd_curves;  // per sampler/schedule/cfg
  std::vector<std::string> eb_names;
  std::vector<std::vector<double>> eb_xs, eb_ys;
  for (const Row& r : table) {
    const Setting& s = r.setting;
    fd_curves[curve_label(s)].first.push_back(static_cast<double>(s.steps));
    fd_curves[curve_label(s)].second.push_back(r.fd);
    if (a.eb_num > 0 && !r.eb.empty()) {
      std::vector<double> xs, ys;
      for (const auto& e : r.eb) {
        xs.push_back((std::strtod(e[4].c_str(), nullptr) + 1.0) / static_cast<double>(s.steps));
        ys.push_back(std::strtod(e[8].c_str(), nullptr));
      }
      eb_names.push_back(curve_label(s) + (steps.size() > 1 ? " " + std::to_string(s.steps) + " steps" : ""));
      eb_xs.push_back(xs);
      eb_ys.push_back(ys);
    }
  }
  std::cout << markdown(table);
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
  if (a.eb_num > 0) {
    diffuse::PlotOptions pe;
    pe.title = "exposure bias delta per step (x: fraction of the run)";
    pe.log_y = true;
    diffuse::plot_curves_png((out / "exposure_bias.png").string(), eb_names, eb_xs, eb_ys, pe);
  }
  spdlog::info("wrote {}/eval.csv, eval.md, fd_vs_steps.png{}", a.out,
               a.eb_num > 0 ? ", exposure_bias.csv, exposure_bias.png" : "");
  return kExitOk;
}

std::function<int()> setup_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.footer(R"(Lists: --sampler, --schedule, --steps and --cfg take comma-separated lists (or repeat the option);
every combination is one table row. In a sampler/schedule list, a piece "key=value" without a ':'
continues the previous spec's options: --sampler dpmpp_2m,euler_a:eta=0.5,s_noise=1,ddim is 3 specs.

Outputs (--out DIR): eval.csv (one row per setting), exposure_bias.csv (one row per setting and step),
eval.md (the table and what was measured), fd_vs_steps.png (one curve per sampler/schedule/cfg),
exposure_bias.png (delta per step). The markdown table is printed to stdout. The tables are
rewritten (atomically) as soon as each setting is measured, so an interrupted run keeps its rows;
the plots are drawn at the end from the whole table.

--resume: continue the table in --out: settings already in eval.csv (same sampler, schedule, steps
and cfg) are not measured again, the others are added, and rows of other settings are kept. A
table measured with different run columns (corrections, --num, --seed, --batch-size,
--reference-limit, --eb-num, --eb-mode, --model, --dtype) is refused (exit 2): its numbers would
not compare.

Examples:
  diffuse eval                                        # dpmpp_2m, 10 and 20 steps, 500 samples
  diffuse eval --sampler ddim,euler,dpmpp_2m --steps 5,10,20 --out eval_samplers
  diffuse eval --schedule default,karras --steps 10 --cfg 1,2,4
  diffuse eval --correction epsilon_scaling:b=1.005 --steps 20
  diffuse eval --model runs/tiny/model.pt --num 2000 --batch-size 500
  diffuse eval --schedule file:ays.json --steps 10   # a schedule written by `diffuse ays`
  diffuse eval --steps 5,10,20,40 --resume            # after an interruption: only the missing rows)");
  app.add_option("-m,--model", a->model, "Model (as in `diffuse sample`; default: the shipped model)")
      ->capture_default_str();
  app.add_option("--model-card", a->model_card, "Card for a model file without one");
  app.add_option("-s,--sampler", a->samplers, "Sampler spec(s), comma list (default dpmpp_2m)");
  app.add_option("--schedule", a->schedules, "Spacing spec(s), comma list; 'default' = the model's; file:PATH");
  app.add_option("--steps", a->steps, "Solver steps, comma list (default 10,20)");
  app.add_option("--cfg", a->cfgs, "Guidance scale(s), comma list (default 2; 1 = off)");
  app.add_option("-c,--correction", a->corrections, "Correction spec applied to every setting; repeatable");
  app.add_option("--seed", a->seed, "Seed; sample i uses seed + i")->capture_default_str();
  app.add_option("-n,--num", a->num, "Samples per setting (>= 4)")->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "Samples per network batch")->capture_default_str();
  app.add_option("--reference-limit", a->reference_limit, "Use the first N test images as the reference (-1 = all)")
      ->capture_default_str();
  app.add_option("--eb-num", a->eb_num, "Test images for the exposure-bias measurement (0 = off)")
      ->capture_default_str();
  app.add_option("--eb-mode", a->eb_mode, "Exposure bias: accumulated (one chain) or single_step")
      ->capture_default_str();
  app.add_option("--data-dir", a->data_dir, "Fashion-MNIST folder (default: the Debian package's)");
  app.add_option("--device", a->device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", a->dtype, "float32, float64, float16, bfloat16")->capture_default_str();
  app.add_option("-o,--out", a->out, "Output folder")->capture_default_str();
  app.add_flag("--resume", a->resume, "Keep the rows already in --out/eval.csv and measure only the missing settings");
  return [a] { return run_eval(*a); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(eval, "eval", "FD / precision / recall and exposure bias of sampler settings on Fashion-MNIST",
                    setup_eval);

}  // namespace diffuse::cli
