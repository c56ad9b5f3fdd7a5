// SPDX-License-Identifier: Apache-2.0
// diffuse sample, shared by its source files: the settings a record holds, the output options, the
// record (sample_record.cpp) and the writing of the outputs (sample_output.cpp). The command
// itself, its options and its steps are in sample.cpp.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <diffuse/training/model_file.h>

namespace diffuse {
class Sampler;
class TimestepSpacing;
class Correction;
class Guidance;
}  // namespace diffuse

namespace diffuse::cli::sample_command {

/// Everything that determines the images (the record). Output paths are not part of it.
struct SampleSettings {
  std::string model = "default";
  std::string model_card;
  std::string sampler = "dpmpp_2m";
  std::string schedule;  // spacing spec; empty = the noise schedule's default
  int64_t steps = 20;
  double cfg = 2.0;
  /// The guidance: "cfg" (default), "cfg_pp", "apg", "cfg_zero_star", with options
  /// ("apg:eta=0,momentum=-0.5"); its scale is `cfg` unless the spec sets one.
  std::string guidance = "cfg";
  /// img2img / inpainting: the starting image (a PNG of the model's size), the share of the steps
  /// run from it (0 = the default: 0.8 for img2img, 1 with a mask, as diffusers' pipelines), and
  /// the mask PNG (white = generate, black = keep).
  std::string init_image;
  double strength = 0.0;
  std::string mask;
  /// RePaint's resampling jumps (SampleOptions::resample_jump / resample_times); 0 and 1 = off.
  int64_t resample_jump = 0;
  int64_t resample_times = 1;
  /// --step-cache: DiT step caching threshold (diffuse::DiTStepCache; 0 = off).
  double step_cache = 0.0;
  std::string vae;       // --vae: decode latents through this AutoencoderKL ("" = pixel model)
  int64_t vae_tile = 0;  // --vae-tile: tiled decode, tile side in pixels (0 = whole images)
  std::string vae_preset = "sd";  // --vae-preset: architecture of a VAE file without a config
  std::string classes;            // "" = cycle through all classes; "3", "0,3,7", names
  std::vector<std::string> corrections;
  uint64_t seed = 0;
  /// --noise: where the starting noise and the stochastic samplers' draws come from, a
  /// diffuse::make_noise name (per_sample, torch, philox), or kRestartNoise (below).
  std::string noise = "per_sample";
  int64_t num = 40;
  int64_t batch_size = 0;  // 0 = automatic: as many as fit --batch-memory
  std::string device = "cpu";
  std::string dtype = "float32";
  int64_t nrow = 0;  // 0 = number of classes when cycling, else 8
  // The intra-op threads the images were made with: matrix products round differently with
  // another thread count (docs/reliability.md), so --from-record reuses it. 0 = not recorded.
  int64_t threads = 0;
};

/// The stream of records written before the `noise` field (diffuse 0.1.0 up to December 2026):
/// per-sample generators seeded seed + i for the starting noise, and again from the seed for the
/// steps, so a stochastic sampler's first draw repeated the starting noise. Kept so those records
/// still regenerate their images; new runs continue the generators instead (per_sample).
inline constexpr const char* kRestartNoise = "per_sample_restart";

/// The largest --num, and the most images the grid PNG shows.
constexpr int64_t kMaxNum = 1000000;
constexpr int64_t kMaxGridImages = 1024;
/// The most threads a record may ask for (it may come from a larger machine than this one).
constexpr int64_t kMaxRecordThreads = 1024;

struct SampleOutputs {
  std::string out = "diffuse_samples.png";
  double batch_memory_mib = 1024;  // --batch-memory: the budget of --batch-size 0
  std::string record;              // default: <out without .png>.json
  std::string save_each;
  std::string save_tensor;
  std::string from_record;
  bool list = false;
};

// ----- the record (sample_record.cpp)

nlohmann::json to_json(const SampleSettings& s);
/// The settings of a record's JSON; anything missing, misspelt or mistyped is a UsageError naming
/// `path`.
SampleSettings from_json(const nlohmann::json& j, const std::string& path);
/// The settings object of a record: a .json file (the record itself, or bare settings) or a PNG's
/// tEXt chunk "diffuse". A missing or malformed record is a UsageError.
nlohmann::json read_record(const std::string& path);

/// What the settings resolved to, recorded next to them for the reader (not read back).
struct ResolvedRun {
  const diffuse::LoadedModel* model = nullptr;
  std::string model_path;  ///< the file the weights came from (checksummed)
  const diffuse::Sampler* sampler = nullptr;
  const diffuse::TimestepSpacing* spacing = nullptr;  ///< nullptr: the noise schedule's default
  std::vector<double> grid_t;
  const std::vector<std::shared_ptr<diffuse::Correction>>* corrections = nullptr;
  const diffuse::Guidance* guidance = nullptr;  ///< nullptr: no guidance
  const std::vector<int64_t>* class_ids = nullptr;
};
/// The record: {"settings": regenerable settings, "resolved": what they resolved to}.
nlohmann::json make_record(const SampleSettings& s, const ResolvedRun& r);

// ----- the outputs (sample_output.cpp)

/// Every sampler, spacing, correction, guidance and noise schedule registered (--list).
void print_lists(std::ostream& os);
/// Whether `text` ends with the lower-case `suffix`, ignoring case.
bool ends_with_ci(const std::string& text, const std::string& suffix);
/// The grid PNG (at most kMaxGridImages images), the record JSON, and --save-each / --save-tensor;
/// logs what was written.
void write_outputs(const SampleSettings& s, const SampleOutputs& o, const at::Tensor& images,
                   const nlohmann::json& record, int64_t nrow);

/// The settings record next to the grid: <out without .png>.json.
std::string default_record_path(const std::string& out);

}  // namespace diffuse::cli::sample_command
