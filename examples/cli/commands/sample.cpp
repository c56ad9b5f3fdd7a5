// SPDX-License-Identifier: Apache-2.0
// diffuse sample: images from a model (the shipped Fashion-MNIST DiT by default, a diffuse model
// file, a training checkpoint, a TorchScript module or safetensors weights) with any registered
// sampler, spacing, guidance scale and corrections. Writes a PNG grid whose tEXt chunk "diffuse"
// and a JSON file next to it record every setting, so `--from-record` regenerates the same bytes.
#include "cli.h"
#include "parallel.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <diffuse/all.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/image.h>
#include <diffuse/training/model_file.h>

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// Everything that determines the images (the record). Output paths are not part of it.
struct SampleSettings {
  std::string model = "default";
  std::string model_card;
  std::string sampler = "dpmpp_2m";
  std::string schedule;  // spacing spec; empty = the noise schedule's default
  int64_t steps = 20;
  double cfg = 2.0;
  std::string classes;  // "" = cycle through all classes; "3", "0,3,7", names
  std::vector<std::string> corrections;
  uint64_t seed = 0;
  int64_t num = 40;
  int64_t batch_size = 0;  // 0 = automatic: as many as fit --batch-memory
  std::string device = "cpu";
  std::string dtype = "float32";
  int64_t nrow = 0;  // 0 = number of classes when cycling, else 8
  // The intra-op threads the images were made with: matrix products round differently with
  // another thread count (docs/reliability.md), so --from-record reuses it. 0 = not recorded.
  int64_t threads = 0;
};

/// The largest --num, and the most images the grid PNG shows.
constexpr int64_t kMaxNum = 1000000;
constexpr int64_t kMaxGridImages = 1024;
/// The most threads a record may ask for (it may come from a larger machine than this one).
constexpr int64_t kMaxRecordThreads = 1024;

struct SampleOutputs {
  std::string out = "diffuse_samples.png";
  double batch_memory_mib = 1024;  // --batch-memory: the budget of --batch-size 0
  std::string record;  // default: <out without .png>.json
  std::string save_each;
  std::string save_tensor;
  std::string from_record;
  bool list = false;
};

// ----- registry listing

template <class Base>
void list_registry(std::ostream& os, const std::string& title) {
  const auto& reg = diffuse::Registry<Base>::get();
  os << title << ":\n";
  for (const std::string& n : reg.names()) {
    std::string label = n.find(' ') != std::string::npos ? "\"" + n + "\"" : n;
    if (label.size() < 34) label += std::string(34 - label.size(), ' ');
    os << "  " << label << " " << reg.summary(n) << "\n";
  }
  os << "\n";
}

void print_lists(std::ostream& os) {
  list_registry<diffuse::Sampler>(os, "Samplers (--sampler NAME[:option=value,...])");
  list_registry<diffuse::TimestepSpacing>(
      os, "Schedules / spacings (--schedule NAME[:option=value,...] or file:PATH from `diffuse ays`)");
  list_registry<diffuse::Correction>(os, "Corrections (--correction NAME[:option=value,...], repeatable)");
  list_registry<diffuse::Guidance>(os, "Guidance (--cfg SCALE uses cfg)");
  list_registry<diffuse::NoiseSchedule>(os, "Noise schedules (set by the model's card)");
}

// ----- settings <-> JSON

json to_json(const SampleSettings& s) {
  json j;
  j["diffuse_sample"] = 1;
  j["model"] = s.model;
  if (!s.model_card.empty()) j["model_card"] = s.model_card;
  j["sampler"] = s.sampler;
  j["schedule"] = s.schedule;
  j["steps"] = s.steps;
  j["cfg"] = s.cfg;
  j["classes"] = s.classes;
  j["corrections"] = s.corrections;
  j["seed"] = s.seed;
  j["num"] = s.num;
  j["batch_size"] = s.batch_size;
  j["device"] = s.device;
  j["dtype"] = s.dtype;
  j["nrow"] = s.nrow;
  j["threads"] = s.threads;
  return j;
}

SampleSettings from_json(const json& j, const std::string& path) {
  auto fail = [&](const std::string& why) { throw UsageError("record '" + path + "': " + why); };
  if (!j.is_object() || !j.contains("diffuse_sample")) fail("not a diffuse sample record");
  if (j["diffuse_sample"] != 1) fail("unsupported record version " + j["diffuse_sample"].dump());
  // Every field of this version, and nothing else: a misspelt field must not be ignored.
  json known = to_json(SampleSettings{});
  known["model_card"] = "";
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.contains(it.key())) fail("unknown field '" + printable(it.key()) + "'");
  const auto field = [&](const char* key) -> const json& {
    if (!j.contains(key)) fail(std::string("missing field '") + key + "'");
    return j.at(key);
  };
  const auto text = [&](const char* key) {
    const json& v = field(key);
    if (!v.is_string()) fail(std::string("field '") + key + "' must be a string, got " + v.dump());
    return v.get<std::string>();
  };
  const auto integer = [&](const char* key) {
    const json& v = field(key);
    if (!v.is_number_integer()) fail(std::string("field '") + key + "' must be an integer, got " + v.dump());
    return v.get<int64_t>();
  };
  SampleSettings s;
  s.model = text("model");
  if (j.contains("model_card")) s.model_card = text("model_card");
  s.sampler = text("sampler");
  s.schedule = text("schedule");
  s.steps = integer("steps");
  if (!field("cfg").is_number()) fail("field 'cfg' must be a number, got " + j["cfg"].dump());
  s.cfg = j["cfg"].get<double>();
  s.classes = text("classes");
  const json& corr = field("corrections");
  if (!corr.is_array()) fail("field 'corrections' must be a list of strings, got " + corr.dump());
  for (const json& c : corr) {
    if (!c.is_string()) fail("field 'corrections' must be a list of strings, got " + corr.dump());
    s.corrections.push_back(c.get<std::string>());
  }
  if (!field("seed").is_number_unsigned())
    fail("field 'seed' must be an integer in [0, 2^64 - 1], got " + j["seed"].dump());
  s.seed = j["seed"].get<uint64_t>();
  s.num = integer("num");
  s.batch_size = integer("batch_size");
  s.device = text("device");
  s.dtype = text("dtype");
  s.nrow = integer("nrow");
  if (j.contains("threads")) {  // records written before the field was added have none
    s.threads = integer("threads");
    if (s.threads < 0 || s.threads > kMaxRecordThreads)
      fail("field 'threads' must be in [0, " + std::to_string(kMaxRecordThreads) + "], got " +
           std::to_string(s.threads));
  }
  return s;
}

json read_record(const std::string& path) {
  require_file(path, "record");
  std::string text;
  const bool png = path.size() > 4 && path.compare(path.size() - 4, 4, ".png") == 0;
  if (png) {
    const auto chunks = diffuse::read_png_text(path);
    auto it = chunks.find("diffuse");
    require(it != chunks.end(), "PNG '" + path + "' carries no diffuse record (tEXt chunk \"diffuse\")");
    text = it->second;
  } else {
    text = read_file_text(path, "record");
  }
  json j;
  try {
    j = parse_json_strict(text);
  } catch (const std::exception& e) {
    throw UsageError("record '" + path + "' is not valid JSON: " + std::string(e.what()));
  }
  if (png || (j.is_object() && j.contains("settings"))) {
    require(j.is_object() && j.contains("settings"), "record '" + path + "' has no 'settings' object");
    return j.at("settings");
  }
  return j;
}

// ----- helpers

/// FNV-1a 64 of a file's bytes, hex: identifies the exact weights a record was made with.
std::string file_checksum(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint64_t h = 1469598103934665603ull;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof(buf));
    for (std::streamsize i = 0; i < f.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ull;
    }
  }
  char out[32];
  std::snprintf(out, sizeof(out), "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return out;
}

/// Class id per image: "" cycles through the classes, else a comma list of ids or names
/// (repeated cyclically over the images).
std::vector<int64_t> parse_classes(const std::string& text, const diffuse::ModelCard& card, int64_t num) {
  std::vector<int64_t> ids;
  if (card.num_classes == 0) {
    require(text.empty(), "--class " + text + ": the model is unconditional (num_classes=0)");
    return ids;
  }
  if (text.empty() || text == "all") {
    for (int64_t i = 0; i < num; ++i) ids.push_back(i % card.num_classes);
    return ids;
  }
  std::vector<int64_t> pattern;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = diffuse::detail::trim(item);
    require(!item.empty(), "--class '" + text + "' has an empty item");
    int64_t id = -1;
    for (size_t k = 0; k < card.class_names.size(); ++k)
      if (card.class_names[k] == item) id = static_cast<int64_t>(k);
    if (id < 0) {
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      std::string names;
      for (const auto& n : card.class_names) names += (names.empty() ? "" : ", ") + n;
      require(*end == '\0' && v >= 0 && v < card.num_classes,
              "--class '" + item + "' is not a class id in [0, " + std::to_string(card.num_classes - 1) + "]" +
                  (names.empty() ? std::string() : " or a class name (" + names + ")"));
      id = v;
    }
    pattern.push_back(id);
  }
  for (int64_t i = 0; i < num; ++i) ids.push_back(pattern[static_cast<size_t>(i) % pattern.size()]);
  return ids;
}

/// Writes a .npy (format 1.0, little-endian, C order) of a CPU tensor of float32/float64.
void save_npy(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.contiguous().cpu();
  const std::string descr = c.scalar_type() == at::kDouble ? "<f8" : "<f4";
  const at::Tensor data = c.scalar_type() == at::kDouble ? c : c.to(at::kFloat);
  std::string shape = "(";
  for (int64_t i = 0; i < data.dim(); ++i) shape += std::to_string(data.size(i)) + (data.dim() == 1 ? "," : (i + 1 < data.dim() ? ", " : ""));
  shape += ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  const uint16_t len = static_cast<uint16_t>(header.size());
  bytes += static_cast<char>(len & 0xff);
  bytes += static_cast<char>(len >> 8);
  bytes += header;
  bytes.append(static_cast<const char*>(data.data_ptr()), static_cast<size_t>(data.nbytes()));
  diffuse::write_bytes_atomic(path, bytes.data(), bytes.size());
}

std::string default_record_path(const std::string& out) {
  fs::path p(out);
  return (p.parent_path() / (p.stem().string() + ".json")).string();
}

void ensure_parent(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  require(!ec, "cannot create the folder of '" + path + "': " + ec.message());
}

// ----- the command

bool ends_with_ci(const std::string& text, const std::string& suffix) {
  if (text.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[text.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

/// The largest finite magnitude of a floating dtype (a guidance scale beyond it is +-inf there).
double dtype_max(c10::ScalarType t) {
  switch (t) {
    case c10::kHalf: return 65504.0;
    case c10::kBFloat16: return 3.3895313892515355e38;
    case c10::kFloat: return static_cast<double>(std::numeric_limits<float>::max());
    default: return std::numeric_limits<double>::max();
  }
}

int run_sample(SampleSettings s, const SampleOutputs& o, const ParallelArgs& par, CLI::App& app) {
  if (o.list) {
    print_lists(std::cout);
    return kExitOk;
  }
  RankGroup group;
  group.info = rank_from_env();
  check_parallel_args(par);
  auto given_opt = [&](const char* name) { return app.get_option(name)->count() > 0; };
  if (!o.from_record.empty()) {
    // The record's settings, then whatever was given explicitly on this command line.
    SampleSettings given = s;
    s = from_json(read_record(o.from_record), o.from_record);
    if (given_opt("--model")) s.model = given.model;
    if (given_opt("--model-card")) s.model_card = given.model_card;
    if (given_opt("--sampler")) s.sampler = given.sampler;
    if (given_opt("--schedule")) s.schedule = given.schedule;
    if (given_opt("--steps")) s.steps = given.steps;
    if (given_opt("--cfg")) s.cfg = given.cfg;
    if (given_opt("--class")) s.classes = given.classes;
    if (given_opt("--correction")) s.corrections = given.corrections;
    if (given_opt("--seed")) s.seed = given.seed;
    if (given_opt("--num")) s.num = given.num;
    if (given_opt("--batch-size")) s.batch_size = given.batch_size;
    if (given_opt("--device")) s.device = given.device;
    if (given_opt("--dtype")) s.dtype = given.dtype;
    if (given_opt("--nrow")) s.nrow = given.nrow;
    // The same bytes need the same thread count, unless --threads says otherwise.
    const bool threads_given = app.get_parent() && app.get_parent()->get_option("--threads")->count() > 0;
    if (s.threads > 0 && !threads_given && s.threads != at::get_num_threads()) {
      if (s.threads > usable_cpus())
        spdlog::warn("record '{}' was made with {} threads, more than the {} CPUs here: running {} threads to "
                     "reproduce its bytes (slower; --threads N overrides)",
                     o.from_record, s.threads, usable_cpus(), s.threads);
      at::set_num_threads(static_cast<int>(s.threads));
    }
  }
  s.threads = at::get_num_threads();
  // Each setting is named as the user gave it: the option, or the record's field.
  const auto named = [&](const char* option, const char* field) -> std::string {
    if (o.from_record.empty() || given_opt(option)) return option;
    return "record '" + o.from_record + "' field '" + field + "'";
  };
  require(s.steps >= 1 && s.steps <= 100000,
          named("--steps", "steps") + " must be in [1, 100000], got " + std::to_string(s.steps));
  require(s.num >= 1 && s.num <= kMaxNum,
          named("--num", "num") + " must be in [1, " + std::to_string(kMaxNum) + "], got " + std::to_string(s.num));
  require(s.batch_size >= 0, named("--batch-size", "batch_size") + " must be >= 0 (0 = automatic), got " +
                                 std::to_string(s.batch_size));
  require(s.nrow >= 0, named("--nrow", "nrow") + " must be >= 0, got " + std::to_string(s.nrow));
  require(std::isfinite(s.cfg), named("--cfg", "cfg") + " must be finite, got " + diffuse::format_double(s.cfg));
  require(std::isfinite(o.batch_memory_mib) && o.batch_memory_mib > 0,
          "--batch-memory must be > 0 MiB, got " + diffuse::format_double(o.batch_memory_mib));
  c10::Device device(c10::kCPU);
  c10::ScalarType dtype = c10::kFloat;
  try {
    device = parse_device(s.device);
    dtype = parse_dtype(s.dtype);
  } catch (const UsageError& e) {
    const bool dev = std::string(e.what()).find("device") != std::string::npos;
    throw UsageError(dev ? named("--device", "device") + ": " + e.what() : named("--dtype", "dtype") + ": " + e.what());
  }
  // The scale multiplies network outputs of the run's dtype: it must be finite there too.
  require(std::abs(s.cfg) <= dtype_max(dtype),
          named("--cfg", "cfg") + " " + diffuse::format_double(s.cfg) + " is not finite in " + dtype_name(dtype) +
              " (the run's dtype holds magnitudes up to " + diffuse::format_double(dtype_max(dtype)) + ")");
  // What the outputs' names promise is what is written.
  require(ends_with_ci(o.out, ".png"), "--out '" + o.out + "': the grid is written as PNG, name it *.png");
  require(o.save_tensor.empty() || ends_with_ci(o.save_tensor, ".npy") || ends_with_ci(o.save_tensor, ".pt"),
          "--save-tensor '" + o.save_tensor + "': name it *.npy (NumPy) or *.pt (torch::save)");
  require(o.record.empty() || ends_with_ci(o.record, ".json"),
          "--record '" + o.record + "': the record is JSON, name it *.json");
  // A1111 names carry the spacing ("DPM++ 2M Karras"): sampler and spacing, both recorded.
  const diffuse::SamplerSpacingSpec split = diffuse::split_sampler_spacing(s.sampler);
  if (!split.spacing.empty()) {
    if (!s.schedule.empty()) {
      std::string chosen = diffuse::detail::trim(s.schedule.substr(0, s.schedule.find(':')));
      try {
        chosen = diffuse::Registry<diffuse::TimestepSpacing>::get().resolve(chosen, {}).first;
      } catch (const diffuse::Error&) {
      }
      require(chosen == split.spacing, named("--sampler", "sampler") + " '" + s.sampler + "' selects the " +
                                           split.spacing + " spacing, but " + named("--schedule", "schedule") +
                                           " is '" + s.schedule + "'");
    } else {
      s.schedule = split.spacing;
    }
    s.sampler = split.sampler;
  }

  // Build every component before loading anything heavy: a bad name fails fast.
  std::unique_ptr<diffuse::Sampler> sampler;
  try {
    sampler = diffuse::sampler_from_spec(s.sampler);
  } catch (const diffuse::Error& e) {
    throw UsageError(named("--sampler", "sampler") + ": " + error_message(e));
  }
  std::vector<std::shared_ptr<diffuse::Correction>> corrections;
  for (const std::string& spec : s.corrections) {
    try {
      corrections.push_back(diffuse::correction_from_spec(spec));
    } catch (const diffuse::Error& e) {
      throw UsageError(named("--correction", "corrections") + " " + spec + ": " + error_message(e));
    }
  }
  std::optional<ScheduleFile> schedule_file;
  std::string spacing_text = s.schedule;
  if (s.schedule.rfind("file:", 0) == 0) {
    schedule_file = read_schedule_file(s.schedule.substr(5));
    spacing_text = spacing_spec(*schedule_file);
    require(static_cast<int64_t>(schedule_file->timesteps.size()) == s.steps ||
                app.get_option("--steps")->count() == 0,
            "--steps " + std::to_string(s.steps) + " does not match the " +
                std::to_string(schedule_file->timesteps.size()) + " steps of schedule file '" + s.schedule.substr(5) +
                "'");
    s.steps = static_cast<int64_t>(schedule_file->timesteps.size());
  }
  std::shared_ptr<diffuse::TimestepSpacing> spacing;
  if (!spacing_text.empty()) {
    try {
      spacing = diffuse::Registry<diffuse::TimestepSpacing>::get().make_from_spec(spacing_text);
    } catch (const diffuse::Error& e) {
      throw UsageError(named("--schedule", "schedule") + ": " + error_message(e));
    }
  }

  diffuse::LoadedModel model = load_cli_model(s.model, s.model_card, device, dtype);
  if (!model.precision.empty()) spdlog::info("--dtype {} on {}: {}", dtype_name(dtype), device.str(), model.precision);
  const diffuse::ModelCard& card = model.card;
  auto schedule = model.make_schedule();
  if (schedule_file) {
    require(schedule_file->noise_schedule == card.schedule,
            "schedule file '" + s.schedule.substr(5) + "' was made for noise schedule '" +
                schedule_file->noise_schedule + "' but the model uses '" + card.schedule + "'");
  }
  const std::vector<int64_t> classes = parse_classes(s.classes, card, s.num);
  const bool guided = card.num_classes > 0 && s.cfg != 1.0;
  // CADS anneals the condition *embedding*: hand a DiT its label embeddings instead of the labels.
  bool embed_labels = false;
  for (const auto& c : corrections) embed_labels = embed_labels || c->name() == "condition_annealing";
  embed_labels = embed_labels && card.num_classes > 0;
  require(!embed_labels || model.dit.has_value(),
          "--correction cads needs a model that takes its condition as an embedding (diffuse's DiT); this " +
              model.format + " model takes class labels");
  const int64_t nrow = s.nrow > 0 ? s.nrow : (card.num_classes > 0 && s.classes.empty() ? card.num_classes : 8);
  // --nproc N (after every check, so that bad arguments fail once, here): the same command as N
  // ranks, each sampling its share of the images; rank 0 writes the outputs.
  if (const auto rc = launch_if_requested(par, "sample")) return *rc;
  join_group(group, par);
  const int rank = group.info.rank, world = group.info.world_size;
  if (world > 1 && s.batch_size == 0) {
    // One batch per rank; recorded, so that one process with the record makes the same bytes.
    s.batch_size = (s.num + world - 1) / world;
  }
  // --batch-size 0: as many images per network call as the memory budget allows (the estimate
  // depends only on the model, dtype and settings, so a record reproduces the same batches).
  // The record then holds the batch size it chose (batch composition can change the rounding).
  if (s.batch_size == 0)
    s.batch_size = diffuse::auto_batch_size(model, dtype, s.num, guided, o.batch_memory_mib * 1024.0 * 1024.0);
  const int64_t chunk = s.batch_size;

  diffuse::Denoiser denoiser(model.network, model.denoiser_options());
  diffuse::SampleOptions so;
  so.num_steps = s.steps;
  so.spacing = spacing;
  so.corrections = corrections;
  if (guided) so.guidance = diffuse::make_guidance("cfg", {{"scale", diffuse::format_double(s.cfg)}});
  const diffuse::TimeGrid grid = diffuse::make_grid(*schedule, so);

  const std::string model_path = model.source == "default" ? diffuse::default_model_path() : model.source;
  spdlog::info("{} {} ({} classes, {}, {} schedule) | {} {} steps{}{} | {} images in batches of {}, seed {} | {} on "
               "{}, {} thread(s)",
               model.format, model_path, card.num_classes, card.prediction_type, schedule->name(), s.sampler, s.steps,
               spacing ? " (" + spacing->name() + ")" : std::string(),
               guided ? ", cfg " + diffuse::format_double(s.cfg) : std::string(), s.num, chunk,
               s.seed, dtype_name(dtype), device.str(), at::get_num_threads());
  spdlog::debug("sampler {} | spacing {} | grid t {} .. {}", canonical_spec(*sampler),
                spacing ? canonical_spec(*spacing) : std::string("default"), grid.front().t, grid.back().t);

  std::vector<int64_t> shape = {0};
  shape.insert(shape.end(), card.sample_shape.begin(), card.sample_shape.end());
  const auto topt = at::TensorOptions().dtype(dtype).device(device);
  const auto mine = diffuse::shard_items(s.num, chunk, rank, world);
  Progress bar("sampling", (mine.second - mine.first + chunk - 1) / chunk * s.steps, "steps");
  int64_t done_steps = 0;
  // Sample i uses seed + i, whatever the chunking; with several ranks each samples a block of the
  // chunks one process would use (so the images are bit-identical) and rank 0 gathers them.
  const auto make_chunk = [&](int64_t start, int64_t m) {
    at::NoGradGuard no_grad;
    shape[0] = m;
    diffuse::SampleOptions co = so;
    co.seed = s.seed + static_cast<uint64_t>(start);
    if (card.num_classes > 0) {
      co.cond.value = at::tensor(std::vector<int64_t>(classes.begin() + start, classes.begin() + start + m),
                                 at::TensorOptions(at::kLong))
                          .to(device);
      if (guided) co.uncond.value = at::full({m}, card.num_classes, at::TensorOptions(at::kLong).device(device));
      if (embed_labels) {
        diffuse::DiT& dit = *model.dit;
        co.cond.value = dit->label_embedding(co.cond.value, m, device);
        if (guided) co.uncond.value = dit->label_embedding(co.uncond.value, m, device);
      }
    }
    co.on_step = [&](const diffuse::StepInfo&) { bar.update(++done_steps); };
    at::Tensor noise = diffuse::randn(shape, co.seed, topt);
    return diffuse::sample(*sampler, denoiser, *schedule, noise, co).cpu();
  };
  const std::vector<int64_t> item_shape(card.sample_shape.begin(), card.sample_shape.end());
  at::Tensor images =
      diffuse::sample_sharded(s.num, chunk, rank, world, item_shape, at::kFloat, make_chunk, group.all_gather());
  bar.finish();
  if (rank != 0) return kExitOk;  // rank 0 writes the outputs
  require(at::isfinite(images).all().item<bool>(), "sampling produced NaN/Inf values");

  // The record: settings (regenerable) + what they resolved to (for reading).
  json record;
  record["settings"] = to_json(s);
  json resolved;
  resolved["diffuse_version"] = DIFFUSE_VERSION_STRING;
  resolved["model_format"] = model.format;
  resolved["model_checksum"] = file_checksum(model_path);
  resolved["model_card"] = diffuse::model_card_text(card);
  resolved["sampler"] = canonical_spec(*sampler);
  resolved["spacing"] = spacing ? canonical_spec(*spacing) : std::string("default");
  std::vector<double> times;
  for (const auto& p : grid) times.push_back(p.t);
  resolved["grid_t"] = times;
  std::vector<std::string> corr;
  for (const auto& c : corrections) corr.push_back(canonical_spec(*c));
  resolved["corrections"] = corr;
  resolved["guidance"] = guided ? canonical_spec(*so.guidance) : std::string("none");
  resolved["class_ids"] = classes;
  record["resolved"] = resolved;
  const std::string record_text = record.dump(2) + "\n";

  // The grid shows at most kMaxGridImages images (a million would make a 30,000-pixel-wide PNG);
  // --save-each and --save-tensor keep all of them.
  const int64_t shown = std::min(s.num, kMaxGridImages);
  if (shown < s.num)
    spdlog::warn("the grid shows the first {} of the {} images; --save-each DIR or --save-tensor FILE keeps all",
                 shown, s.num);
  ensure_parent(o.out);
  diffuse::save_png(o.out, diffuse::make_image_grid(images.narrow(0, 0, shown).clamp(-1, 1), nrow),
                    {{"diffuse", record.dump()}});
  const std::string record_path = o.record.empty() ? default_record_path(o.out) : o.record;
  ensure_parent(record_path);
  diffuse::write_text_file_atomic(record_path, record_text);
  if (!o.save_each.empty()) {
    std::error_code ec;
    fs::create_directories(o.save_each, ec);
    require(!ec, "cannot create --save-each folder '" + o.save_each + "': " + ec.message());
    for (int64_t i = 0; i < images.size(0); ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "%06lld.png", static_cast<long long>(i));
      diffuse::save_png((fs::path(o.save_each) / name).string(), images[i].clamp(-1, 1),
                        {{"diffuse", record.dump()}, {"diffuse_index", std::to_string(i)}});
    }
  }
  if (!o.save_tensor.empty()) {
    ensure_parent(o.save_tensor);
    if (ends_with_ci(o.save_tensor, ".npy")) {
      save_npy(o.save_tensor, images);
    } else {
      diffuse::write_file_atomic(o.save_tensor, [&](std::ostream& os) { torch::save(images, os); });
    }
  }
  const int64_t cols = diffuse::image_grid_columns(shown, nrow);
  spdlog::info("wrote {} ({} image{} in {} row{} of {}) and {}{}{}", o.out, shown, shown == 1 ? "" : "s",
               (shown + cols - 1) / cols, (shown + cols - 1) / cols == 1 ? "" : "s", cols, record_path,
               o.save_each.empty() ? "" : ", " + o.save_each + "/", o.save_tensor.empty() ? "" : ", " + o.save_tensor);
  return kExitOk;
}

std::function<int()> setup_sample(CLI::App& app) {
  auto s = std::make_shared<SampleSettings>();
  auto o = std::make_shared<SampleOutputs>();
  app.footer(R"(Examples:
  diffuse sample                                     # 40 Fashion-MNIST images from the shipped model
  diffuse sample --sampler euler_a --schedule karras --steps 30 --cfg 3 -o euler.png
  diffuse sample --class Sneaker,Bag -n 16 --correction epsilon_scaling:b=1.005
  diffuse sample --schedule file:ays.json            # a schedule written by `diffuse ays`
  diffuse sample --model run/model.pt --save-each frames/ --save-tensor x.npy
  diffuse sample --model exported.pt --model-card "sample_shape=1x28x28,num_classes=10"
  diffuse sample --from-record diffuse_samples.png -o again.png   # the same image again
  diffuse sample --list                              # every sampler, schedule, correction)");
  app.add_option("-m,--model", s->model,
                 "Model: 'default' (the shipped Fashion-MNIST DiT), a diffuse model file, a training checkpoint, a "
                 "TorchScript module or .safetensors weights")
      ->capture_default_str();
  app.add_option("--model-card", s->model_card,
                 "Card for a model file without one (TorchScript, safetensors): "
                 "\"sample_shape=1x28x28,num_classes=10,schedule=discrete,prediction_type=epsilon\"");
  app.add_option("-s,--sampler", s->sampler, "Sampler NAME[:option=value,...] (see --list)")->capture_default_str();
  app.add_option("--schedule", s->schedule,
                 "Time spacing NAME[:option=value,...] (karras, ays, trailing, ...) or file:PATH; default: the "
                 "model's");
  app.add_option("--steps", s->steps, "Solver steps")->capture_default_str();
  app.add_option("--cfg", s->cfg, "Classifier-free guidance scale (1 = off; conditional models)")
      ->capture_default_str();
  app.add_option("--class", s->classes, "Class ids or names, comma-separated (default: every class in turn)");
  app.add_option("-c,--correction", s->corrections, "Correction NAME[:option=value,...]; repeat for several");
  app.add_option("--seed", s->seed, "Seed in [0, 2^64 - 1]; image i uses seed + i")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) {
            const std::string t = diffuse::detail::trim(v);
            if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos)
              return std::string("the seed must be an integer in [0, 18446744073709551615], got '") + v + "'";
            return std::string();
          },
          "UINT64", "seed"));
  app.add_option("-n,--num", s->num, "Number of images (at most 1,000,000; the grid shows the first 1,024)")
      ->capture_default_str();
  app.add_option("--batch-size", s->batch_size,
                 "Images per network batch (0 = automatic: as many as fit --batch-memory)")
      ->capture_default_str();
  app.add_option("--batch-memory", o->batch_memory_mib,
                 "Memory budget in MiB of one batch's network call when --batch-size is 0 (an estimate from the "
                 "model's card; the images themselves take num x their size on top)")
      ->capture_default_str();
  app.add_option("--device", s->device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", s->dtype, "float32, float64, float16, bfloat16")->capture_default_str();
  app.add_option("--nrow", s->nrow, "Images per grid row (0 = number of classes, or 8)")->capture_default_str();
  app.add_option("-o,--out", o->out, "PNG grid to write, *.png (the settings go into its tEXt chunk \"diffuse\")")
      ->capture_default_str();
  app.add_option("--record", o->record, "Settings record JSON (default: the --out path with .json)");
  app.add_option("--save-each", o->save_each, "Also write each image as DIR/000000.png, ...");
  app.add_option("--save-tensor", o->save_tensor, "Also write the images as a tensor: *.npy or *.pt (torch::save)");
  app.add_option("--from-record", o->from_record,
                 "Take the settings from a record (.json or a PNG written by diffuse sample); options given "
                 "explicitly override it");
  app.add_flag("--list", o->list, "List the samplers, schedules, corrections and guidance, then exit");
  auto par = std::make_shared<ParallelArgs>();
  add_parallel_options(app, *par);
  return [s, o, par, &app] { return run_sample(*s, *o, *par, app); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(sample, "sample", "Generate images with any sampler, schedule, guidance and corrections",
                    setup_sample);

}  // namespace diffuse::cli
