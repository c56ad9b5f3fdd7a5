// SPDX-License-Identifier: Apache-2.0
// diffuse train: trains a small DiT on Fashion-MNIST with any registered objective, driven by a JSON
// config file with command-line overrides. The run folder (--out) documents the run (config.json),
// holds its checkpoints (a second invocation resumes from the newest one automatically), the loss
// curve, a sample grid, the final model file (EMA weights + card) and, with `eval`, an eval.csv.
#include "cli.h"
#include "parallel.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>

#include <diffuse/training.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/data.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/evaluation.h>
#include <diffuse/training/image.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/progress.h>
#include <diffuse/training/stop_signal.h>
#include <diffuse/training/trainer.h>

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ----- the config keys (one table: defaults, types, ranges, help; used for the file, --set, the
// per-key options, validation and the documentation)

enum class KeyType { kInt, kDouble, kString, kBool };

struct KeySpec {
  const char* name;
  KeyType type;
  json default_value;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  const char* help = "";
  bool min_exclusive = false;  ///< values must be > min (the trainer's own check, e.g. lr > 0)
};

constexpr int64_t kImageSize = 28;  // Fashion-MNIST

const std::vector<KeySpec>& config_keys() {
  const double inf = std::numeric_limits<double>::infinity();
  static const std::vector<KeySpec> keys = {
      {"objective", KeyType::kString, "denoising", -inf, inf,
       "Objective spec: denoising, ddpm_ip, denoising:prediction_type=v_prediction, maskdit:mask_ratio=0.5, ..."},
      {"preset", KeyType::kString, "tiny", -inf, inf, "DiT size: tiny, mini, S/2, B/2, ..."},
      {"patch", KeyType::kInt, 4, 1, 28, "Patch size (28 must be divisible by it)"},
      {"decoder_depth", KeyType::kInt, -1, -1, 64, "MaskDiT decoder blocks (-1: 2 for masked objectives, else 0)"},
      {"decoder_width", KeyType::kInt, 0, 0, 65536, "MaskDiT decoder width (0 = the encoder's)"},
      {"schedule", KeyType::kString, "discrete", -inf, inf, "Noise schedule registry key"},
      {"steps", KeyType::kInt, 1000000, 1, 1e12, "Total optimiser steps of the run (a resumed run continues to it)"},
      {"minutes", KeyType::kDouble, 20.0, 0, inf, "Wall-clock budget of this invocation (0 = none)"},
      {"batch_size", KeyType::kInt, 64, 1, 1e9, "Examples per optimiser step"},
      {"grad_accum", KeyType::kInt, 1, 1, 1e9, "Micro-batches per step (must divide batch_size)"},
      {"lr", KeyType::kDouble, 3e-4, 0, inf, "Peak AdamW learning rate (> 0)", /*min_exclusive=*/true},
      {"warmup", KeyType::kInt, 200, 0, 1e12, "Linear warm-up steps"},
      {"grad_clip", KeyType::kDouble, 1.0, 0, inf, "Max gradient norm (0 = off)"},
      {"ema_decay", KeyType::kDouble, 0.9999, 0, 1, "EMA decay (with warm-up)"},
      {"label_dropout", KeyType::kDouble, 0.1, 0, 1, "Label dropout probability (classifier-free guidance)"},
      {"unconditional", KeyType::kBool, false, -inf, inf, "Ignore the labels (an unconditional model)"},
      {"init_from", KeyType::kString, "", -inf, inf,
       "A new run starts from the model + EMA weights of this checkpoint (ignored when resuming)"},
      {"device", KeyType::kString, "cpu", -inf, inf, "Device of the model: cpu, cuda, cuda:N"},
      {"autocast", KeyType::kString, "off", -inf, inf,
       "Mixed precision of the forward pass: off, bf16 (CPU or CUDA), fp16 (CUDA, dynamic loss scaling)"},
      {"seed", KeyType::kInt, 0, 0, 9.007199254740992e15, "Seed of everything"},
      {"sample_every", KeyType::kInt, 1000, 0, 1e12, "Preview grid every N steps (0 = none)"},
      {"checkpoint_every", KeyType::kInt, 500, 0, 1e12, "Checkpoint every N steps (0 = only at the end)"},
      {"keep_checkpoints", KeyType::kInt, 3, 0, 1e9, "Keep the newest K checkpoints (0 = all)"},
      {"log_every", KeyType::kInt, 50, 1, 1e12, "Log line and loss.csv row every N steps"},
      {"sampler", KeyType::kString, "dpm_solver_pp", -inf, inf, "Sampler spec of previews, samples and eval"},
      {"sample_steps", KeyType::kInt, 20, 1, 100000, "Sampler steps"},
      {"cfg_scale", KeyType::kDouble, 2.0, -inf, inf, "Classifier-free guidance scale of samples (1 = off)"},
      {"limit", KeyType::kInt, -1, -1, 1e9, "Use only the first N training images (-1 = all 60000)"},
      {"data_dir", KeyType::kString, "", -inf, inf,
       "Fashion-MNIST folder (default: $DIFFUSE_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist)"},
      {"eval", KeyType::kInt, 0, 0, 1e7,
       "After training: FD / precision / recall of N EMA samples vs the test set (0 = off, else >= 4)"},
  };
  return keys;
}

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
    case KeyType::kInt: return "an integer";
    case KeyType::kDouble: return "a number";
    case KeyType::kString: return "a string";
    case KeyType::kBool: return "true or false";
  }
  return "?";
}

/// The range of a numeric key in words: "a finite number >= 0", "an integer in [1, 28]", ...
std::string range_text(const KeySpec& k) {
  using diffuse::format_double;
  std::string s = k.type == KeyType::kInt ? "an integer" : "a finite number";
  const bool low = std::isfinite(k.min), high = std::isfinite(k.max);
  if (low && high) {
    s += std::string(" in ") + (k.min_exclusive ? "(" : "[") + format_double(k.min) + ", " + format_double(k.max) + "]";
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
  require(k != nullptr, origin + ": unknown config key '" + key + "' (known keys: " + key_list() + ")");
  bool ok = false;
  switch (k->type) {
    case KeyType::kInt: ok = value.is_number_integer(); break;
    case KeyType::kDouble: ok = value.is_number(); break;
    case KeyType::kString: ok = value.is_string(); break;
    case KeyType::kBool: ok = value.is_boolean(); break;
  }
  require(ok, origin + ": config key '" + key + "' must be " + type_name(k->type) + ", got " + value.dump());
  if (k->type == KeyType::kInt || k->type == KeyType::kDouble) {
    const double v = value.get<double>();
    require(std::isfinite(v) && v >= k->min && v <= k->max && !(k->min_exclusive && v == k->min),
            origin + ": config key '" + key + "' = " + (written.empty() ? value.dump() : written) + " must be " +
                range_text(*k));
    if (k->type == KeyType::kDouble) value = v;
  }
  cfg[key] = value;
}

/// The JSON value of a command-line text for `key` (typed by the key's table entry).
json parse_cli_value(const std::string& key, const std::string& text, const std::string& origin) {
  const KeySpec* k = find_key(key);
  require(k != nullptr, origin + ": unknown config key '" + key + "' (known keys: " + key_list() + ")");
  const std::string t = diffuse::detail::trim(text);
  auto bad = [&] {
    throw UsageError(origin + ": config key '" + key + "' must be " + type_name(k->type) + ", got '" + text + "'");
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
    case KeyType::kString: return json(text);
  }
  return json();
}

json read_config_file(const std::string& path) {
  require_file(path, "config file");
  json j;
  try {
    // nlohmann::json would keep the last of duplicate keys silently: parse_json_strict refuses them.
    j = parse_json_strict(read_file_text(path, "config file"), /*allow_comments=*/true);
  } catch (const std::exception& e) {
    throw UsageError("config file '" + path + "' is not valid JSON: " + std::string(e.what()));
  }
  require(j.is_object(), "config file '" + path + "' must hold a JSON object {\"key\": value, ...}");
  return j;
}

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::map<std::string, std::string> flags;  // per-key options (--batch-size 32), as text
  std::string out = "diffuse_run";
  bool print_config = false;
  ParallelArgs parallel;
};

// ----- helpers


std::string prediction_type_name(diffuse::Parameterization p) {
  switch (p) {
    case diffuse::Parameterization::kEpsilon: return "epsilon";
    case diffuse::Parameterization::kVelocity: return "v_prediction";
    case diffuse::Parameterization::kSample: return "sample";
  }
  return "epsilon";
}

// ----- the command

int run_train(const TrainArgs& a, CLI::App& app) {
  RankGroup group;
  group.info = rank_from_env();
  check_parallel_args(a.parallel);
  require(!a.out.empty(), "--out must name the run folder");
  const fs::path out(a.out);
  const std::string saved_config = (out / "config.json").string();

  // Defaults, then the config file (or the run folder's saved config.json), then --set and the
  // per-key options.
  json cfg = json::object();
  for (const KeySpec& k : config_keys()) cfg[k.name] = k.default_value;
  std::string base;
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
    const std::string key = diffuse::detail::trim(s.substr(0, eq));
    const std::string text = s.substr(eq + 1);
    set_key(cfg, key, parse_cli_value(key, text, "--set " + key), "--set " + key, diffuse::detail::trim(text));
  }
  for (const KeySpec& k : config_keys()) {
    std::string flag = std::string("--") + k.name;
    for (char& ch : flag)
      if (ch == '_') ch = '-';
    if (app.get_option(flag)->count() == 0) continue;
    const std::string& text = a.flags.at(k.name);
    set_key(cfg, k.name, parse_cli_value(k.name, text, flag), flag, diffuse::detail::trim(text));
  }
  const int64_t eval_n = cfg["eval"].get<int64_t>();
  require(eval_n == 0 || eval_n >= 4, "config key 'eval' must be 0 (off) or >= 4, got " + std::to_string(eval_n));
  require(cfg["limit"].get<int64_t>() != 0, "config key 'limit' must be -1 (all) or >= 1, got 0");
  require(cfg["batch_size"].get<int64_t>() % cfg["grad_accum"].get<int64_t>() == 0,
          "config key 'batch_size' (" + cfg["batch_size"].dump() + ") must be divisible by 'grad_accum' (" +
              cfg["grad_accum"].dump() + ")");
  const std::string objective_spec = cfg["objective"].get<std::string>();
  const std::string preset = cfg["preset"].get<std::string>();
  const int64_t patch = cfg["patch"].get<int64_t>();
  const std::string sampler_spec = cfg["sampler"].get<std::string>();
  const c10::Device device = parse_device(cfg["device"].get<std::string>());
  const uint64_t seed = cfg["seed"].get<uint64_t>();
  const std::string data_dir = cfg["data_dir"].get<std::string>();
  const std::string init_from = cfg["init_from"].get<std::string>();
  const std::string autocast = cfg["autocast"].get<std::string>();

  // Every check of the config comes before --print-config and the data (fast, usage errors).
  // Fashion-MNIST images are 1 x 28 x 28.
  require(kImageSize % patch == 0, "config key 'patch' = " + std::to_string(patch) +
                                       " does not divide the image size " + std::to_string(kImageSize));
  try {
    (void)diffuse::dit_preset(preset, kImageSize, 1);
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'preset': " + error_message(e));
  }
  require(autocast == "off" || autocast == "bf16" || autocast == "fp16",
          "config key 'autocast' = '" + autocast + "' must be off, bf16 or fp16");
  std::shared_ptr<const diffuse::Objective> objective;
  try {
    objective = diffuse::objective_for_patch(objective_spec, patch);
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'objective': " + error_message(e));
  }
  std::shared_ptr<const diffuse::NoiseSchedule> schedule;
  try {
    schedule = diffuse::make_schedule(cfg["schedule"].get<std::string>());
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'schedule': " + error_message(e));
  }
  try {
    (void)diffuse::sampler_from_spec(sampler_spec);
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'sampler': " + error_message(e));
  }
  if (!init_from.empty()) require_file(init_from, "config key 'init_from': checkpoint");
  if (!data_dir.empty()) {
    require(fs::is_directory(data_dir, ec), "config key 'data_dir': '" + data_dir + "' is not a folder");
  }
  const int world = std::max(group.info.world_size, a.parallel.nproc);
  if (world > 1) {
    require(cfg["minutes"].get<double>() == 0,
            "config key 'minutes' = " + cfg["minutes"].dump() + " must be 0 with " + std::to_string(world) +
                " processes (ranks must agree on the number of steps): add --minutes 0 and set --steps");
    require(cfg["batch_size"].get<int64_t>() % (cfg["grad_accum"].get<int64_t>() * world) == 0,
            "config key 'batch_size' (" + cfg["batch_size"].dump() + ") must be divisible by grad_accum * processes (" +
                cfg["grad_accum"].dump() + " * " + std::to_string(world) + "): it is the global batch");
  }
  if (a.print_config) {
    std::cout << cfg.dump(2) << "\n";
    return kExitOk;
  }
  // --nproc N: the same command as N data-parallel ranks (rank 0 writes the run folder).
  if (const auto rc = launch_if_requested(a.parallel, "train")) return *rc;
  const int rank = group.info.rank;
  const bool main_rank = rank == 0;

  diffuse::Dataset data = diffuse::load_fashion_mnist("train", data_dir, cfg["limit"].get<int64_t>());
  if (cfg["unconditional"].get<bool>()) {
    data.labels = at::Tensor();
    data.num_classes = 0;
  }
  diffuse::DiTOptions dit(1, 1);
  try {
    dit = diffuse::dit_preset(preset, data.data.size(2), data.data.size(1));
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'preset': " + error_message(e));
  }
  require(data.data.size(2) % patch == 0,
          "config key 'patch' = " + std::to_string(patch) + " does not divide the image size " +
              std::to_string(data.data.size(2)));
  dit.patch_size(patch).num_classes(data.num_classes);
  const int64_t decoder_depth = cfg["decoder_depth"].get<int64_t>();
  const int64_t decoder_width = cfg["decoder_width"].get<int64_t>();
  const int64_t decoder = decoder_depth >= 0 ? decoder_depth : (diffuse::is_masked_objective(*objective) ? 2 : 0);
  if (decoder > 0) {
    const int64_t width = decoder_width > 0 ? decoder_width : dit.hidden_size();
    const int64_t heads = decoder_width > 0 ? std::max<int64_t>(1, width / 32) : dit.num_heads();
    dit.decoder_depth(decoder).decoder_hidden_size(width).decoder_num_heads(heads);
  }
  torch::manual_seed(seed);
  diffuse::DiT model(dit);
  model->to(device);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();

  diffuse::TrainerOptions o;
  o.steps(cfg["steps"].get<int64_t>())
      .batch_size(cfg["batch_size"].get<int64_t>())
      .grad_accum(cfg["grad_accum"].get<int64_t>())
      .lr(cfg["lr"].get<double>())
      .warmup_steps(cfg["warmup"].get<int64_t>())
      .grad_clip(cfg["grad_clip"].get<double>())
      .autocast(cfg["autocast"].get<std::string>())
      .ema_decay(cfg["ema_decay"].get<double>())
      .label_dropout(cfg["label_dropout"].get<double>())
      .seed(seed)
      .threads(-1)  // keep what --threads set
      .checkpoint_every(cfg["checkpoint_every"].get<int64_t>())
      .keep_checkpoints(cfg["keep_checkpoints"].get<int64_t>())
      .log_every(cfg["log_every"].get<int64_t>())
      .sample_every(cfg["sample_every"].get<int64_t>())
      .sampler(sampler_spec)
      .sample_steps(cfg["sample_steps"].get<int64_t>())
      .sample_count(data.num_classes > 0 ? 10 * data.num_classes : 64)
      .sample_nrow(data.num_classes > 0 ? data.num_classes : 8)
      .cfg_scale(cfg["cfg_scale"].get<double>())
      .output_dir(a.out)
      .max_minutes(cfg["minutes"].get<double>())
      .model_config("DiT " + diffuse::format_config(diffuse::to_config(dit)));
  diffuse::TrainerCallbacks callbacks = diffuse::console_reporter(progress_enabled(), progress_log_interval());
  // Ctrl-C / SIGTERM (the StopSignalGuard around train() below): stop after the step in progress.
  callbacks.should_stop = [] { return diffuse::stop_signal_received() != 0; };
  diffuse::Trainer<diffuse::DiT> trainer(model, objective, schedule, data, o, callbacks);

  // A launched rank: rendezvous, rank 0's initial weights everywhere, the gradient all-reduce.
  join_group(group, a.parallel);
#if DIFFUSE_CLI_DISTRIBUTED
  if (group.ctx) diffuse::make_data_parallel(trainer, *group.ctx);
#endif

  // Resume automatically; an incompatible run folder is refused with the trainer's reasons.
  std::string resumed_from;
  try {
    resumed_from = trainer.resume_latest();
  } catch (const diffuse::CorruptCheckpointError& e) {
    // Every checkpoint is unreadable: nothing to fall back to, and nothing is deleted for the user.
    std::string why = error_message(e);
    for (size_t at = why.find(":; "); at != std::string::npos; at = why.find(":; ")) why.replace(at, 3, ": ");
    throw diffuse::Error("cannot resume the run in '" + a.out + "': " + why + " (remove or move the corrupt " +
                         "checkpoint(s) out of '" + trainer.checkpoint_dir() + "' to start afresh)");
  } catch (const diffuse::Error& e) {
    std::string why = error_message(e);
    for (size_t at = why.find(":; "); at != std::string::npos; at = why.find(":; ")) why.replace(at, 3, ": ");
    throw diffuse::Error("cannot resume the run in '" + a.out + "': " + why +
                         " (train into another --out, or use the run's own config.json)");
  }
  if (main_rank) {
    fs::create_directories(out, ec);
    require(!ec, "cannot create the run folder '" + a.out + "': " + ec.message());
    diffuse::write_text_file_atomic(saved_config, cfg.dump(2) + "\n");
  }
  if (!base.empty()) spdlog::info("config: {}{}", base, base == saved_config ? " (the run's saved config)" : "");
  spdlog::info("data {} {} | DiT-{} patch {} decoder {} ({} parameters) | objective {}:{} | schedule {} | "
               "batch {} lr {} | {} threads{} | run folder {}",
               data.name, c10::str(data.data.sizes()), preset, patch, decoder, params, objective->name(),
               diffuse::format_config(objective->to_config()), schedule->name(), o.batch_size(), o.lr(),
               at::get_num_threads(),
               group.info.launched() ? " x " + std::to_string(group.info.world_size) + " processes" : std::string(),
               a.out);
  if (!resumed_from.empty()) {
    spdlog::info("resumed from {} at step {}", resumed_from, trainer.step());
  } else if (!init_from.empty()) {
    trainer.initialize_from(init_from);
    spdlog::info("initialised model and EMA weights from {}", init_from);
  }

  // Ctrl-C / SIGTERM during training: the step in progress is finished and checkpointed, then the
  // command exits with 128 + signal. A second signal exits at once; in a launched rank the launcher
  // handles the second one (it kills every rank), so repeats are ignored there.
  std::optional<diffuse::StopSignalGuard> stop_guard;
  stop_guard.emplace(main_rank ? "diffuse train" : nullptr, !group.info.launched());
  const diffuse::TrainResult res = trainer.train();
  stop_guard.reset();  // the final samples and eval: a signal ends them as before
  // A launched job decides on the result the ranks agreed on (the final samples are collective).
  const int signal_received = diffuse::stop_signal_received();
  if (res.reason == diffuse::StopReason::kInterrupted || (signal_received != 0 && !group.info.launched())) {
    const int code = 128 + (signal_received != 0 ? signal_received : SIGINT);
    if (main_rank) {
      spdlog::warn("interrupted by {}: checkpoint {} written at step {}; exit status {} (`diffuse train --out {}` "
                   "resumes from it)",
                   signal_received == SIGTERM ? "SIGTERM" : "SIGINT",
                   res.last_checkpoint.empty() ? std::string("(none)") : res.last_checkpoint, res.final_step, code,
                   a.out);
    }
    return code;
  }
  spdlog::info("{} after {} steps this run ({} in total) in {:.1f} s: {:.1f} images/s overall, {:.1f} images/s "
               "in training steps alone",
               res.reason == diffuse::StopReason::kTimeBudget ? "time budget reached" : "finished", res.steps_done,
               res.final_step, res.seconds, res.images_per_s, res.step_images_per_s);
  if (!res.last_checkpoint.empty()) spdlog::info("final checkpoint: {}", res.last_checkpoint);

  // The final grid and the evaluation samples: sharded across the ranks in Trainer::sample_many's
  // chunks (bit-identical to one process), gathered; rank 0 then writes everything.
  const int64_t sample_chunk = 250;
  const auto make_samples = [&](int64_t n, uint64_t sample_seed) {
    const auto make = [&](int64_t start, int64_t m) {
      at::Tensor labels;
      if (data.num_classes > 0) labels = at::arange(start, start + m, at::kLong).remainder(data.num_classes);
      return trainer.sample(m, sample_seed + static_cast<uint64_t>(start), labels).cpu();
    };
    std::vector<int64_t> item_shape(data.data.sizes().begin() + 1, data.data.sizes().end());
    return diffuse::sample_sharded(n, sample_chunk, rank, group.info.world_size, item_shape,
                                   data.data.scalar_type(), make, group.all_gather());
  };
  const int64_t per_row = data.num_classes > 0 ? data.num_classes : 8;
  const at::Tensor grid = make_samples(per_row * (data.num_classes > 0 ? 10 : 8), seed);
  const auto eval_t0 = std::chrono::steady_clock::now();
  const at::Tensor eval_samples = eval_n > 0 ? make_samples(eval_n, seed + 1000003) : at::Tensor();
  if (!main_rank) return kExitOk;

  // The model file: EMA weights + the card a sampler needs.
  diffuse::ModelCard card;
  card.architecture = "DiT";
  card.schedule = diffuse::detail::schedule_card_spec(*schedule);
  card.prediction_type = prediction_type_name(objective->prediction_type());
  card.sample_shape = {data.data.size(1), data.data.size(2), data.data.size(3)};
  card.num_classes = data.num_classes;
  if (data.num_classes == 10) card.class_names = diffuse::fashion_mnist_class_names();
  card.clip_sample = true;
  card.description = "diffuse train: DiT-" + preset + " patch " + std::to_string(patch) + ", objective " +
                     objective_spec + ", " + std::to_string(trainer.step()) + " steps on " + data.name +
                     " (EMA weights)";
  const std::string model_path = (out / "model.pt").string();
  diffuse::save_model(model_path, trainer.ema(), card);

  const std::string grid_path = (out / "samples_final.png").string();
  diffuse::save_image_grid(grid_path, grid.clamp(-1, 1), per_row);
  spdlog::info("model: {} | samples: {} | loss curve: {}", model_path, grid_path, (out / "loss.csv").string());

  if (eval_n > 0) {
    diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
    const diffuse::FashionReference ref =
        diffuse::make_fashion_reference(classifier, diffuse::load_fashion_mnist("test", data_dir));
    const diffuse::EvalResult r = diffuse::evaluate_fashion_mnist(eval_samples, classifier, ref);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_t0).count();
    spdlog::info("eval on {} EMA samples ({} steps of {}): FD {:.3f} precision {:.3f} recall {:.3f} | {:.1f} s",
                 r.num_samples, o.sample_steps(), sampler_spec, r.fd, r.precision, r.recall, secs);
    diffuse::write_text_file_atomic(
        (out / "eval.csv").string(),
        "step,objective,sampler,sample_steps,cfg_scale,num_samples,fd,precision,recall\n" +
            std::to_string(trainer.step()) + ",\"" + objective_spec + "\",\"" + sampler_spec + "\"," +
            std::to_string(o.sample_steps()) + "," + diffuse::format_double(o.cfg_scale()) + "," +
            std::to_string(r.num_samples) + "," + diffuse::format_double(r.fd) + "," +
            diffuse::format_double(r.precision) + "," + diffuse::format_double(r.recall) + "\n");
  }
  return kExitOk;
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
)" + keys + R"(
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

std::function<int()> setup_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  app.footer(footer());
  app.add_option("-c,--config", a->config, "JSON config file (see below)");
  app.add_option("--set", a->sets, "key=value override of a config key; repeatable");
  app.add_option("-o,--out", a->out, "Run folder (created; resumed when it holds checkpoints)")
      ->capture_default_str();
  app.add_flag("--print-config", a->print_config, "Print the resolved config as JSON and exit");
  add_parallel_options(app, a->parallel);
  for (const KeySpec& k : config_keys()) {
    std::string flag = std::string("--") + k.name;
    for (char& ch : flag)
      if (ch == '_') ch = '-';
    a->flags[k.name];  // create the entry first: std::map nodes keep their address
    const char* type = k.type == KeyType::kInt ? "INT" : k.type == KeyType::kDouble ? "NUM"
                       : k.type == KeyType::kBool ? "BOOL" : "TEXT";
    app.add_option(flag, a->flags[k.name], std::string("Same as --set ") + k.name + "=VALUE (see Keys below)")
        ->type_name(type)
        ->group("Config keys as options");
  }
  return [a, &app] { return run_train(*a, app); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(train, "train", "Train a DiT on Fashion-MNIST from a JSON config (resumes automatically)",
                    setup_train);

}  // namespace diffuse::cli
