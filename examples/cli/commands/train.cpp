// SPDX-License-Identifier: Apache-2.0
// diffuse train: trains a small DiT on Fashion-MNIST with any registered objective, driven by a
// JSON config file with command-line overrides. The run folder (--out) documents the run
// (config.json), holds its checkpoints (a second invocation resumes from the newest one
// automatically), the loss curve, a sample grid, the final model file (EMA weights + card) and,
// with `eval`, an eval.csv. This file: the options and the command's steps; train_config.cpp: the
// config keys and their resolution.
#include "commands/train.h"

#include "cli.h"
#include "parallel.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <optional>

#include <diffuse/training.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/data.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/evaluation.h>
#include <diffuse/training/image.h>
#include <diffuse/training/latents.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/progress.h>
#include <diffuse/training/stop_signal.h>
#include <diffuse/training/trainer.h>
#include <diffuse/training/vae.h>

namespace diffuse::cli::train_command {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using DiTTrainer = diffuse::Trainer<diffuse::DiT>;

/// The config's values a run uses, checked, and the components they name.
struct RunConfig {
  std::string objective_spec, preset, sampler_spec, data_dir, init_from;
  std::string latents;  ///< config key 'latents': a folder of latent shards ("" = pixels)
  int64_t patch = 0;
  int64_t eval_n = 0;  ///< config key 'eval': EMA samples evaluated after training (0 = off)
  c10::Device device = c10::Device(c10::kCPU);
  uint64_t seed = 0;
  std::shared_ptr<const diffuse::Objective> objective;
  std::shared_ptr<const diffuse::NoiseSchedule> schedule;
};

/// Every check of the config (fast, usage errors): before --print-config and the data. `world`:
/// the processes that will train.
RunConfig check_config(const json& cfg, int world) {
  RunConfig rc;
  rc.eval_n = cfg["eval"].get<int64_t>();
  require(rc.eval_n == 0 || rc.eval_n >= 4,
          "config key 'eval' must be 0 (off) or >= 4, got " + std::to_string(rc.eval_n));
  require(cfg["limit"].get<int64_t>() != 0, "config key 'limit' must be -1 (all) or >= 1, got 0");
  require(cfg["batch_size"].get<int64_t>() % cfg["grad_accum"].get<int64_t>() == 0,
          "config key 'batch_size' (" + cfg["batch_size"].dump() +
              ") must be divisible by 'grad_accum' (" + cfg["grad_accum"].dump() + ")");
  rc.objective_spec = cfg["objective"].get<std::string>();
  rc.preset = cfg["preset"].get<std::string>();
  rc.patch = cfg["patch"].get<int64_t>();
  rc.sampler_spec = cfg["sampler"].get<std::string>();
  rc.device = parse_device(cfg["device"].get<std::string>());
  rc.seed = cfg["seed"].get<uint64_t>();
  rc.data_dir = cfg["data_dir"].get<std::string>();
  rc.latents = cfg["latents"].get<std::string>();
  rc.init_from = cfg["init_from"].get<std::string>();
  const std::string autocast = cfg["autocast"].get<std::string>();

  // Fashion-MNIST images are 1 x 28 x 28 (latents are checked once loaded, in model_options).
  require(!rc.latents.empty() || kImageSize % rc.patch == 0,
          "config key 'patch' = " + std::to_string(rc.patch) + " does not divide the image size " +
              std::to_string(kImageSize));
  try {
    (void)diffuse::dit_preset(rc.preset, kImageSize, 1);
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'preset': " + error_message(e));
  }
  (void)require_enum(autocast, diffuse::autocast_names(), "config key 'autocast'");
  try {
    rc.objective = diffuse::objective_for_patch(rc.objective_spec, rc.patch);
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'objective': " + error_message(e));
  }
  try {
    std::string spec = cfg["schedule"].get<std::string>();
    if (spec == "auto")
      spec =
          rc.objective->prediction_type() == diffuse::Parameterization::kFlow ? "flow" : "discrete";
    rc.schedule = diffuse::Registry<diffuse::NoiseSchedule>::get().make_from_spec(spec);
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'schedule': " + error_message(e));
  }
  try {
    (void)diffuse::sampler_from_spec(rc.sampler_spec);
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'sampler': " + error_message(e));
  }
  if (!rc.init_from.empty()) require_file(rc.init_from, "config key 'init_from': checkpoint");
  std::error_code ec;
  if (!rc.data_dir.empty()) {
    require(fs::is_directory(rc.data_dir, ec),
            "config key 'data_dir': '" + rc.data_dir + "' is not a folder");
  }
  if (world > 1) {
    require(cfg["minutes"].get<double>() == 0, "config key 'minutes' = " + cfg["minutes"].dump() +
                                                   " must be 0 with " + std::to_string(world) +
                                                   " processes (ranks must agree on the number of "
                                                   "steps): add --minutes 0 and set --steps");
    require(cfg["batch_size"].get<int64_t>() % (cfg["grad_accum"].get<int64_t>() * world) == 0,
            "config key 'batch_size' (" + cfg["batch_size"].dump() +
                ") must be divisible by grad_accum * processes (" + cfg["grad_accum"].dump() +
                " * " + std::to_string(world) + "): it is the global batch");
  }
  return rc;
}

/// The training images or latents (without labels for an unconditional model).
diffuse::Dataset load_training_data(const json& cfg, const RunConfig& rc,
                                    diffuse::LatentsInfo* latents) {
  diffuse::Dataset data;
  if (!rc.latents.empty()) {
    try {
      data = diffuse::load_latents(rc.latents, latents);
    } catch (const diffuse::Error& e) {
      throw UsageError("config key 'latents': " + error_message(e));
    }
    const int64_t limit = cfg["limit"].get<int64_t>();
    if (limit > 0 && limit < data.size()) {
      data.data = data.data.narrow(0, 0, limit);
      if (data.labels.defined()) data.labels = data.labels.narrow(0, 0, limit);
    }
  } else {
    data = diffuse::load_fashion_mnist("train", rc.data_dir, cfg["limit"].get<int64_t>());
  }
  if (cfg["unconditional"].get<bool>()) {
    data.labels = at::Tensor();
    data.num_classes = 0;
  }
  return data;
}

/// MaskDiT decoder blocks: the config's, or 2 for masked objectives and 0 otherwise.
int64_t decoder_blocks(const json& cfg, const RunConfig& rc) {
  const int64_t decoder_depth = cfg["decoder_depth"].get<int64_t>();
  return decoder_depth >= 0 ? decoder_depth : (diffuse::is_masked_objective(*rc.objective) ? 2 : 0);
}

/// The DiT of the config for the data's images and classes.
diffuse::DiTOptions model_options(const json& cfg, const RunConfig& rc,
                                  const diffuse::Dataset& data) {
  diffuse::DiTOptions dit(1, 1);
  try {
    dit = diffuse::dit_preset(rc.preset, data.data.size(2), data.data.size(1));
  } catch (const diffuse::Error& e) {
    throw UsageError("config key 'preset': " + error_message(e));
  }
  require(data.data.size(2) % rc.patch == 0, "config key 'patch' = " + std::to_string(rc.patch) +
                                                 " does not divide the image size " +
                                                 std::to_string(data.data.size(2)));
  dit.patch_size(rc.patch).num_classes(data.num_classes);
  const int64_t decoder_width = cfg["decoder_width"].get<int64_t>();
  const int64_t decoder = decoder_blocks(cfg, rc);
  if (decoder > 0) {
    const int64_t width = decoder_width > 0 ? decoder_width : dit.hidden_size();
    const int64_t heads = decoder_width > 0 ? std::max<int64_t>(1, width / 32) : dit.num_heads();
    dit.decoder_depth(decoder).decoder_hidden_size(width).decoder_num_heads(heads);
  }
  return dit;
}

diffuse::TrainerOptions trainer_options(const json& cfg, const RunConfig& rc,
                                        const diffuse::Dataset& data,
                                        const diffuse::DiTOptions& dit, const std::string& out) {
  diffuse::TrainerOptions o;
  o.steps(cfg["steps"].get<int64_t>())
      .batch_size(cfg["batch_size"].get<int64_t>())
      .grad_accum(cfg["grad_accum"].get<int64_t>())
      .lr(cfg["lr"].get<double>())
      .warmup_steps(cfg["warmup"].get<int64_t>())
      .grad_clip(cfg["grad_clip"].get<double>())
      .autocast(diffuse::parse_autocast(cfg["autocast"].get<std::string>()))
      .ema_decay(cfg["ema_decay"].get<double>())
      .label_dropout(cfg["label_dropout"].get<double>())
      .seed(rc.seed)
      .threads(-1)  // keep what --threads set
      .checkpoint_every(cfg["checkpoint_every"].get<int64_t>())
      .keep_checkpoints(cfg["keep_checkpoints"].get<int64_t>())
      .log_every(cfg["log_every"].get<int64_t>())
      .sample_every(cfg["sample_every"].get<int64_t>())
      .sampler(rc.sampler_spec)
      .sample_steps(cfg["sample_steps"].get<int64_t>())
      .sample_count(data.num_classes > 0 ? 10 * data.num_classes : 64)
      .sample_nrow(data.num_classes > 0 ? data.num_classes : 8)
      .cfg_scale(cfg["cfg_scale"].get<double>())
      .output_dir(out)
      .max_minutes(cfg["minutes"].get<double>())
      .model_config("DiT " + diffuse::format_config(diffuse::to_config(dit)));
  return o;
}

/// The trainer's reasons on one line (its multi-line list joined).
std::string reasons(const std::exception& e) {
  std::string why = error_message(e);
  for (size_t at = why.find(":; "); at != std::string::npos; at = why.find(":; "))
    why.replace(at, 3, ": ");
  return why;
}

/// Resumes from the newest checkpoint of the run folder, if any (its path, or ""). Every
/// checkpoint unreadable is an I/O error; a folder trained with an incompatible config is a
/// configuration error (or the kind the trainer gave), both naming what to do.
std::string resume_run(DiTTrainer& trainer, const std::string& out) {
  try {
    return trainer.resume_latest();
  } catch (const diffuse::CorruptCheckpointError& e) {
    // Every checkpoint is unreadable: nothing to fall back to, and nothing is deleted for the user.
    throw diffuse::IOError("cannot resume the run in '" + out + "': " + reasons(e) +
                           " (remove or move the corrupt " + "checkpoint(s) out of '" +
                           trainer.checkpoint_dir() + "' to start afresh)");
  } catch (const diffuse::Error& e) {
    const std::string message = "cannot resume the run in '" + out + "': " + reasons(e) +
                                " (train into another --out, or use the run's own config.json)";
    if (dynamic_cast<const diffuse::IOError*>(&e) ||
        dynamic_cast<const diffuse::NumericalError*>(&e))
      throw_same_kind(e, message);
    throw diffuse::ConfigError(message);
  }
}

/// The run folder and its config.json (rank 0).
void write_run_folder(const fs::path& out, const json& cfg) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec)
    throw diffuse::IOError("cannot create the run folder '" + out.string() + "': " + ec.message());
  diffuse::write_text_file_atomic((out / "config.json").string(), cfg.dump(2) + "\n");
}

/// Trains until the steps, the time budget or a signal end it. Ctrl-C / SIGTERM: the step in
/// progress is finished and checkpointed, then the command exits with 128 + signal. A second
/// signal exits at once; in a launched rank the launcher handles the second one (it kills every
/// rank), so repeats are ignored there.
diffuse::TrainResult train_until_stopped(DiTTrainer& trainer, bool main_rank, bool launched) {
  std::optional<diffuse::StopSignalGuard> stop_guard;
  stop_guard.emplace(main_rank ? "diffuse train" : nullptr, !launched);
  diffuse::TrainResult res = trainer.train();
  stop_guard.reset();  // the final samples and eval: a signal ends them as before
  return res;
}

/// 128 + the signal when a signal stopped the run (after saying how to resume it), else nothing.
/// A launched job decides on the result the ranks agreed on (the final samples are collective).
std::optional<int> interrupted_exit_code(const diffuse::TrainResult& res, bool main_rank,
                                         bool launched, const std::string& out) {
  const int signal_received = diffuse::stop_signal_received();
  if (res.reason != diffuse::StopReason::kInterrupted && (signal_received == 0 || launched))
    return std::nullopt;
  const int code = 128 + (signal_received != 0 ? signal_received : SIGINT);
  if (main_rank) {
    spdlog::warn(
        "interrupted by {}: checkpoint {} written at step {}; exit status {} (`diffuse train --out "
        "{}` "
        "resumes from it)",
        signal_received == SIGTERM ? "SIGTERM" : "SIGINT",
        res.last_checkpoint.empty() ? std::string("(none)") : res.last_checkpoint, res.final_step,
        code, out);
  }
  return code;
}

/// The final grid and the evaluation samples: sharded across the ranks in Trainer::sample_many's
/// chunks (bit-identical to one process), gathered on every rank.
struct FinalSamples {
  at::Tensor grid;
  at::Tensor eval;  ///< undefined without eval
  std::chrono::steady_clock::time_point eval_start;
};

FinalSamples make_final_samples(DiTTrainer& trainer, const diffuse::Dataset& data,
                                const RunConfig& rc, RankGroup& group) {
  const int64_t sample_chunk = 250;
  const auto make_samples = [&](int64_t n, uint64_t sample_seed) {
    const auto make = [&](int64_t start, int64_t m) {
      at::Tensor labels;
      if (data.num_classes > 0)
        labels = at::arange(start, start + m, at::kLong).remainder(data.num_classes);
      return trainer.sample(m, sample_seed + static_cast<uint64_t>(start), labels).cpu();
    };
    std::vector<int64_t> item_shape(data.data.sizes().begin() + 1, data.data.sizes().end());
    return diffuse::sample_sharded(n, sample_chunk, group.info.rank, group.info.world_size,
                                   item_shape, data.data.scalar_type(), make, group.all_gather());
  };
  FinalSamples f;
  const int64_t per_row = data.num_classes > 0 ? data.num_classes : 8;
  f.grid = make_samples(per_row * (data.num_classes > 0 ? 10 : 8), rc.seed);
  f.eval_start = std::chrono::steady_clock::now();
  if (rc.eval_n > 0) f.eval = make_samples(rc.eval_n, rc.seed + 1000003);
  return f;
}

/// Latents -> images in [-1, 1] through the VAE, a few at a time.
at::Tensor decode_in_batches(diffuse::AutoencoderKL& vae, const at::Tensor& latents) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < latents.size(0); i += 16)
    parts.push_back(vae->decode(latents.narrow(0, i, std::min<int64_t>(16, latents.size(0) - i)))
                        .clamp(-1, 1)
                        .cpu());
  return at::cat(parts, 0);
}

/// model.pt (the EMA weights + the card a sampler needs) and samples_final.png (the grid decoded
/// already for latents; `vae` the VAE's path then).
void write_model_and_grid(const fs::path& out, DiTTrainer& trainer, const RunConfig& rc,
                          const diffuse::Dataset& data, const at::Tensor& grid,
                          const std::string& vae, const diffuse::LatentsInfo& latents) {
  diffuse::ModelCard card;
  card.architecture = "DiT";
  card.schedule = diffuse::detail::schedule_card_spec(*rc.schedule);
  card.prediction_type = diffuse::to_string(rc.objective->prediction_type());
  card.sample_shape = {data.data.size(1), data.data.size(2), data.data.size(3)};
  card.num_classes = data.num_classes;
  if (data.num_classes == 10) card.class_names = diffuse::fashion_mnist_class_names();
  if (!vae.empty() && data.num_classes > 0 &&
      static_cast<int64_t>(latents.class_names().size()) == data.num_classes)
    card.class_names = latents.class_names();
  card.clip_sample = vae.empty();
  card.vae = vae;
  card.description = "diffuse train: DiT-" + rc.preset + " patch " + std::to_string(rc.patch) +
                     ", objective " + rc.objective_spec + ", " + std::to_string(trainer.step()) +
                     " steps on " + data.name + " (EMA weights)";
  const std::string model_path = (out / "model.pt").string();
  diffuse::save_model(model_path, trainer.ema(), card);

  const std::string grid_path = (out / "samples_final.png").string();
  diffuse::save_image_grid(grid_path, grid.clamp(-1, 1),
                           data.num_classes > 0 ? data.num_classes : 8);
  spdlog::info("model: {} | samples: {} | loss curve: {}", model_path, grid_path,
               (out / "loss.csv").string());
}

/// With `eval`: FD / precision / recall of the EMA samples against the test set, into eval.csv.
void write_final_eval(const fs::path& out, const DiTTrainer& trainer,
                      const diffuse::TrainerOptions& o, const RunConfig& rc,
                      const FinalSamples& samples, std::optional<diffuse::AutoencoderKL>& vae) {
  diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
  const diffuse::FashionReference ref =
      diffuse::make_fashion_reference(classifier, diffuse::load_fashion_mnist("test", rc.data_dir));
  at::Tensor images = samples.eval;
  if (vae) {
    // Latents of (resized, RGB) Fashion-MNIST: decoded, grey again, back to 28 x 28.
    images = decode_in_batches(*vae, images).mean(1, /*keepdim=*/true);
    images = at::upsample_bilinear2d(images, {kImageSize, kImageSize}, false).clamp(-1, 1);
  }
  const diffuse::EvalResult r = diffuse::evaluate_fashion_mnist(images, classifier, ref);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - samples.eval_start).count();
  spdlog::info(
      "eval on {} EMA samples ({} steps of {}): FD {:.3f} precision {:.3f} recall {:.3f} | {:.1f} "
      "s",
      r.num_samples, o.sample_steps(), rc.sampler_spec, r.fd, r.precision, r.recall, secs);
  diffuse::write_text_file_atomic(
      (out / "eval.csv").string(),
      "step,objective,sampler,sample_steps,cfg_scale,num_samples,fd,precision,recall\n" +
          std::to_string(trainer.step()) + ",\"" + rc.objective_spec + "\",\"" + rc.sampler_spec +
          "\"," + std::to_string(o.sample_steps()) + "," + diffuse::format_double(o.cfg_scale()) +
          "," + std::to_string(r.num_samples) + "," + diffuse::format_double(r.fd) + "," +
          diffuse::format_double(r.precision) + "," + diffuse::format_double(r.recall) + "\n");
}

int run_train(const TrainArgs& a, CLI::App& app) {
  RankGroup group;
  group.info = rank_from_env();
  check_parallel_args(a.parallel);
  require(!a.out.empty(), "--out must name the run folder");
  const fs::path out(a.out);
  const std::string saved_config = (out / "config.json").string();
  std::string base;
  const json cfg = resolve_config(a, app, saved_config, base);
  const RunConfig rc = check_config(cfg, std::max(group.info.world_size, a.parallel.nproc));
  if (a.print_config) {
    std::cout << cfg.dump(2) << "\n";
    return kExitOk;
  }
  // --nproc N: the same command as N data-parallel ranks (rank 0 writes the run folder).
  if (const auto rc_launch = launch_if_requested(a.parallel, "train")) return *rc_launch;
  const bool main_rank = group.info.rank == 0;

  diffuse::LatentsInfo latents;
  const diffuse::Dataset data = load_training_data(cfg, rc, &latents);
  // Latents decode through a VAE for previews, the final grid and eval.
  std::optional<diffuse::AutoencoderKL> vae;
  std::string vae_path;
  if (!rc.latents.empty()) {
    vae_path = cfg["vae"].get<std::string>();
    if (vae_path.empty()) vae_path = latents.metadata["vae"];
    try {
      vae = diffuse::load_vae(vae_path);
    } catch (const diffuse::Error& e) {
      throw UsageError("the VAE of the latents ('" + vae_path +
                       "'; config key 'vae' names "
                       "another): " +
                       error_message(e));
    }
    const diffuse::AutoencoderKLOptions recorded = latents.vae_options();
    require(recorded.latent_channels() == (*vae)->options().latent_channels() &&
                recorded.scaling_factor() == (*vae)->options().scaling_factor() &&
                recorded.shift_factor() == (*vae)->options().shift_factor(),
            "the VAE '" + vae_path + "' (" +
                diffuse::format_config(diffuse::vae_to_config((*vae)->options())) +
                ") is not the one the latents were encoded with (" +
                latents.metadata["vae_config"] + ")");
    (*vae)->to(rc.device);
  }
  const diffuse::DiTOptions dit = model_options(cfg, rc, data);
  torch::manual_seed(rc.seed);
  diffuse::DiT model(dit);
  model->to(rc.device);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  diffuse::TrainerOptions o = trainer_options(cfg, rc, data, dit, a.out);
  diffuse::TrainerCallbacks callbacks =
      diffuse::console_reporter(progress_enabled(), progress_log_interval());
  if (vae) {
    o.clip_samples(false);
    callbacks.to_images = [&vae](const at::Tensor& z) { return decode_in_batches(*vae, z); };
  }
  // Ctrl-C / SIGTERM (train_until_stopped): stop after the step in progress.
  callbacks.should_stop = [] { return diffuse::stop_signal_received() != 0; };
  DiTTrainer trainer(model, rc.objective, rc.schedule, data, o, callbacks);

  // A launched rank: rendezvous, rank 0's initial weights everywhere, the gradient all-reduce.
  join_group(group, a.parallel);
#if DIFFUSE_CLI_DISTRIBUTED
  if (group.ctx) diffuse::make_data_parallel(trainer, *group.ctx);
#endif
  // Resume automatically; an incompatible run folder is refused with the trainer's reasons.
  const std::string resumed_from = resume_run(trainer, a.out);
  if (main_rank) write_run_folder(out, cfg);
  if (!base.empty())
    spdlog::info("config: {}{}", base, base == saved_config ? " (the run's saved config)" : "");
  spdlog::info(
      "data {} {} | DiT-{} patch {} decoder {} ({} parameters) | objective {}:{} | schedule {} | "
      "batch {} lr {} | {} threads{} | run folder {}",
      data.name, c10::str(data.data.sizes()), rc.preset, rc.patch, decoder_blocks(cfg, rc), params,
      rc.objective->name(), diffuse::format_config(rc.objective->to_config()), rc.schedule->name(),
      o.batch_size(), o.lr(), at::get_num_threads(),
      group.info.launched() ? " x " + std::to_string(group.info.world_size) + " processes"
                            : std::string(),
      a.out);
  if (!resumed_from.empty()) {
    spdlog::info("resumed from {} at step {}", resumed_from, trainer.step());
  } else if (!rc.init_from.empty()) {
    trainer.initialize_from(rc.init_from);
    spdlog::info("initialised model and EMA weights from {}", rc.init_from);
  }

  const diffuse::TrainResult res = train_until_stopped(trainer, main_rank, group.info.launched());
  if (const auto code = interrupted_exit_code(res, main_rank, group.info.launched(), a.out))
    return *code;
  spdlog::info(
      "{} after {} steps this run ({} in total) in {:.1f} s: {:.1f} images/s overall, {:.1f} "
      "images/s "
      "in training steps alone",
      res.reason == diffuse::StopReason::kTimeBudget ? "time budget reached" : "finished",
      res.steps_done, res.final_step, res.seconds, res.images_per_s, res.step_images_per_s);
  if (!res.last_checkpoint.empty()) spdlog::info("final checkpoint: {}", res.last_checkpoint);

  const FinalSamples samples = make_final_samples(trainer, data, rc, group);
  if (!main_rank) return kExitOk;  // rank 0 writes everything
  write_model_and_grid(out, trainer, rc, data,
                       vae ? decode_in_batches(*vae, samples.grid) : samples.grid,
                       vae ? vae_path : std::string(), latents);
  if (rc.eval_n > 0) write_final_eval(out, trainer, o, rc, samples, vae);
  return kExitOk;
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
    const std::string flag = option_name(k);
    a->flags[k.name];  // create the entry first: std::map nodes keep their address
    const char* type = k.type == KeyType::kInt      ? "INT"
                       : k.type == KeyType::kDouble ? "NUM"
                       : k.type == KeyType::kBool   ? "BOOL"
                                                    : "TEXT";
    app.add_option(flag, a->flags[k.name],
                   std::string("Same as --set ") + k.name + "=VALUE (see Keys below)")
        ->type_name(type)
        ->group("Config keys as options");
  }
  return [a, &app] { return run_train(*a, app); };
}

}  // namespace

}  // namespace diffuse::cli::train_command

namespace diffuse::cli {

DIFFUSE_CLI_COMMAND(train, "train",
                    "Train a DiT on Fashion-MNIST from a JSON config (resumes automatically)",
                    train_command::setup_train);

}  // namespace diffuse::cli
