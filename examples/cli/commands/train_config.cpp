// SPDX-License-Identifier: Apache-2.0
// diffuse train: the config keys and the resolution of a run's config (defaults < config file <
// --set < per-key options), each value checked against its key's type and range.
#include "commands/train.h"

#include "cli.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <diffuse/config.h>

namespace diffuse::cli::train_command {

namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<KeySpec>& config_keys() {
  const double inf = std::numeric_limits<double>::infinity();
  static const std::vector<KeySpec> keys = {
      {"objective", KeyType::kString, "denoising", -inf, inf,
       "Objective spec: denoising, ddpm_ip, denoising:prediction_type=v_prediction, "
       "maskdit:mask_ratio=0.5, ..."},
      {"preset", KeyType::kString, "tiny", -inf, inf, "DiT size: tiny, mini, S/2, B/2, ..."},
      {"patch", KeyType::kInt, 4, 1, 28, "Patch size (28 must be divisible by it)"},
      {"decoder_depth", KeyType::kInt, -1, -1, 64,
       "MaskDiT decoder blocks (-1: 2 for masked objectives, else 0)"},
      {"decoder_width", KeyType::kInt, 0, 0, 65536, "MaskDiT decoder width (0 = the encoder's)"},
      {"schedule", KeyType::kString, "auto", -inf, inf,
       "Noise schedule: a registry spec (discrete, flow:shift=3, ...) or auto (flow for a "
       "flow_prediction objective, else discrete)"},
      {"steps", KeyType::kInt, 1000000, 1, 1e12,
       "Total optimiser steps of the run (a resumed run continues to it)"},
      {"minutes", KeyType::kDouble, 20.0, 0, inf,
       "Wall-clock budget of this invocation (0 = none)"},
      {"batch_size", KeyType::kInt, 64, 1, 1e9, "Examples per optimiser step"},
      {"grad_accum", KeyType::kInt, 1, 1, 1e9, "Micro-batches per step (must divide batch_size)"},
      {"lr", KeyType::kDouble, 3e-4, 0, inf, "Peak AdamW learning rate (> 0)",
       /*min_exclusive=*/true},
      {"warmup", KeyType::kInt, 200, 0, 1e12, "Linear warm-up steps"},
      {"grad_clip", KeyType::kDouble, 1.0, 0, inf, "Max gradient norm (0 = off)"},
      {"ema_decay", KeyType::kDouble, 0.9999, 0, 1, "EMA decay (with warm-up)"},
      {"label_dropout", KeyType::kDouble, 0.1, 0, 1,
       "Label dropout probability (classifier-free guidance)"},
      {"unconditional", KeyType::kBool, false, -inf, inf,
       "Ignore the labels (an unconditional model)"},
      {"init_from", KeyType::kString, "", -inf, inf,
       "A new run starts from the model + EMA weights of this checkpoint (ignored when resuming)"},
      {"device", KeyType::kString, "cpu", -inf, inf, "Device of the model: cpu, cuda, cuda:N"},
      {"autocast", KeyType::kString, "off", -inf, inf,
       "Mixed precision of the forward pass: off, bf16 (CPU or CUDA), fp16 (CUDA, dynamic loss "
       "scaling)"},
      {"seed", KeyType::kInt, 0, 0, 9.007199254740992e15, "Seed of everything"},
      {"sample_every", KeyType::kInt, 1000, 0, 1e12, "Preview grid every N steps (0 = none)"},
      {"checkpoint_every", KeyType::kInt, 500, 0, 1e12,
       "Checkpoint every N steps (0 = only at the end)"},
      {"keep_checkpoints", KeyType::kInt, 3, 0, 1e9, "Keep the newest K checkpoints (0 = all)"},
      {"log_every", KeyType::kInt, 50, 1, 1e12, "Log line and loss.csv row every N steps"},
      {"sampler", KeyType::kString, "dpm_solver_pp", -inf, inf,
       "Sampler spec of previews, samples and eval"},
      {"sample_steps", KeyType::kInt, 20, 1, 100000, "Sampler steps"},
      {"cfg_scale", KeyType::kDouble, 2.0, -inf, inf,
       "Classifier-free guidance scale of samples (1 = off)"},
      {"limit", KeyType::kInt, -1, -1, 1e9,
       "Use only the first N training images (-1 = all 60000)"},
      {"latents", KeyType::kString, "", -inf, inf,
       "Train on the latent shards of this folder (`diffuse encode`) instead of Fashion-MNIST "
       "pixels"},
      {"vae", KeyType::kString, "", -inf, inf,
       "With latents: the VAE that decodes previews, samples and eval (default: the path the "
       "shards record)"},
      {"data_dir", KeyType::kString, "", -inf, inf,
       "Fashion-MNIST folder (default: $DIFFUSE_FASHION_MNIST_DIR or "
       "/usr/share/datasets/fashion-mnist)"},
      {"eval", KeyType::kInt, 0, 0, 1e7,
       "After training: FD / precision / recall of N EMA samples vs the test set (0 = off, else >= "
       "4)"},
  };
  return keys;
}

namespace {

const KeySpec* find_key(const std::string& name) {
  for (const KeySpec& k : config_keys())
    if (name == k.name) return &k;
  return nullptr;
}

std::string key_list() {
  std::string s;
  for (const KeySpec& k : config_keys()) s += (s.empty() ? "" : ", ") + std::string(k.name);
  return s;
}

std::string type_name(KeyType t) {
  switch (t) {
    case KeyType::kInt:
      return "an integer";
    case KeyType::kDouble:
      return "a number";
    case KeyType::kString:
      return "a string";
    case KeyType::kBool:
      return "true or false";
  }
  return "?";
}

/// The range of a numeric key in words: "a finite number >= 0", "an integer in [1, 28]", ...
std::string range_text(const KeySpec& k) {
  using diffuse::format_double;
  std::string s = k.type == KeyType::kInt ? "an integer" : "a finite number";
  const bool low = std::isfinite(k.min), high = std::isfinite(k.max);
  if (low && high) {
    s += std::string(" in ") + (k.min_exclusive ? "(" : "[") + format_double(k.min) + ", " +
         format_double(k.max) + "]";
  } else if (low) {
    s += (k.min_exclusive ? " > " : " >= ") + format_double(k.min);
  } else if (high) {
    s += " <= " + format_double(k.max);
  }
  return s;
}

/// Stores value under key after checking the key and the value's type and range; `origin` names
/// where it came from in errors ("config file 'x.json'", "--set"), `written` the value as the user
/// wrote it (default: value.dump()).
void set_key(json& cfg, const std::string& key, json value, const std::string& origin,
             const std::string& written = "") {
  const KeySpec* k = find_key(key);
  require(k != nullptr,
          origin + ": unknown config key '" + key + "' (known keys: " + key_list() + ")");
  bool ok = false;
  switch (k->type) {
    case KeyType::kInt:
      ok = value.is_number_integer();
      break;
    case KeyType::kDouble:
      ok = value.is_number();
      break;
    case KeyType::kString:
      ok = value.is_string();
      break;
    case KeyType::kBool:
      ok = value.is_boolean();
      break;
  }
  require(ok, origin + ": config key '" + key + "' must be " + type_name(k->type) + ", got " +
                  value.dump());
  if (k->type == KeyType::kInt || k->type == KeyType::kDouble) {
    const double v = value.get<double>();
    require(std::isfinite(v) && v >= k->min && v <= k->max && !(k->min_exclusive && v == k->min),
            origin + ": config key '" + key + "' = " + (written.empty() ? value.dump() : written) +
                " must be " + range_text(*k));
    if (k->type == KeyType::kDouble) value = v;
  }
  cfg[key] = value;
}

/// The JSON value of a command-line text for `key` (typed by the key's table entry).
json parse_cli_value(const std::string& key, const std::string& text, const std::string& origin) {
  const KeySpec* k = find_key(key);
  require(k != nullptr,
          origin + ": unknown config key '" + key + "' (known keys: " + key_list() + ")");
  const std::string t = trim(text);
  auto bad = [&] {
    throw UsageError(origin + ": config key '" + key + "' must be " + type_name(k->type) +
                     ", got '" + text + "'");
  };
  switch (k->type) {
    case KeyType::kInt: {
      char* end = nullptr;
      errno = 0;
      const long long v = std::strtoll(t.c_str(), &end, 10);
      if (t.empty() || *end != '\0' || errno != 0) bad();
      return json(static_cast<int64_t>(v));
    }
    case KeyType::kDouble: {
      char* end = nullptr;
      const double v = std::strtod(t.c_str(), &end);
      if (t.empty() || *end != '\0') bad();
      return json(v);
    }
    case KeyType::kBool:
      if (t == "true" || t == "1" || t == "yes" || t == "on") return json(true);
      if (t == "false" || t == "0" || t == "no" || t == "off") return json(false);
      bad();
      break;
    case KeyType::kString:
      return json(text);
  }
  return json();
}

json read_config_file(const std::string& path) {
  require_file(path, "config file");
  json j;
  try {
    // nlohmann::json would keep the last of duplicate keys silently: parse_json_strict refuses
    // them.
    j = parse_json_strict(read_file_text(path, "config file"), /*allow_comments=*/true);
  } catch (const std::exception& e) {
    throw UsageError("config file '" + path + "' is not valid JSON: " + std::string(e.what()));
  }
  require(j.is_object(),
          "config file '" + path + "' must hold a JSON object {\"key\": value, ...}");
  return j;
}

}  // namespace

std::string option_name(const KeySpec& k) {
  std::string flag = std::string("--") + k.name;
  for (char& ch : flag)
    if (ch == '_') ch = '-';
  return flag;
}

json resolve_config(const TrainArgs& a, const CLI::App& app, const std::string& saved_config,
                    std::string& base) {
  json cfg = json::object();
  for (const KeySpec& k : config_keys()) cfg[k.name] = k.default_value;
  base.clear();
  std::error_code ec;
  if (!a.config.empty()) {
    base = a.config;
  } else if (fs::exists(saved_config, ec)) {
    base = saved_config;
  }
  if (!base.empty()) {
    const json file = read_config_file(base);
    for (auto it = file.begin(); it != file.end(); ++it)
      set_key(cfg, it.key(), it.value(), "config file '" + base + "'");
  }
  for (const std::string& s : a.sets) {
    const auto eq = s.find('=');
    require(eq != std::string::npos && eq > 0, "--set '" + s + "': expected key=value");
    const std::string key = trim(s.substr(0, eq));
    const std::string text = s.substr(eq + 1);
    set_key(cfg, key, parse_cli_value(key, text, "--set " + key), "--set " + key, trim(text));
  }
  for (const KeySpec& k : config_keys()) {
    const std::string flag = option_name(k);
    if (app.get_option(flag)->count() == 0) continue;
    const std::string& text = a.flags.at(k.name);
    set_key(cfg, k.name, parse_cli_value(k.name, text, flag), flag, trim(text));
  }
  return cfg;
}

std::string footer() {
  std::string keys;
  for (const KeySpec& k : config_keys()) {
    std::string name = k.name;
    if (name.size() < 17) name += std::string(17 - name.size(), ' ');
    keys += "  " + name + " " + k.help + " (default " + k.default_value.dump() + ")\n";
  }
  return R"(Config file (JSON, one object; unknown keys are errors; // comments allowed):
  {"objective": "maskdit:mask_ratio=0.5", "preset": "tiny", "patch": 4, "minutes": 20,
   "batch_size": 64, "lr": 3e-4, "eval": 1000}
Precedence: defaults < the config file (--config; without it the run folder's saved config.json)
< --set key=value < the per-key options (--batch-size 32). The resolved config is written to
OUT/config.json before training, so `diffuse train --out OUT` alone continues a run.

Keys:
)" + keys +
         R"(
The run folder (--out): checkpoints/ (the newest one is resumed automatically; a folder trained with
an incompatible config is refused), config.json, loss.csv, loss.png, samples_<step>.png,
samples_final.png, model.pt (EMA weights + card: use it with `diffuse sample --model OUT/model.pt`),
eval.csv (with eval > 0). Ctrl-C or SIGTERM finishes the step in progress, checkpoints it and exits
with 130 (SIGINT) or 143 (SIGTERM); a second signal exits at once. A corrupt newest checkpoint is
kept as <name>.corrupt and the newest intact one resumed, with a warning.

Examples:
  diffuse train --config tiny.json --out runs/tiny
  diffuse train --out runs/tiny --minutes 10             # continue it for 10 more minutes
  diffuse train --out runs/mask --set objective=maskdit:mask_ratio=0.5 --set minutes=20 --set eval=1000
  diffuse train --out runs/quick --steps 200 --limit 2000 --sample-every 0
  diffuse train --config tiny.json --print-config        # the resolved config, nothing trained)";
}

}  // namespace diffuse::cli::train_command
