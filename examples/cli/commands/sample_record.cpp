// SPDX-License-Identifier: Apache-2.0
// diffuse sample: the record of a run. Its "settings" regenerate the images (`--from-record` reads
// them back from the JSON file or the PNG's tEXt chunk "diffuse"); its "resolved" part says what
// they resolved to (the canonical specs, the model's checksum, the time grid, the class ids).
#include "commands/sample.h"

#include "cli.h"

#include <cstdio>

#include <diffuse/all.h>
#include <diffuse/detail/xxh64.h>
#include <diffuse/training/image.h>
#include <diffuse/version.h>

namespace diffuse::cli::sample_command {

using nlohmann::json;

json to_json(const SampleSettings& s) {
  json j;
  j["diffuse_sample"] = 1;
  j["model"] = s.model;
  if (!s.model_card.empty()) j["model_card"] = s.model_card;
  j["sampler"] = s.sampler;
  j["schedule"] = s.schedule;
  j["steps"] = s.steps;
  j["cfg"] = s.cfg;
  j["guidance"] = s.guidance;
  j["init_image"] = s.init_image;
  j["strength"] = s.strength;
  j["mask"] = s.mask;
  j["resample_jump"] = s.resample_jump;
  j["resample_times"] = s.resample_times;
  j["step_cache"] = s.step_cache;
  j["vae"] = s.vae;
  j["vae_tile"] = s.vae_tile;
  j["vae_preset"] = s.vae_preset;
  j["classes"] = s.classes;
  j["corrections"] = s.corrections;
  j["seed"] = s.seed;
  j["noise"] = s.noise;
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
    if (!v.is_number_integer())
      fail(std::string("field '") + key + "' must be an integer, got " + v.dump());
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
  if (j.contains("guidance")) s.guidance = text("guidance");  // older records: cfg
  // Older records have no img2img fields.
  if (j.contains("init_image")) s.init_image = text("init_image");
  if (j.contains("mask")) s.mask = text("mask");
  if (j.contains("strength")) {
    if (!j["strength"].is_number())
      fail("field 'strength' must be a number, got " + j["strength"].dump());
    s.strength = j["strength"].get<double>();
  }
  // Older records have no resampling fields.
  for (const char* key : {"resample_jump", "resample_times"}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_number_integer())
      fail(std::string("field '") + key + "' must be an integer, got " + j[key].dump());
    (std::string(key) == "resample_jump" ? s.resample_jump : s.resample_times) =
        j[key].get<int64_t>();
  }
  // Older records have no step_cache (off).
  if (j.contains("step_cache")) {
    if (!j["step_cache"].is_number())
      fail("field 'step_cache' must be a number, got " + j["step_cache"].dump());
    s.step_cache = j["step_cache"].get<double>();
  }
  // Older records have no VAE fields (pixel-space models).
  if (j.contains("vae")) s.vae = text("vae");
  if (j.contains("vae_preset")) s.vae_preset = text("vae_preset");
  if (j.contains("vae_tile")) {
    if (!j["vae_tile"].is_number_integer())
      fail("field 'vae_tile' must be an integer, got " + j["vae_tile"].dump());
    s.vae_tile = j["vae_tile"].get<int64_t>();
  }
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
  // Older records have no noise field: their stream restarted the generators for the steps.
  s.noise = j.contains("noise") ? text("noise") : std::string(kRestartNoise);
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
    require(it != chunks.end(),
            "PNG '" + path + "' carries no diffuse record (tEXt chunk \"diffuse\")");
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
    require(j.is_object() && j.contains("settings"),
            "record '" + path + "' has no 'settings' object");
    // Another BLAS core rounds the network's matrix products differently: same settings, other
    // bytes. Said, not refused.
    const std::string here = blas_kernels();
    if (j.contains("resolved") && j["resolved"].is_object() && j["resolved"].contains("blas") &&
        j["resolved"]["blas"].is_string() && j["resolved"]["blas"] != here) {
      const std::string there = j["resolved"]["blas"].get<std::string>();
      const auto space = there.rfind(' ');
      spdlog::warn(
          "record '{}' was made with {} kernels, this run uses {}: matrix products round "
          "differently, so the images may differ in the last bits{}",
          path, printable(there), here.empty() ? std::string("another BLAS") : here,
          there.rfind("OpenBLAS ", 0) == 0 && space != std::string::npos
              ? " (OPENBLAS_CORETYPE=" + printable(there.substr(space + 1)) + " reproduces them)"
              : std::string());
    }
    return j.at("settings");
  }
  return j;
}

namespace {

/// XXH64 of a file's bytes, hex: identifies the exact weights a record was made with (13 ms of
/// hashing for a 132 MB DiT-S/2 here, where FNV-1a byte by byte took 0.19 s). A file gone since
/// the model was loaded is said so in the record rather than losing the images.
std::string file_checksum(const std::string& path) {
  try {
    char out[32];
    std::snprintf(out, sizeof(out), "xxh64:%016llx",
                  static_cast<unsigned long long>(diffuse::detail::xxh64_file(path)));
    return out;
  } catch (const diffuse::Error& e) {
    return std::string("unavailable: ") + e.what();
  }
}

}  // namespace

json make_record(const SampleSettings& s, const ResolvedRun& r) {
  json record;
  record["settings"] = to_json(s);
  json resolved;
  resolved["diffuse_version"] = DIFFUSE_VERSION_STRING;
  const std::string blas = blas_kernels();
  if (!blas.empty()) resolved["blas"] = blas;
  resolved["model_format"] = r.model->format;
  resolved["model_checksum"] = file_checksum(r.model_path);
  resolved["model_card"] = diffuse::model_card_text(r.model->card);
  resolved["sampler"] = canonical_spec(*r.sampler);
  resolved["spacing"] = r.spacing ? canonical_spec(*r.spacing) : std::string("default");
  resolved["grid_t"] = r.grid_t;
  std::vector<std::string> corr;
  for (const auto& c : *r.corrections) corr.push_back(canonical_spec(*c));
  resolved["corrections"] = corr;
  resolved["guidance"] = r.guidance ? canonical_spec(*r.guidance) : std::string("none");
  resolved["class_ids"] = *r.class_ids;
  record["resolved"] = resolved;
  return record;
}

}  // namespace diffuse::cli::sample_command
