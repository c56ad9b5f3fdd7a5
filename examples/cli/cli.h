// SPDX-License-Identifier: Apache-2.0
// The `diffuse` command-line tool: subcommand registration and what every subcommand shares
// (logging verbosity, threads, devices and dtypes, one-line errors, exit codes, a progress bar with
// ETA, JSON records). Each subcommand lives in commands/<name>.cpp (larger ones also in
// commands/<name>_<part>.cpp with a commands/<name>.h) and registers itself with
// DIFFUSE_CLI_COMMAND, so adding one touches one file.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <diffuse/config.h>
#include <CLI/CLI.hpp>

namespace diffuse::cli {

/// Exit codes of every subcommand. main() maps each kind of error to its code (exit_code_for,
/// main.cpp); 130 and 143 (128 + signal) end an interrupted `diffuse train`.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  ///< any other failure (a LibTorch error, out of memory, ...)
  kExitUsage = 2,    ///< bad arguments or configuration: UsageError, diffuse::ConfigError
  kExitIO = 3,       ///< a file unreadable, unwritable, corrupt, truncated or of the wrong format:
                     ///< diffuse::IOError
  kExitNumerical = 4,  ///< NaN / Inf in the computation: diffuse::NumericalError
};

/// A bad argument found by the CLI itself: reported as one line and exit code 2 (as a
/// diffuse::ConfigError from the library).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Throws an error of the same kind as `e` (UsageError, diffuse::ConfigError, IOError,
/// NumericalError, else diffuse::Error) with `message`: for rewording a caught error without
/// changing its exit code.
[[noreturn]] void throw_same_kind(const std::exception& e, const std::string& message);

/// Options shared by all subcommands (set on the top-level app).
struct GlobalOptions {
  int verbose = 0;      ///< -v / -vv
  bool quiet = false;   ///< -q: warnings and errors only, no progress bar
  int64_t threads = 0;  ///< --threads: intra-op threads, 0 = automatic (auto_threads)
  bool no_progress = false;
};
GlobalOptions& global();

/// A subcommand: `setup` adds its options to `app` and returns the action run after a successful
/// parse (returning an exit code). Registered with DIFFUSE_CLI_COMMAND.
struct Command {
  std::string name;
  std::string summary;
  std::function<std::function<int()>(CLI::App& app)> setup;
};
std::vector<Command>& commands();
bool register_command(Command c);

#define DIFFUSE_CLI_COMMAND(id, name, summary, setup) \
  static const bool diffuse_cli_command_##id =        \
      ::diffuse::cli::register_command({name, summary, setup})

/// `s` without leading and trailing spaces, tabs and line breaks.
std::string trim(const std::string& s);

/// The message of an exception on one line (LibTorch's backtraces and context lines dropped).
std::string error_message(const std::exception& e);

/// "cpu", "cuda", "cuda:1" -> device; a CUDA device without CUDA is a UsageError naming it.
c10::Device parse_device(const std::string& text);
/// "float32"/"float"/"fp32", "float64"/"double"/"fp64", "float16"/"half"/"fp16", "bfloat16"/"bf16".
c10::ScalarType parse_dtype(const std::string& text);
std::string dtype_name(c10::ScalarType t);

/// Throws UsageError(message) unless cond.
void require(bool cond, const std::string& message);
/// The enum value called `name` in the library's names table; any other name is a UsageError
/// "<what> must be a, b or c, got '<name>'" (`what`: the option, e.g. "--init").
template <class E>
E require_enum(const std::string& name, const diffuse::EnumNames<E>& names,
               const std::string& what) {
  try {
    return diffuse::parse_enum(name, names, what);
  } catch (const diffuse::ConfigError& e) {
    throw UsageError(e.what());
  }
}
/// A file that must exist (UsageError "<what> '<path>' does not exist" otherwise).
void require_file(const std::string& path, const std::string& what);

/// How long commands show their progress: a bar redrawn in place when stderr is a terminal, plain
/// log lines every few seconds when it is not (a log file, a pipe, CI), nothing with -q or
/// --no-progress.
enum class ProgressMode { kOff, kBar, kLog };
ProgressMode progress_mode();

/// Whether progress bars are drawn (progress_mode() == kBar).
bool progress_enabled();

/// Environment variable: seconds between two plain progress lines (a number >= 0; 0 = a line per
/// update). Default diffuse::kProgressLogIntervalSeconds (training/progress.h, 5 s).
inline constexpr const char* kProgressIntervalEnv = "DIFFUSE_PROGRESS_INTERVAL";

/// DIFFUSE_PROGRESS_INTERVAL, or the default when unset; anything but a number >= 0 is a
/// UsageError naming the value (main checks it before running a command).
double progress_interval_setting();
/// Seconds between plain progress lines in ProgressMode::kLog (progress_interval_setting()), -1 in
/// the other modes.
double progress_log_interval();

/// Progress of a long loop on stderr. On a terminal a one-line bar,
/// "label [#####-----] 12/40  3.1 it/s  ETA 00:09", redrawn at most ~10 times a second and cleared
/// by finish(). Off a terminal an info log line every progress_log_interval() seconds and at the
/// last update, "label: 12/40 unit (30%), 3.10 it/s, ETA 00:09" (finish() prints nothing). Silent
/// in ProgressMode::kOff.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "");
  ~Progress();
  void update(int64_t done);
  void finish();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  double last_draw_ = -1;
  std::string unit_;
  double log_interval_ = -1;  // >= 0: plain log lines (ProgressMode::kLog)
  double last_log_ = 0;
};

/// The CPUs this process may run on (its affinity mask).
int usable_cpus();
/// How many of `cpus` CPUs other processes leave free, measured over `window_s` seconds by one
/// spinning thread per CPU (their CPU time over the wall time).
double measure_free_cpus(int cpus, double window_s);
/// Length of the probe behind --threads 0 (automatic), in seconds.
inline constexpr double kThreadProbeSeconds = 0.05;
/// --threads 0 (automatic): the CPUs that are free now (measure_free_cpus), at least 1. OpenMP
/// threads spin briefly, then wait passively (the `diffuse` launcher, launcher.cpp, sets
/// OMP_WAIT_POLICY=PASSIVE and GOMP_SPINCOUNT=1000 before LibTorch loads), so a thread that shares
/// its CPU with another process later costs little.
int auto_threads();
/// The common "--threads" handling after parsing: in [0, usable_cpus()], 0 = auto_threads().
void apply_threads();
/// The BLAS kernels matrix products run on, "OpenBLAS <core>" (openblas_get_corename; the
/// `diffuse` launcher may have set OPENBLAS_CORETYPE), or "" when LibTorch does not use OpenBLAS.
/// Another core rounds matrix products differently.
std::string blas_kernels();

/// The full command line, quoted where needed (for records and logs).
std::string command_line(int argc, char** argv);
const std::string& invocation();

}  // namespace diffuse::cli

// ----- shared by several subcommands (cli.cpp)

#include <nlohmann/json.hpp>

#include <diffuse/training/model_file.h>

namespace diffuse::cli {

/// A sampling schedule saved by `diffuse ays` and read by `diffuse sample --schedule file:PATH`:
/// JSON {"format": "diffuse-schedule", "version": 1, "noise_schedule": <card schedule spec>,
/// "timesteps": [model times, noisiest first, one per step], "final": "zero"|"min", "description":
/// ...}.
struct ScheduleFile {
  std::string noise_schedule;     ///< the model's noise schedule the times belong to
  std::vector<double> timesteps;  ///< N model times (N = steps), strictly descending
  std::string final_point = "zero";
  std::string description;
};
void write_schedule_file(const std::string& path, const ScheduleFile& s);  ///< atomic
/// Reads a schedule file: a missing file is a UsageError, an unreadable or malformed one a
/// diffuse::IOError; errors name the file.
ScheduleFile read_schedule_file(const std::string& path);
/// The `timesteps` spacing spec for a schedule file ("timesteps:timesteps=999;...,final=zero").
std::string spacing_spec(const ScheduleFile& s);

/// Loads --model (empty = the shipped default model) on device/dtype; --model-card text for
/// formats without a card. A missing file is a UsageError; an unreadable or corrupt one a
/// diffuse::Error from the library (IOError).
diffuse::LoadedModel load_cli_model(const std::string& model, const std::string& card,
                                    const c10::Device& device, c10::ScalarType dtype);

/// `text` with every byte outside printable ASCII shown as \xNN (for messages that quote file
/// content: a binary file given where JSON was expected must not echo raw bytes).
std::string printable(const std::string& text);

/// Parses JSON text (comments allowed with `allow_comments`), refusing an object that repeats a
/// key; throws std::runtime_error with a printable message ("duplicate key 'x'", or the
/// parser's error) for the caller to prefix with what was read.
nlohmann::json parse_json_strict(const std::string& text, bool allow_comments = false);

/// The whole of a file as bytes; a diffuse::IOError naming `what` and the path if it cannot be
/// read.
std::string read_file_text(const std::string& path, const std::string& what);

/// "name" / "name:k=v,..." of any registry, in canonical form: the registered key and its full
/// to_config (aliases resolved), so a record names exactly what ran.
template <class T>
std::string canonical_spec(const T& obj) {
  const std::string opts = diffuse::format_config(obj.to_config());
  return opts.empty() ? obj.name() : obj.name() + ":" + opts;
}

}  // namespace diffuse::cli
