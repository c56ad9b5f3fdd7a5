// SPDX-License-Identifier: Apache-2.0
#include "cli.h"

#include <ATen/Parallel.h>
#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <dlfcn.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <diffuse/config.h>
#include <diffuse/training/progress.h>

namespace diffuse::cli {

GlobalOptions& global() {
  static GlobalOptions g;
  return g;
}

std::vector<Command>& commands() {
  static std::vector<Command> c;
  return c;
}

bool register_command(Command c) {
  commands().push_back(std::move(c));
  return true;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

std::string error_message(const std::exception& e) {
  std::string text;
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) {
    text = ce->what_without_backtrace();
  } else {
    text = e.what();
  }
  // One line: LibTorch appends "Exception raised from ..." and context lines.
  const auto nl = text.find('\n');
  if (nl != std::string::npos) {
    // Keep multi-line diffuse errors (lists of places tried) readable on one line.
    std::string joined;
    size_t start = 0;
    while (start <= text.size()) {
      auto end = text.find('\n', start);
      std::string line =
          trim(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (line.rfind("Exception raised from", 0) == 0 || line.rfind("frame #", 0) == 0) break;
      if (!line.empty()) joined += (joined.empty() ? "" : "; ") + line;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    text = joined;
  }
  return text;
}

void throw_same_kind(const std::exception& e, const std::string& message) {
  if (dynamic_cast<const UsageError*>(&e)) throw UsageError(message);
  if (dynamic_cast<const diffuse::ConfigError*>(&e)) throw diffuse::ConfigError(message);
  if (dynamic_cast<const diffuse::IOError*>(&e)) throw diffuse::IOError(message);
  if (dynamic_cast<const diffuse::NumericalError*>(&e)) throw diffuse::NumericalError(message);
  throw diffuse::Error(message);
}

c10::Device parse_device(const std::string& text) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(text);
  } catch (const std::exception&) {
    throw UsageError("unknown device '" + text + "' (cpu, cuda, cuda:N)");
  }
  if (device.is_cuda()) {
    const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
    require(n > 0, "device '" + text + "' requested but this LibTorch has no usable CUDA device");
    require(!device.has_index() || device.index() < n,
            "device '" + text + "' does not exist (" + std::to_string(n) + " CUDA device(s))");
  } else {
    require(device.is_cpu(), "device '" + text + "' is not supported (cpu, cuda, cuda:N)");
  }
  return device;
}

c10::ScalarType parse_dtype(const std::string& text) {
  if (text == "float32" || text == "float" || text == "fp32") return c10::kFloat;
  if (text == "float64" || text == "double" || text == "fp64") return c10::kDouble;
  if (text == "float16" || text == "half" || text == "fp16") return c10::kHalf;
  if (text == "bfloat16" || text == "bf16") return c10::kBFloat16;
  throw UsageError("unknown dtype '" + text + "' (float32, float64, float16, bfloat16)");
}

std::string dtype_name(c10::ScalarType t) {
  switch (t) {
    case c10::kFloat:
      return "float32";
    case c10::kDouble:
      return "float64";
    case c10::kHalf:
      return "float16";
    case c10::kBFloat16:
      return "bfloat16";
    default:
      return c10::toString(t);
  }
}

void require(bool cond, const std::string& message) {
  if (!cond) throw UsageError(message);
}

void require_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  require(!path.empty(), what + " path is empty");
  require(std::filesystem::exists(path, ec), what + " '" + path + "' does not exist");
  require(std::filesystem::is_regular_file(path, ec),
          what + " '" + path + "' is not a regular file");
}

ProgressMode progress_mode() {
  if (global().quiet || global().no_progress) return ProgressMode::kOff;
  return ::isatty(STDERR_FILENO) ? ProgressMode::kBar : ProgressMode::kLog;
}

bool progress_enabled() { return progress_mode() == ProgressMode::kBar; }

double progress_interval_setting() {
  const char* env = std::getenv(kProgressIntervalEnv);
  if (env == nullptr || *env == '\0') return diffuse::kProgressLogIntervalSeconds;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  require(
      *end == '\0' && std::isfinite(v) && v >= 0,
      std::string(kProgressIntervalEnv) + " must be a number of seconds >= 0, got '" + env + "'");
  return v;
}

double progress_log_interval() {
  return progress_mode() == ProgressMode::kLog ? progress_interval_setting() : -1;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      total_(std::max<int64_t>(1, total)),
      enabled_(progress_enabled()),
      start_(std::chrono::steady_clock::now()),
      unit_(std::move(unit)),
      log_interval_(progress_log_interval()) {}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done) {
  if (!enabled_ && log_interval_ < 0) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1.0;
  const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  if (!enabled_) {  // plain log lines: every log_interval_ seconds and at the end
    if (done < total_ && log_interval_ > 0 && elapsed - last_log_ < log_interval_) return;
    last_log_ = elapsed;
    spdlog::info("{}", diffuse::progress_log_line(label_, done, total_, unit_, frac, rate, eta));
    return;
  }
  if (done < total_ && drawn_ && elapsed - last_draw_ < 0.1) return;
  last_draw_ = elapsed;
  drawn_ = true;
  const int width = 24, filled = static_cast<int>(frac * width);
  std::fprintf(stderr, "\r%s [%s%s] %lld/%lld  %.2f it/s  ETA %s\033[K", label_.c_str(),
               std::string(filled, '#').c_str(), std::string(width - filled, '-').c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), rate,
               diffuse::format_duration(eta).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_ && drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  drawn_ = false;
}

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

double measure_free_cpus(int cpus, double window_s) {
  // One spinning thread per CPU for `window_s`: the CPU time they get, over the wall time, is the
  // number of CPUs that other processes leave free (the scheduler shares a busy CPU between its
  // runnable threads). Reads only this process's own clocks, so it also holds in a container.
  std::vector<double> cpu_s(static_cast<size_t>(cpus), 0.0);
  std::vector<std::thread> spinners;
  const auto wall0 = std::chrono::steady_clock::now();
  for (int i = 0; i < cpus; ++i) {
    spinners.emplace_back([&cpu_s, i, window_s, wall0] {
      timespec a{}, b{};
      ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
      volatile uint64_t sink = 0;
      while (std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count() <
             window_s)
        for (int k = 0; k < 1000; ++k) sink = sink + static_cast<uint64_t>(k);
      ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
      cpu_s[static_cast<size_t>(i)] = static_cast<double>(b.tv_sec - a.tv_sec) +
                                      1e-9 * static_cast<double>(b.tv_nsec - a.tv_nsec);
    });
  }
  for (auto& t : spinners) t.join();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  double total = 0;
  for (double c : cpu_s) total += c;
  return wall > 0 ? total / wall : static_cast<double>(cpus);
}

int auto_threads() {
  const int cpus = usable_cpus();
  if (cpus <= 1) return 1;
  // A CPU counts as free when the spinners got at least ~70% of it: with one busy process on two
  // CPUs they get ~1.33 CPUs (three threads share two) -> 1 thread; idle they get ~2 -> 2.
  const double free_cpus = measure_free_cpus(cpus, kThreadProbeSeconds);
  return std::clamp(static_cast<int>(std::floor(free_cpus + 0.3)), 1, cpus);
}

void apply_threads() {
  const int64_t t = global().threads;
  const int cpus = usable_cpus();
  require(t >= 0 && t <= cpus, "--threads must be in [0, " + std::to_string(cpus) +
                                   "] (0 = automatic; this process " + "may run on " +
                                   std::to_string(cpus) + " CPUs), got " + std::to_string(t));
  const int n = t > 0 ? static_cast<int>(t) : auto_threads();
  at::set_num_threads(n);
  const auto env_or_unset = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr ? v : "unset");
  };
  spdlog::debug("{} intra-op thread(s){} ({} CPUs usable; OMP_WAIT_POLICY={}, GOMP_SPINCOUNT={})",
                n, t > 0 ? "" : " (automatic)", cpus, env_or_unset("OMP_WAIT_POLICY"),
                env_or_unset("GOMP_SPINCOUNT"));
  const std::string blas = blas_kernels();
  if (!blas.empty()) {
    const char* mended = std::getenv("DIFFUSE_OPENBLAS_MENDED");
    spdlog::debug("{} kernels{}", blas,
                  mended ? fmt::format(" (set by the launcher; OpenBLAS had picked {})", mended)
                         : std::string());
  }
}

std::string blas_kernels() {
  using CoreName = char* (*)();
  auto f = reinterpret_cast<CoreName>(::dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* core = f ? f() : nullptr;
  return core ? std::string("OpenBLAS ") + core : std::string();
}

namespace {
std::string& invocation_storage() {
  static std::string s;
  return s;
}
}  // namespace

std::string command_line(int argc, char** argv) {
  std::string out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool plain = !a.empty() && a.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789-_=.,:/+@%") == std::string::npos;
    if (!plain) {
      std::string q = "'";
      for (char ch : a) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      a = q + "'";
    }
    out += (i ? " " : "") + a;
  }
  invocation_storage() = out;
  return out;
}

const std::string& invocation() { return invocation_storage(); }

}  // namespace diffuse::cli

// ----- shared helpers

#include <nlohmann/json.hpp>

#include <diffuse/training/atomic_file.h>
#include <diffuse/training/safetensors.h>
#include <diffuse/training/torchscript.h>

namespace diffuse::cli {

std::string printable(const std::string& text) {
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

nlohmann::json parse_json_strict(const std::string& text, bool allow_comments) {
  // The parser reports every key as it reads it; one set of seen keys per open object.
  std::vector<std::set<std::string>> open;
  std::string duplicate;
  const nlohmann::json::parser_callback_t check =
      [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using E = nlohmann::json::parse_event_t;
        if (event == E::object_start) open.emplace_back();
        if (event == E::object_end && !open.empty()) open.pop_back();
        if (event == E::key && !open.empty() &&
            !open.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        return true;
      };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, check, /*allow_exceptions=*/true, allow_comments);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(printable(e.what()));
  }
  if (!duplicate.empty()) throw std::runtime_error("duplicate key '" + printable(duplicate) + "'");
  return j;
}

std::string read_file_text(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  if (!f && !f.eof()) throw diffuse::IOError(what + " '" + path + "' cannot be read");
  return os.str();
}

void write_schedule_file(const std::string& path, const ScheduleFile& s) {
  nlohmann::json j;
  j["format"] = "diffuse-schedule";
  j["version"] = 1;
  j["noise_schedule"] = s.noise_schedule;
  j["timesteps"] = s.timesteps;
  j["final"] = s.final_point;
  j["steps"] = s.timesteps.size();
  if (!s.description.empty()) j["description"] = s.description;
  diffuse::write_text_file_atomic(path, j.dump(2) + "\n");
}

ScheduleFile read_schedule_file(const std::string& path) {
  require_file(path, "schedule file");
  const std::string text = read_file_text(path, "schedule file");
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{')
    throw diffuse::IOError("schedule file '" + path +
                           "' is not a JSON schedule written by `diffuse ays` (it does not "
                           "start with '{')");
  nlohmann::json j;
  try {
    j = parse_json_strict(text);
  } catch (const std::exception& e) {
    throw diffuse::IOError("schedule file '" + path + "' is not valid JSON: " + e.what());
  }
  // A file that is not a valid schedule is corrupt or of the wrong format: an I/O error (exit 3).
  auto fail = [&](const std::string& why) {
    throw diffuse::IOError("schedule file '" + path + "': " + why);
  };
  if (!j.is_object() || j.value("format", "") != "diffuse-schedule")
    fail("not a diffuse schedule (format field)");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != 1)
    fail("unsupported version (this build reads version 1)");
  ScheduleFile s;
  if (!j.contains("noise_schedule") || !j["noise_schedule"].is_string()) fail("no noise_schedule");
  s.noise_schedule = j["noise_schedule"].get<std::string>();
  if (!j.contains("timesteps") || !j["timesteps"].is_array() || j["timesteps"].empty())
    fail("no timesteps (a non-empty list of numbers)");
  for (const auto& v : j["timesteps"]) {
    if (!v.is_number()) fail("timesteps holds a non-number: " + v.dump());
    s.timesteps.push_back(v.get<double>());
  }
  for (size_t i = 0; i < s.timesteps.size(); ++i) {
    if (!std::isfinite(s.timesteps[i])) fail("timesteps[" + std::to_string(i) + "] is not finite");
    if (i > 0 && !(s.timesteps[i] < s.timesteps[i - 1]))
      fail("timesteps must be strictly descending; timesteps[" + std::to_string(i) + "]=" +
           diffuse::format_double(s.timesteps[i]) + " >= timesteps[" + std::to_string(i - 1) + "]");
  }
  if (j.contains("steps") &&
      !(j["steps"].is_number_unsigned() && j["steps"].get<uint64_t>() == s.timesteps.size()))
    fail("steps = " + j["steps"].dump() + " does not match the " +
         std::to_string(s.timesteps.size()) + " entries of timesteps");
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const std::set<std::string> known = {"format", "version", "noise_schedule", "timesteps",
                                                "final",  "steps",   "description"};
    if (!known.count(it.key())) fail("unknown field '" + printable(it.key()) + "'");
  }
  s.final_point = j.value("final", "zero");
  if (s.final_point != "zero" && s.final_point != "min") fail("final must be \"zero\" or \"min\"");
  s.description = j.value("description", "");
  return s;
}

std::string spacing_spec(const ScheduleFile& s) {
  std::string v;
  for (double t : s.timesteps) v += (v.empty() ? "" : ";") + diffuse::format_double(t);
  return "timesteps:timesteps=" + v + ",final=" + s.final_point;
}

diffuse::LoadedModel load_cli_model(const std::string& model, const std::string& card,
                                    const c10::Device& device, c10::ScalarType dtype) {
  diffuse::LoadModelOptions o;
  o.device = device;
  o.dtype = dtype;
  o.card = card;
  if (model.empty() || model == "default") {
    std::string path;
    try {
      path = diffuse::default_model_path();
    } catch (const diffuse::Error& e) {
      throw UsageError(error_message(e));
    }
    diffuse::LoadedModel m = diffuse::load_model(path, o);
    m.source = "default";
    return m;
  }
  require_file(model, "model file");
  return diffuse::load_model(model, o);
}

}  // namespace diffuse::cli
