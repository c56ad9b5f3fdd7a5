// SPDX-License-Identifier: Apache-2.0
// diffuse train, shared by its source files: the config keys (one table: defaults, types, ranges,
// help; used for the file, --set, the per-key options, validation and the documentation), the
// options, and the resolution of the config (train_config.cpp). The command itself, its options
// and its steps are in train.cpp.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "parallel.h"

namespace diffuse::cli::train_command {

enum class KeyType { kInt, kDouble, kString, kBool };

struct KeySpec {
  const char* name;
  KeyType type;
  nlohmann::json default_value;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  const char* help = "";
  bool min_exclusive = false;  ///< values must be > min (the trainer's own check, e.g. lr > 0)
};

constexpr int64_t kImageSize = 28;  // Fashion-MNIST

/// Every config key, in the order --help and the documentation list them.
const std::vector<KeySpec>& config_keys();
/// The per-key option of a key: "--batch-size" for batch_size.
std::string option_name(const KeySpec& k);

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::map<std::string, std::string> flags;  // per-key options (--batch-size 32), as text
  std::string out = "diffuse_run";
  bool print_config = false;
  ParallelArgs parallel;
};

/// The config of a run: the defaults, then the config file (--config, or else `saved_config`, the
/// run folder's config.json, when it exists), then --set and the per-key options given on `app`'s
/// command line. Every key and value is checked (UsageErrors naming where it came from). `base`
/// receives the file read ("" for none).
nlohmann::json resolve_config(const TrainArgs& a, const CLI::App& app,
                              const std::string& saved_config, std::string& base);

/// The --help footer: the config file, the keys, the run folder, examples.
std::string footer();

}  // namespace diffuse::cli::train_command
