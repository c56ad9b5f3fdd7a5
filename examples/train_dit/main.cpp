// SPDX-License-Identifier: Apache-2.0
// diffuse_example_train_dit: trains a small class-conditional DiT on Fashion-MNIST (CPU by default,
// --device cuda) with any registered objective, then writes the final checkpoint, the EMA weights,
// a sample grid, the loss curve (CSV + PNG) and, with --eval, the Frechet distance / precision /
// recall of EMA samples.
//
//   diffuse_example_train_dit --out runs/ip --objective ddpm_ip --minutes 20
//   diffuse_example_train_dit --out runs/mask --objective "maskdit:mask_ratio=0.5" --minutes 20
//   diffuse_example_train_dit --out runs/ip --resume --minutes 20     (continue the same run)
//   diffuse_example_train_dit --out runs/unmask --objective "maskdit:mask_ratio=0" --lr 1e-4
//       --init-from runs/mask/checkpoints/ckpt_00012000.pt  (one line: MaskDiT's unmasking phase)
//
// Everything random is seeded by --seed; a resumed run continues exactly where it stopped.
// Images/s is printed in the progress bar, every --log-every steps and at the end.
// The same training from a JSON config, with automatic resume and a model file at the end:
// `diffuse train` (examples/cli/commands/train.cpp, docs/cli.md).
#include <diffuse/training.h>
#include <diffuse/training/data.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/evaluation.h>
#include <diffuse/training/progress.h>
#include <diffuse/training/trainer.h>

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;
using diffuse::Tensor;

struct Args {
  std::string objective = "denoising";
  std::string preset = "tiny";
  int64_t patch = 4;
  int64_t decoder_depth = -1;
  std::string schedule = "discrete";
  int64_t steps = 1000000;
  double minutes = 20;
  int64_t batch_size = 64;
  int64_t grad_accum = 1;
  double lr = 3e-4;
  int64_t warmup = 200;
  double grad_clip = 1.0;
  double ema_decay = 0.9999;
  double label_dropout = 0.1;
  bool unconditional = false;
  std::string out = "train_dit_out";
  bool resume = false;
  std::string init_from;
  int64_t decoder_width = 0;
  std::string device = "cpu";
  int64_t threads = 0;
  uint64_t seed = 0;
  int64_t sample_every = 1000;
  int64_t checkpoint_every = 500;
  int64_t log_every = 50;
  std::string sampler = "dpm_solver_pp";
  int64_t sample_steps = 20;
  double cfg_scale = 2.0;
  int64_t limit = -1;
  std::string data_dir;
  int64_t eval = 0;
  bool no_bar = false;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Train a small DiT on Fashion-MNIST with a diffuse objective (CPU)"};
  app.add_option("--objective", a.objective,
                 "Objective spec: denoising, ddpm_ip, denoising:prediction_type=v_prediction, "
                 "maskdit:mask_ratio=0.5, ...")
      ->capture_default_str();
  app.add_option("--preset", a.preset, "DiT size: tiny, mini, S/2, B/2, ...")
      ->capture_default_str();
  app.add_option("--patch", a.patch, "Patch size (28 must be divisible by it)")
      ->capture_default_str();
  app.add_option("--decoder-depth", a.decoder_depth,
                 "MaskDiT decoder blocks (-1: 2 for masked objectives, 0 otherwise)")
      ->capture_default_str();
  app.add_option("--schedule", a.schedule, "Noise schedule registry key")->capture_default_str();
  app.add_option("--steps", a.steps, "Total optimiser steps")->capture_default_str();
  app.add_option("--minutes", a.minutes, "Wall-clock budget of this invocation (0 = none)")
      ->capture_default_str();
  app.add_option("--batch-size", a.batch_size, "Examples per optimiser step")
      ->capture_default_str();
  app.add_option("--grad-accum", a.grad_accum, "Micro-batches per step")->capture_default_str();
  app.add_option("--lr", a.lr, "Peak learning rate")->capture_default_str();
  app.add_option("--warmup", a.warmup, "Linear warm-up steps")->capture_default_str();
  app.add_option("--grad-clip", a.grad_clip, "Max gradient norm (0 = off)")->capture_default_str();
  app.add_option("--ema-decay", a.ema_decay, "EMA decay (with warm-up)")->capture_default_str();
  app.add_option("--label-dropout", a.label_dropout, "Label dropout for CFG")
      ->capture_default_str();
  app.add_flag("--unconditional", a.unconditional, "Ignore the labels");
  app.add_option("--out", a.out, "Output directory")->capture_default_str();
  app.add_flag("--resume", a.resume, "Resume from the latest checkpoint in <out>/checkpoints");
  app.add_option("--decoder-width", a.decoder_width,
                 "MaskDiT decoder width (0 = the encoder's; heads = width / 32, >= 1)")
      ->capture_default_str();
  app.add_option(
      "--init-from", a.init_from,
      "Start a new phase from the model + EMA weights of this checkpoint (e.g. MaskDiT's unmasking "
      "fine-tune: --objective maskdit:mask_ratio=0 --lr 1e-4)");
  app.add_option("--device", a.device, "Device of the model: cpu, cuda, cuda:N")
      ->capture_default_str();
  app.add_option("--threads", a.threads, "Intra-op threads (0 = all cores)")->capture_default_str();
  app.add_option("--seed", a.seed, "Seed of everything")->capture_default_str();
  app.add_option("--sample-every", a.sample_every,
                 "Preview grid every N steps (0 = none; samples_final.png is always written)")
      ->capture_default_str();
  app.add_option("--checkpoint-every", a.checkpoint_every, "Checkpoint every N steps")
      ->capture_default_str();
  app.add_option("--log-every", a.log_every, "Log / loss.csv row every N steps")
      ->capture_default_str();
  app.add_option("--sampler", a.sampler, "Sampler spec for previews and evaluation")
      ->capture_default_str();
  app.add_option("--sample-steps", a.sample_steps, "Sampler steps")->capture_default_str();
  app.add_option("--cfg-scale", a.cfg_scale, "Classifier-free guidance scale of samples (1 = off)")
      ->capture_default_str();
  app.add_option("--limit", a.limit, "Use only the first N training images (-1 = all 60000)")
      ->capture_default_str();
  app.add_option("--data-dir", a.data_dir,
                 "Fashion-MNIST directory (default: the Debian package's)");
  app.add_option(
         "--eval", a.eval,
         "After training, FD / precision / recall of N EMA samples vs the test set (0 = off)")
      ->capture_default_str();
  app.add_flag("--no-progress", a.no_bar, "No progress bar (log lines only)");
  CLI11_PARSE(app, argc, argv);

  try {
    diffuse::Dataset data = diffuse::load_fashion_mnist("train", a.data_dir, a.limit);
    if (a.unconditional) {
      data.labels = Tensor();
      data.num_classes = 0;
    }
    auto objective = diffuse::objective_for_patch(a.objective, a.patch);
    std::shared_ptr<const diffuse::NoiseSchedule> schedule = diffuse::make_schedule(a.schedule);
    diffuse::DiTOptions dit = diffuse::dit_preset(a.preset, data.data.size(2), data.data.size(1));
    dit.patch_size(a.patch).num_classes(data.num_classes);
    const int64_t decoder =
        a.decoder_depth >= 0 ? a.decoder_depth : (diffuse::is_masked_objective(*objective) ? 2 : 0);
    if (decoder > 0) {
      const int64_t width = a.decoder_width > 0 ? a.decoder_width : dit.hidden_size();
      const int64_t heads =
          a.decoder_width > 0 ? std::max<int64_t>(1, width / 32) : dit.num_heads();
      dit.decoder_depth(decoder).decoder_hidden_size(width).decoder_num_heads(heads);
    }
    torch::manual_seed(a.seed);
    diffuse::DiT model(dit);
    model->to(at::Device(a.device));
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();

    diffuse::TrainerOptions o;
    o.steps(a.steps)
        .batch_size(a.batch_size)
        .grad_accum(a.grad_accum)
        .lr(a.lr)
        .warmup_steps(a.warmup)
        .grad_clip(a.grad_clip)
        .ema_decay(a.ema_decay)
        .label_dropout(a.label_dropout)
        .seed(a.seed)
        .threads(a.threads)
        .checkpoint_every(a.checkpoint_every)
        .log_every(a.log_every)
        .sample_every(a.sample_every)
        .sampler(a.sampler)
        .sample_steps(a.sample_steps)
        .sample_count(data.num_classes > 0 ? 10 * data.num_classes : 64)
        .sample_nrow(data.num_classes > 0 ? data.num_classes : 8)
        .cfg_scale(a.cfg_scale)
        .output_dir(a.out)
        .max_minutes(a.minutes)
        .model_config("DiT " + diffuse::format_config(diffuse::to_config(dit)));
    diffuse::Trainer<diffuse::DiT> trainer(model, objective, schedule, data, o,
                                           diffuse::console_reporter(!a.no_bar));
    spdlog::info(
        "data {} {} | DiT-{} patch {} decoder {} ({} parameters) | objective {}:{} | schedule {} | "
        "batch {} lr {} | {} threads",
        data.name, c10::str(data.data.sizes()), a.preset, a.patch, decoder, params,
        objective->name(), diffuse::format_config(objective->to_config()), schedule->name(),
        a.batch_size, a.lr, at::get_num_threads());
    std::string resumed_from;
    if (a.resume) {
      resumed_from = trainer.resume_latest();
      if (resumed_from.empty()) {
        spdlog::info("--resume: no checkpoint in {}, starting a new run", trainer.checkpoint_dir());
      } else {
        spdlog::info("resumed from {} at step {}", resumed_from, trainer.step());
      }
    } else if (diffuse::latest_checkpoint(trainer.checkpoint_dir())) {
      spdlog::error(
          "{} already holds checkpoints: pass --resume to continue, or choose another --out",
          trainer.checkpoint_dir());
      return 2;
    }
    // A new run (not a resumed one) may start from another run's weights.
    if (resumed_from.empty() && !a.init_from.empty()) {
      trainer.initialize_from(a.init_from);
      spdlog::info("initialised model and EMA weights from {}", a.init_from);
    }
    const diffuse::TrainResult res = trainer.train();
    spdlog::info(
        "{} after {} steps this run ({} in total) in {:.1f} s: {:.2f} it/s, {:.1f} images/s "
        "overall, "
        "{:.1f} images/s in training steps alone (without checkpoints and previews)",
        res.reason == diffuse::StopReason::kTimeBudget ? "time budget reached" : "finished",
        res.steps_done, res.final_step, res.seconds,
        res.seconds > 0 ? res.steps_done / res.seconds : 0.0, res.images_per_s,
        res.step_images_per_s);
    if (!res.last_checkpoint.empty()) spdlog::info("final checkpoint: {}", res.last_checkpoint);

    // The EMA weights on their own (what a sampler loads), written atomically.
    const std::string ema_path = (fs::path(a.out) / "ema.pt").string();
    diffuse::write_file_atomic(ema_path, [&](std::ostream& os) {
      torch::serialize::OutputArchive ar;
      trainer.ema()->save(ar);
      ar.save_to(os);
    });
    const int64_t per_row = data.num_classes > 0 ? data.num_classes : 8;
    Tensor grid = trainer.sample_many(per_row * (data.num_classes > 0 ? 10 : 8), a.seed);
    const std::string grid_path = (fs::path(a.out) / "samples_final.png").string();
    diffuse::save_image_grid(grid_path, grid.clamp(-1, 1), per_row);
    spdlog::info("EMA weights: {} | samples: {} ({}cfg scale {})", ema_path, grid_path,
                 data.num_classes > 0 ? "column = class, " : "", a.cfg_scale);

    if (a.eval > 0) {
      const auto t0 = std::chrono::steady_clock::now();
      diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
      const diffuse::FashionReference ref = diffuse::make_fashion_reference(
          classifier, diffuse::load_fashion_mnist("test", a.data_dir));
      Tensor samples = trainer.sample_many(a.eval, a.seed + 1000003);
      const diffuse::EvalResult r = diffuse::evaluate_fashion_mnist(samples, classifier, ref);
      at::Generator g = at::detail::createCPUGenerator(a.seed);
      const diffuse::EvalResult noise = diffuse::evaluate_fashion_mnist(
          at::randn(samples.sizes(), g).clamp(-1, 1), classifier, ref);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      spdlog::info(
          "eval on {} EMA samples ({} steps of {}): FD {:.3f} precision {:.3f} recall {:.3f} | "
          "noise baseline FD {:.3f} | {:.1f} s",
          r.num_samples, a.sample_steps, a.sampler, r.fd, r.precision, r.recall, noise.fd, secs);
      const std::string eval_path = (fs::path(a.out) / "eval.csv").string();
      diffuse::write_text_file_atomic(
          eval_path,
          "step,objective,num_samples,fd,precision,recall,noise_fd,images_per_s,step_images_per_"
          "s\n" +
              std::to_string(trainer.step()) + "," + a.objective + "," +
              std::to_string(r.num_samples) + "," + std::to_string(r.fd) + "," +
              std::to_string(r.precision) + "," + std::to_string(r.recall) + "," +
              std::to_string(noise.fd) + "," + std::to_string(res.images_per_s) + "," +
              std::to_string(res.step_images_per_s) + "\n");
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
