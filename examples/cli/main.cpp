// SPDX-License-Identifier: Apache-2.0
// diffuse: sample, train, optimise Align-Your-Steps schedules, evaluate and benchmark from the
// command line. `diffuse <command> --help` shows each command's options and examples.
#include "cli.h"

#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <string>

#include <diffuse/config.h>
#include <diffuse/cpu_allocator.h>
#include <diffuse/version.h>

namespace {

/// The exit code of a command that failed with `e` (the one place that maps error kinds to codes;
/// docs/cli.md lists them).
int exit_code_for(const std::exception& e) {
  using namespace diffuse::cli;
  if (dynamic_cast<const UsageError*>(&e) || dynamic_cast<const diffuse::ConfigError*>(&e))
    return kExitUsage;
  if (dynamic_cast<const diffuse::IOError*>(&e)) return kExitIO;
  if (dynamic_cast<const diffuse::NumericalError*>(&e)) return kExitNumerical;
  return kExitFailure;  // a plain diffuse::Error, a LibTorch error, std::bad_alloc, ...
}

/// The options every command shares (before the command), set into global().
void add_global_options(CLI::App& app) {
  auto& g = diffuse::cli::global();
  app.add_flag("-v,--verbose", g.verbose, "More log output (-vv: trace)");
  app.add_flag("-q,--quiet", g.quiet, "Warnings and errors only, no progress bar");
  app.add_option("--threads", g.threads,
                 "Intra-op CPU threads, at most the CPUs this process may use (0 = automatic: the "
                 "CPUs that "
                 "are free at start)")
      ->capture_default_str();
  app.add_flag("--no-progress", g.no_progress, "Never draw progress bars");
}

/// A parse error on one line, naming the word that is not a command rather than CLI11's "A
/// subcommand is required"; returns the exit code.
int report_parse_error(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  using namespace diffuse::cli;
  std::string where = "diffuse";
  for (const CLI::App* sub : app.get_subcommands()) where += " " + sub->get_name();
  std::string message = e.what();
  if (app.get_subcommands().empty()) {
    std::string names;
    for (const Command& c : commands()) names += (names.empty() ? "" : ", ") + c.name;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg.empty() || arg[0] == '-') {
        if (arg == "--threads") ++i;  // skip its value
        continue;
      }
      message = "unknown command '" + arg + "'";
      break;
    }
    message += " (commands: " + names + ")";
  }
  std::fprintf(stderr, "%s: error: %s (see `%s --help`)\n", where.c_str(), message.c_str(),
               where.c_str());
  return kExitUsage;
}

/// Log lines "level: message" on stderr, at the level -q / -v / -vv ask for.
void set_up_logging() {
  const auto& g = diffuse::cli::global();
  auto logger = spdlog::stderr_color_mt("diffuse");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(g.quiet          ? spdlog::level::warn
                    : g.verbose >= 2 ? spdlog::level::trace
                    : g.verbose == 1 ? spdlog::level::debug
                                     : spdlog::level::info);
}

/// Runs the chosen command; a failure is one line on stderr and the exit code of its kind.
int run_command(const std::string& where, const std::function<int()>& action) {
  using namespace diffuse::cli;
  try {
    apply_threads();
    // Freed tensors stay cached for the next step instead of going back to the OS (see
    // <diffuse/cpu_allocator.h>); DIFFUSE_CACHING_ALLOCATOR=0 keeps LibTorch's malloc.
    const char* cache = std::getenv("DIFFUSE_CACHING_ALLOCATOR");
    if (cache == nullptr || std::string(cache) != "0") diffuse::enable_caching_cpu_allocator();
    (void)progress_interval_setting();  // a bad DIFFUSE_PROGRESS_INTERVAL fails before any work
    return action();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", where.c_str(),
                 e.what());  // the CLI's own message, as written
    return exit_code_for(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", where.c_str(), error_message(e).c_str());
    return exit_code_for(e);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace diffuse::cli;
  command_line(argc, argv);
  CLI::App app{"diffuse " DIFFUSE_VERSION_STRING
               ": diffusion sampling and training on LibTorch.\n"
               "Run `diffuse <command> --help` for a command's options and examples."};
  app.name("diffuse");
  app.set_version_flag("--version", DIFFUSE_VERSION_STRING);
  app.require_subcommand(1, 1);
  app.fallthrough();
  add_global_options(app);
  std::map<CLI::App*, std::function<int()>> actions;
  for (const Command& c : commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.summary);
    sub->fallthrough();
    actions[sub] = c.setup(*sub);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return report_parse_error(app, e, argc, argv);
  }
  set_up_logging();
  CLI::App* chosen = app.get_subcommands().front();
  return run_command("diffuse " + chosen->get_name(), actions.at(chosen));
}
