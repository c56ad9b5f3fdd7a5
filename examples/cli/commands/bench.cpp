// SPDX-License-Identifier: Apache-2.0
// diffuse bench: runs the benchmark suites of bench/ (sampler overhead, corrections, training step)
// in this process and writes DIR/benchmarks.md (docs/benchmarks.md-style tables, each row with its
// ratio to a baseline row measured in the same run, and a header naming the machine, threads and
// LibTorch), DIR/benchmarks.json (every raw value) and one PNG bar plot per suite.
//
// The measurements are the ones of the standalone programs: both use bench/timing.h and
// bench/training_step.h; bench/suites.h cuts them into named cases that --filter selects from.
#include "cli.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <sys/utsname.h>

#include <diffuse/training/atomic_file.h>
#include <diffuse/training/image.h>
#include <diffuse/training/plot.h>
#include <diffuse/version.h>

#include "../../../bench/suites.h"

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct BenchOptions {
  std::string suite = "all";
  std::string filter;
  double min_time = 0.5;
  std::string out = "bench_results";
  bool list = false;
};

struct Ran {
  const bench::Case* c = nullptr;
  bench::Result result;
  double seconds = 0;  // wall time of the whole case, setup included
};

std::string first_line_of(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : trim(line.substr(colon + 1));
    }
  return "";
}

json machine_context() {
  json j;
  j["cpu"] = first_line_of("/proc/cpuinfo", "model name");
  j["hardware_threads"] = std::thread::hardware_concurrency();
  const std::string mem = first_line_of("/proc/meminfo", "MemTotal");  // "24567890 kB"
  if (!mem.empty()) j["memory_gib"] = std::round(std::stod(mem) / (1024.0 * 1024.0) * 10) / 10;
  struct utsname u {};
  if (::uname(&u) == 0) j["os"] = std::string(u.sysname) + " " + u.release + " " + u.machine;
  j["intra_op_threads"] = at::get_num_threads();
  j["libtorch"] = TORCH_VERSION;
  j["diffuse"] = DIFFUSE_VERSION_STRING;
#ifdef NDEBUG
  j["build"] = "optimised (NDEBUG)";
#else
  j["build"] = "debug (asserts on: timings are not representative)";
#endif
  double load[3] = {0, 0, 0};
  if (::getloadavg(load, 3) == 3) j["load_average"] = {load[0], load[1], load[2]};
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  j["date"] = when;
  j["command"] = invocation();
  return j;
}

std::string number(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[32];
  const double a = std::abs(v);
  std::snprintf(buf, sizeof(buf),
                a >= 1000  ? "%.0f"
                : a >= 10  ? "%.1f"
                : a >= 0.1 ? "%.2f"
                           : "%.4f",
                v);
  return buf;
}

std::string ascii(std::string s) {
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"µ", "u"}, {"÷", "/"}}) {
    for (auto p = s.find(from); p != std::string::npos; p = s.find(from))
      s.replace(p, from.size(), to);
  }
  return s;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

/// The markdown of one suite's table (rows in the suite's order).
std::string suite_markdown(const bench::Suite& suite, const std::vector<const Ran*>& rows,
                           const std::map<std::string, const Ran*>& by_name,
                           const std::string& png) {
  std::ostringstream md;
  md << "## " << suite.title << " (`" << suite.name << "`)\n\n" << suite.description << "\n\n";
  const bench::Result& first = rows.front()->result;
  std::vector<std::string> head = suite.key_columns;
  for (const auto& v : first.values) head.push_back(v.name);
  head.push_back("runs");
  head.push_back("baseline");
  for (const auto& v : first.values)
    if (v.compare) head.push_back(v.name + " ÷ baseline");
  md << "| " << join(head, " | ") << " |\n|";
  for (size_t i = 0; i < head.size(); ++i) md << "---|";
  md << "\n";
  std::set<std::string> notes;
  for (const Ran* r : rows) {
    std::vector<std::string> cells = r->c->labels;
    for (const auto& v : r->result.values) cells.push_back(number(v.value));
    cells.push_back(std::to_string(r->result.repetitions));
    const Ran* base = by_name.at(r->c->baseline);
    cells.push_back(base == r ? "(this row)" : join(base->c->labels, " "));
    for (const auto& v : r->result.values)
      if (v.compare) cells.push_back(number(v.value / base->result.get(v.name)));
    md << "| " << join(cells, " | ") << " |\n";
    if (!r->result.note.empty()) notes.insert(r->c->labels.front() + ": " + r->result.note);
  }
  md << "\n";
  for (const auto& n : notes) md << "- " << n << "\n";
  if (!notes.empty()) md << "\n";
  md << "![" << suite.name << "](" << png << ")\n\n";
  return md.str();
}

/// A bar-like PNG: one vertical bar per row, its height the suite's plot value.
void suite_plot(const std::string& path, const bench::Suite& suite,
                const std::vector<const Ran*>& rows) {
  std::vector<std::string> names;
  std::vector<std::vector<double>> xs, ys;
  for (size_t i = 0; i < rows.size(); ++i) {
    names.push_back(ascii(join(rows[i]->c->labels, " ")));
    // A filled bar of width 0.7 centred on x = i + 1, drawn as a zigzag of vertical strokes.
    const double v = rows[i]->result.get(suite.plot_value),
                 left = static_cast<double>(i + 1) - 0.35;
    std::vector<double> bx, by;
    const int strokes = 61;  // odd: the zigzag starts and ends at y = 0
    for (int k = 0; k <= strokes; ++k) {
      const double x = left + 0.7 * k / strokes;
      bx.insert(bx.end(), {x, x});
      if (k % 2)
        by.insert(by.end(), {v, 0.0});
      else
        by.insert(by.end(), {0.0, v});
    }
    if (i == 0) {  // margins left and right
      bx.insert(bx.begin(), 0.4);
      by.insert(by.begin(), 0.0);
    }
    if (i + 1 == rows.size()) {
      bx.push_back(static_cast<double>(rows.size()) + 0.6);
      by.push_back(0.0);
    }
    xs.push_back(std::move(bx));
    ys.push_back(std::move(by));
  }
  diffuse::PlotOptions po;
  po.title = ascii(suite.name + ": " + suite.plot_value);
  po.width = 800;
  po.height = 480;
  diffuse::plot_curves_png(path, names, xs, ys, po);
}

/// --suite, --filter (compiled) and --min-time, checked.
std::regex check_options(const BenchOptions& o, const std::vector<std::string>& all) {
  require(o.suite == "all" || std::find(all.begin(), all.end(), o.suite) != all.end(),
          "unknown --suite '" + o.suite + "' (" + join(all, ", ") + ", all)");
  std::regex re;
  try {
    re = std::regex(o.filter.empty() ? "." : o.filter, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw UsageError("--filter '" + o.filter + "' is not a valid regular expression: " + e.what());
  }
  require(std::isfinite(o.min_time) && o.min_time > 0 && o.min_time <= 3600,
          "--min-time must be in (0, 3600] seconds, got " + diffuse::format_double(o.min_time));
  return re;
}

/// The names of the cases the filter matches, plus their baselines.
std::set<std::string> select_cases(const std::vector<bench::Suite>& suites, const std::regex& re,
                                   size_t* total_cases) {
  std::set<std::string> selected;
  *total_cases = 0;
  for (const auto& s : suites)
    for (const auto& c : s.cases) {
      ++*total_cases;
      if (std::regex_search(c.name, re)) {
        selected.insert(c.name);
        selected.insert(c.baseline);
      }
    }
  return selected;
}

/// Runs the selected cases in suite order (a failing case fails the command, with its kind of
/// error).
std::vector<Ran> run_cases(const std::vector<bench::Suite>& suites,
                           const std::set<std::string>& selected, double min_time) {
  std::vector<Ran> ran;
  ran.reserve(selected.size());
  Progress bar("benchmarks", static_cast<int64_t>(selected.size()));
  bar.update(0);
  for (const auto& s : suites)
    for (const auto& c : s.cases) {
      if (!selected.count(c.name)) continue;
      Ran r;
      r.c = &c;
      const auto t0 = bench::Clock::now();
      try {
        r.result = c.run(min_time);
      } catch (const std::exception& e) {
        throw_same_kind(e, "benchmark " + c.name + " failed: " + error_message(e));
      }
      r.seconds = bench::seconds_since(t0);
      ran.push_back(std::move(r));
      bar.finish();
      const auto& v = ran.back().result.values.front();
      spdlog::debug("{}: {} {} ({} runs, {:.1f} s)", c.name, v.name, number(v.value),
                    ran.back().result.repetitions, ran.back().seconds);
      bar.update(static_cast<int64_t>(ran.size()));
    }
  bar.finish();
  return ran;
}

/// benchmarks.md's header: when, how, on what.
std::string report_header(const json& context, double min_time) {
  std::ostringstream md;
  md << "# diffuse benchmarks\n\n"
     << "Measured " << context["date"].get<std::string>() << " with `" << invocation() << "`.\n\n"
     << "Machine: " << context.value("cpu", std::string("unknown CPU")) << ", "
     << context["hardware_threads"].get<unsigned>() << " hardware threads";
  if (context.contains("memory_gib"))
    md << ", " << number(context["memory_gib"].get<double>()) << " GiB RAM";
  if (context.contains("os")) md << ", " << context["os"].get<std::string>();
  md << ". Intra-op threads: " << at::get_num_threads() << ". LibTorch " << TORCH_VERSION
     << ", diffuse " << DIFFUSE_VERSION_STRING << ", " << context["build"].get<std::string>()
     << " build.";
  if (context.contains("load_average"))
    md << " Load average at the start: " << number(context["load_average"][0].get<double>()) << ".";
  md << "\nEach benchmark repeats its measurement for at least " << diffuse::format_double(min_time)
     << " s (\"runs\"); ratios are to the baseline row named in each row, measured in this same "
        "run.\n\n";
  return md.str();
}

/// The raw values of one row for benchmarks.json.
json raw_row(const Ran& r, const std::string& suite, const Ran& base) {
  json b;
  b["name"] = r.c->name;
  b["suite"] = suite;
  b["labels"] = r.c->labels;
  b["baseline"] = r.c->baseline;
  b["repetitions"] = r.result.repetitions;
  b["wall_seconds"] = r.seconds;
  if (!r.result.note.empty()) b["note"] = r.result.note;
  for (const auto& v : r.result.values) {
    b["values"][v.name] = v.value;
    if (v.compare) b["ratios_to_baseline"][v.name] = v.value / base.result.get(v.name);
  }
  return b;
}

/// benchmarks.md, benchmarks.json and one PNG per suite in `out`; logs what was written.
void write_report(const std::string& out, const std::vector<bench::Suite>& suites,
                  const std::vector<Ran>& ran, const json& context, double min_time) {
  std::map<std::string, const Ran*> by_name;
  for (const auto& r : ran) by_name[r.c->name] = &r;
  std::string md = report_header(context, min_time);
  json raw;
  raw["context"] = context;
  raw["min_time_s"] = min_time;
  raw["benchmarks"] = json::array();
  std::vector<std::string> written{(fs::path(out) / "benchmarks.md").string()};
  for (const auto& s : suites) {
    std::vector<const Ran*> rows;
    for (const auto& r : ran)
      if (r.c->name.rfind(s.name + "/", 0) == 0) rows.push_back(&r);
    if (rows.empty()) continue;
    const std::string png = s.name + ".png";
    md += suite_markdown(s, rows, by_name, png);
    suite_plot((fs::path(out) / png).string(), s, rows);
    written.push_back((fs::path(out) / png).string());
    for (const Ran* r : rows)
      raw["benchmarks"].push_back(raw_row(*r, s.name, *by_name.at(r->c->baseline)));
  }
  diffuse::write_text_file_atomic(written.front(), md);
  const std::string json_path = (fs::path(out) / "benchmarks.json").string();
  diffuse::write_text_file_atomic(json_path, raw.dump(2) + "\n");
  written.push_back(json_path);
  spdlog::info("wrote {}", join(written, ", "));
}

int run_bench(const BenchOptions& o) {
  const std::vector<std::string> all = bench::suite_names();
  const std::regex re = check_options(o, all);
  std::vector<bench::Suite> suites;
  for (const auto& name : all)
    if (o.suite == "all" || o.suite == name) suites.push_back(bench::make_suite(name));
  size_t total_cases = 0;
  const std::set<std::string> selected = select_cases(suites, re, &total_cases);
  if (o.list) {
    for (const auto& s : suites)
      for (const auto& c : s.cases)
        std::cout << c.name << (selected.count(c.name) ? "" : "  (not selected)") << "\n";
    return kExitOk;
  }
  require(!selected.empty(), "--filter '" + o.filter + "' matches none of the " +
                                 std::to_string(total_cases) +
                                 " benchmarks (see `diffuse bench --list`)");

  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec || !fs::is_directory(o.out))
    throw diffuse::IOError("cannot create --out folder '" + o.out + "'" +
                           (ec ? ": " + ec.message() : std::string()));

  const json context = machine_context();
  spdlog::info("{} benchmark(s), at least {} s each, {} intra-op thread(s), LibTorch {}",
               selected.size(), diffuse::format_double(o.min_time), at::get_num_threads(),
               TORCH_VERSION);
  const std::vector<Ran> ran = run_cases(suites, selected, o.min_time);
  write_report(o.out, suites, ran, context, o.min_time);
  return kExitOk;
}

std::function<int()> setup_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  app.footer(R"(Examples:
  diffuse --threads 1 bench                          # every suite, tables in bench_results/benchmarks.md
  diffuse bench --suite sampler_overhead --min-time 2 --out docs/bench
  diffuse bench --filter 'corrections/ddim/'         # ddim plain and with each correction
  diffuse bench --filter 'sampler_overhead/(euler|heun)$' --min-time 0.1
  diffuse bench --list                               # the benchmark names --filter matches against
A row's baseline (ddim; the plain sampler; the unmasked step) is always run with it.)");
  app.add_option("--suite", o->suite, "sampler_overhead, corrections, training, scaling or all")
      ->capture_default_str();
  app.add_option("--filter", o->filter,
                 "Only benchmarks whose name (suite/...) matches this ECMAScript regular "
                 "expression (searched)");
  app.add_option("--min-time", o->min_time,
                 "Seconds each benchmark repeats its measurement for (at least one run)")
      ->capture_default_str();
  app.add_option("-o,--out", o->out, "Folder for benchmarks.md, benchmarks.json and the PNG plots")
      ->capture_default_str();
  app.add_flag("--list", o->list,
               "List the benchmark names (marking those --suite/--filter leave out), then exit");
  return [o] { return run_bench(*o); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(bench, "bench",
                    "Run the benchmark suites; write markdown tables, PNG plots and raw JSON",
                    setup_bench);

}  // namespace diffuse::cli
