// SPDX-License-Identifier: Apache-2.0
// The training loop: AdamW with linear learning-rate warm-up, global-norm gradient clipping,
// gradient accumulation, an EMA copy of the model with decay warm-up (training/ema.h), class-label
// dropout for classifier-free guidance, periodic atomic checkpoints that resume bit-exactly on the
// CPU, a loss curve (CSV + PNG) and periodic sample grids drawn with the foundation samplers.
//
// The trainer is generic over the model: M is a torch module holder (TORCH_MODULE) whose module is
// Cloneable (the EMA copy is model->clone()), and the network the objective and the samplers call
// is obtained from a free function as_network(M) -> diffuse::Network found by argument-dependent
// lookup (training/dit.h provides as_network(DiT)). Trainer<M> is a thin template over the
// compiled, model-independent TrainerBase (libdiffuse_training): any such M works with this header
// alone, no explicit instantiation or -inl header is needed. The engine is split by
// responsibility over training/*.cpp: trainer.cpp (construction, data order, the step and the
// loop), trainer_checkpoint.cpp (fingerprint, checkpoints, resume), trainer_sample.cpp (previews,
// sample()), loss_log.cpp (loss window, loss.csv, loss.png), precision.cpp (autocast, fp16 loss
// scaling) and data_parallel.cpp (the data-parallel reduction).
//
// Determinism. Every random draw comes from explicitly seeded generators:
//   - data order: epoch e uses randperm(N) from a generator seeded with mix(seed, e); the position
//     is (epoch, index into that permutation), so nothing but two integers is stored;
//   - objective draws (times, noise, masks): one CPU generator, its state checkpointed;
//   - label dropout: a second CPU generator, its state checkpointed;
//   - sample previews: SampleOptions::seed = options.seed (per-sample generators, the same noise at
//     every preview, independent of training state).
// With the same thread count, a run resumed from a checkpoint reproduces the uninterrupted run's
// loss trajectory and parameters exactly (tested in tests/training/trainer_test.cpp).
//
// Reference settings: DiT (Peebles & Xie 2023, train.py) uses AdamW lr 1e-4, weight decay 0,
// EMA decay 0.9999, label dropout 0.1, no warm-up or clipping; these are the defaults here.
// The library never prints: progress goes through TrainerCallbacks (training/progress.h has a
// console progress bar and an spdlog reporter).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <torch/arg.h>

#include <diffuse/denoiser.h>
#include <diffuse/objective.h>  // objective_from_spec, for the constructor's argument
#include <diffuse/sample.h>     // make_schedule, likewise
#include <diffuse/tensor.h>
#include <diffuse/training/checkpoint.h>
#include <diffuse/training/dataset.h>

namespace torch {
namespace nn {
class Module;
}  // namespace nn
namespace optim {
class AdamW;
}  // namespace optim
}  // namespace torch

namespace diffuse {

/// Mixed precision of the training forward pass (TrainerOptions::autocast).
enum class Autocast { off, bf16, fp16 };
/// Names of Autocast ("off", "bf16", "fp16").
const std::vector<std::pair<std::string, Autocast>>& autocast_names();
/// The Autocast called `name`; anything else is a ConfigError naming it.
Autocast parse_autocast(const std::string& name);
std::string to_string(Autocast autocast);

struct TrainerOptions {
  using Betas = std::tuple<double, double>;
  /// Total number of optimiser steps of the run (a resumed run continues up to this step). >= 1.
  /// Default 1000.
  TORCH_ARG(int64_t, steps) = 1000;
  /// Examples per optimiser step (all micro-batches together). >= 1 and divisible by grad_accum.
  /// Default 64.
  TORCH_ARG(int64_t, batch_size) = 64;
  /// Peak AdamW learning rate, > 0. Default 1e-4 (DiT).
  TORCH_ARG(double, lr) = 1e-4;
  /// AdamW (beta1, beta2), each in [0, 1). Default (0.9, 0.999).
  TORCH_ARG(Betas, betas) = std::make_tuple(0.9, 0.999);
  /// AdamW epsilon, > 0. Default 1e-8.
  TORCH_ARG(double, adam_eps) = 1e-8;
  /// Decoupled weight decay, >= 0. Default 0 (DiT).
  TORCH_ARG(double, weight_decay) = 0.0;
  /// Linear warm-up: step s (1-based) uses lr * min(1, s / warmup_steps). >= 0; default 0 (off).
  TORCH_ARG(int64_t, warmup_steps) = 0;
  /// Maximum global L2 norm of the gradient (torch::nn::utils::clip_grad_norm_). >= 0; 0 = off
  /// (the default; the norm is still reported).
  TORCH_ARG(double, grad_clip) = 0.0;
  /// Micro-batches per optimiser step (gradient accumulation), >= 1. Each micro-batch has
  /// batch_size / grad_accum examples; the loss of each is scaled by 1 / grad_accum so the
  /// gradient is that of the mean over the whole batch. Default 1.
  TORCH_ARG(int64_t, grad_accum) = 1;
  /// EMA decay in [0, 1]. Default 0.9999 (DiT). 0 makes the EMA a copy of the model.
  TORCH_ARG(double, ema_decay) = 0.9999;
  /// EMA decay warm-up min(ema_decay, (1 + n) / (10 + n)) for the n-th update (training/ema.h).
  /// Default true.
  TORCH_ARG(bool, ema_warmup) = true;
  /// Probability in [0, 1] of replacing a label by the null class id (num_classes) for
  /// classifier-free guidance; only used when the dataset is labelled. Default 0.1 (DiT).
  TORCH_ARG(double, label_dropout) = 0.1;
  /// Seed of all generators (data order, objective draws, label dropout, previews). Default 0.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Intra-op threads (at::set_num_threads) set by the constructor; 0 = hardware concurrency
  /// (the default); < 0 = leave the current setting. Bit-exact resume needs the same thread count
  /// (reductions may split differently); it is not part of the fingerprint.
  TORCH_ARG(int64_t, threads) = 0;
  /// Write a checkpoint every this many steps; 0 = only at the end of train(). >= 0. Default 1000.
  TORCH_ARG(int64_t, checkpoint_every) = 1000;
  /// Where checkpoints go. Empty (default): <output_dir>/checkpoints, or no checkpoints when
  /// output_dir is empty too.
  TORCH_ARG(std::string, checkpoint_dir) = "";
  /// Keep only the newest K checkpoints; 0 = keep all. >= 0. Default 3.
  TORCH_ARG(int64_t, keep_checkpoints) = 3;
  /// Append a row to loss.csv (averages over the last log_every steps) and call on_log every this
  /// many steps. >= 1. Default 10.
  TORCH_ARG(int64_t, log_every) = 10;
  /// Draw a sample grid with the EMA model every this many steps (and at the end); 0 = never.
  /// >= 0. Default 0. Requires output_dir for files; the on_sample callback fires regardless.
  TORCH_ARG(int64_t, sample_every) = 0;
  /// Sampler spec for previews ("key" or "key:opt=value,..."). Default "dpm_solver_pp".
  TORCH_ARG(std::string, sampler) = "dpm_solver_pp";
  /// Solver steps of a preview, >= 1. Default 20.
  TORCH_ARG(int64_t, sample_steps) = 20;
  /// Images (or points) per preview, >= 1. Default 16; labelled data cycles through the classes.
  TORCH_ARG(int64_t, sample_count) = 16;
  /// Images per row of the preview grid, >= 1. Default 4.
  TORCH_ARG(int64_t, sample_nrow) = 4;
  /// Clip x0 to [-1, 1] when sampling image data (4-D) for previews and sample_many: right for
  /// pixels, wrong for latents (<diffuse/training/latents.h>), which are unbounded. Default true.
  TORCH_ARG(bool, clip_samples) = true;
  /// Classifier-free guidance scale of previews (labelled data only); 1 = conditional only
  /// (default). Any finite value.
  TORCH_ARG(double, cfg_scale) = 1.0;
  /// Directory for loss.csv, loss.png and samples_<step>.png; created if missing. Empty
  /// (default): write no files except checkpoints.
  TORCH_ARG(std::string, output_dir) = "";
  /// Free text describing the model's configuration (e.g. its options), made part of the resume
  /// fingerprint: the parameter names and shapes are always compared, but settings that keep the
  /// shapes (a DiT's num_heads, say) can only be caught through this. Default "".
  TORCH_ARG(std::string, model_config) = "";
  /// Wall-clock budget of train() in minutes (checked after every step; a final checkpoint is
  /// written when it runs out). 0 = none (default). >= 0.
  TORCH_ARG(double, max_minutes) = 0.0;
  /// Mixed precision of the forward pass and loss (detail::AutocastGuard around the objective;
  /// the backward pass, gradients, optimiser state and the parameters, i.e. the master weights,
  /// stay in the parameters' dtype):
  ///   "off"  (default) no autocast;
  ///   "bf16" autocast to bfloat16 on the model's device (CPU or CUDA);
  ///   "fp16" autocast to float16, CUDA only, with a dynamic loss scaler: the loss is multiplied
  ///          by a scale S (initially 2^16) before backward and the gradients divided by S after
  ///          the data-parallel reduction; a step whose gradients are not finite is skipped (no
  ///          optimiser update; S is halved), and S doubles after 2000 consecutive finite steps
  ///          (torch.cuda.amp.GradScaler's defaults). S is part of the checkpoint. A non-finite
  ///          loss (an fp16 overflow in the forward pass) is still an error, as without autocast.
  /// A value other than off is part of the resume fingerprint.
  TORCH_ARG(Autocast, autocast) = Autocast::off;
};

/// What one optimiser step did (passed to on_step every step, and, averaged over log_every
/// steps, to on_log).
struct StepStats {
  int64_t step = 0;                     ///< optimiser steps completed (1-based index of this step)
  int64_t total_steps = 0;              ///< TrainerOptions::steps
  int64_t epoch = 0;                    ///< data epoch the next example comes from
  double loss = 0;                      ///< mean per-example loss of the step's batch
  std::map<std::string, double> terms;  ///< the objective's named terms, batch means
  double lr = 0;                        ///< learning rate used by this step
  double grad_norm = 0;     ///< global gradient norm before clipping (after loss-scale removal)
  double loss_scale = 1;    ///< fp16 autocast: the loss scale used by this step; otherwise 1
  bool skipped = false;     ///< fp16 autocast: non-finite gradients, no optimiser update this step
  double ema_decay = 0;     ///< EMA decay used by this step
  double it_per_s = 0;      ///< optimiser steps per second since train() started
  double images_per_s = 0;  ///< it_per_s * batch_size
  double elapsed_s = 0;     ///< seconds since train() started
  double eta_s = 0;     ///< estimated seconds to the end: to total_steps at the current rate, or
                        ///< to the end of the time budget (max_minutes) if that comes first
  double progress = 0;  ///< fraction of the run done in [0, 1]: the larger of step / total_steps
                        ///< and elapsed / time budget
};

struct TrainerCallbacks {
  /// Every optimiser step.
  std::function<void(const StepStats&)> on_step;
  /// Every log_every steps, with loss/terms/lr/grad_norm averaged over those steps.
  std::function<void(const StepStats&)> on_log;
  /// After a checkpoint has been written (path, step).
  std::function<void(const std::string&, int64_t)> on_checkpoint;
  /// After a preview (samples [n, ...] in data space, path of the PNG or "" if none, step).
  std::function<void(const Tensor&, const std::string&, int64_t)> on_sample;
  /// Turns preview samples into images [n, C, H, W] in [-1, 1] for the PNG: a latent model's VAE
  /// decode (see <diffuse/training/latents.h>). Unset (default): the samples are the images.
  std::function<Tensor(const Tensor&)> to_images;
  /// Polled after every optimiser step (and, data-parallel, during it, see Trainer::request_stop);
  /// returning true stops train() after that step with a checkpoint (StopReason::kInterrupted).
  /// Called on every rank. The CLI's Ctrl-C handling (training/stop_signal.h) plugs in here.
  std::function<bool()> should_stop;
  /// resume_latest() skipped a checkpoint it could not load (path, reason) and fell back to an
  /// older one; the skipped file was renamed to path + ".corrupt" (renamed_to, "" if that failed).
  std::function<void(const std::string& path, const std::string& reason,
                     const std::string& renamed_to)>
      on_checkpoint_skipped;
};

/// The objective `spec` for a DiT of patch size `patch`: masked objectives (those with a
/// patch_size option) get patch_size=patch unless the spec sets it.
std::shared_ptr<const Objective> objective_for_patch(const std::string& spec, int64_t patch);

/// Whether the objective masks tokens (has a mask_ratio option), i.e. needs a MaskDiT decoder.
bool is_masked_objective(const Objective& obj);

/// Why train() returned.
enum class StopReason {
  kFinished,     ///< options.steps steps are done
  kTimeBudget,   ///< max_minutes ran out
  kInterrupted,  ///< request_stop() or callbacks.should_stop asked (after a step, with a
                 ///< checkpoint)
};

struct TrainResult {
  int64_t steps_done = 0;  ///< steps taken by this call
  int64_t final_step = 0;
  StopReason reason = StopReason::kFinished;
  double seconds = 0;       ///< wall-clock time of train()
  double images_per_s = 0;  ///< examples per second over `seconds` (includes checkpoints, previews)
  double step_seconds = 0;  ///< time spent in train_step() alone
  double step_images_per_s = 0;  ///< examples per second of train_step() alone (compute throughput)
  std::string last_checkpoint;   ///< "" if none was written
};

namespace detail {

/// What a Trainer needs to know about its model type (Trainer<M> fills it in).
struct TrainerModel {
  /// The model being trained.
  std::shared_ptr<torch::nn::Module> module;
  /// Whether a module (the EMA copy made by module->clone()) has the model's own type.
  std::function<bool(const std::shared_ptr<torch::nn::Module>&)> own_type;
  /// as_network() of a module of the model's type.
  std::function<Network(const std::shared_ptr<torch::nn::Module>&)> network;
};

struct TrainerState;

}  // namespace detail

/// The model-independent trainer (see Trainer<M> below for the documentation of the whole).
class TrainerBase {
 public:
  TrainerBase(detail::TrainerModel model, std::shared_ptr<const Objective> objective,
              std::shared_ptr<const NoiseSchedule> schedule, Dataset data,
              TrainerOptions options = {}, TrainerCallbacks callbacks = {});
  ~TrainerBase();
  TrainerBase(const TrainerBase&) = delete;
  TrainerBase& operator=(const TrainerBase&) = delete;

  // ----- accessors
  /// The fp16 loss scale the next step will use (1 unless autocast is "fp16").
  double loss_scale() const;
  const TrainerOptions& options() const;
  const Dataset& dataset() const;
  torch::optim::AdamW& optimizer();
  /// Optimiser steps completed.
  int64_t step() const;
  /// Data position: the epoch and the index into its permutation of the next example.
  int64_t epoch() const;
  int64_t epoch_position() const;
  const std::string& checkpoint_dir() const;
  /// Text identifying everything that must match for a resume (options that change the
  /// trajectory, objective, schedule, dataset shape, parameter names and shapes).
  const std::string& fingerprint() const;

  /// Asks train() to stop after the step in progress (or after the next one, if none is), writing a
  /// checkpoint for it; train() then returns StopReason::kInterrupted. Thread-safe and lock-free
  /// (std::atomic<bool>), so another thread may call it; a signal handler should rather set a
  /// std::sig_atomic_t that callbacks.should_stop reads (training/stop_signal.h). Data-parallel:
  /// the request of any rank is part of the step's all-reduce, so every rank stops after the same
  /// step (the first whose reduction saw a request); rank 0 writes the checkpoint.
  void request_stop();

  /// Data-parallel training (training/distributed.h's make_data_parallel() calls this; it is
  /// independent of any communication library). This process is rank `rank` of `world_size`; every
  /// optimiser step, each micro-batch of batch_size / grad_accum examples is the same global
  /// micro-batch as in a single-process run, and this rank evaluates its slice [rank * m, (rank+1)
  /// * m), m = batch_size / (grad_accum * world_size). The objective's random draws and the label
  /// dropout are made for the whole global micro-batch on every rank (the generators stay identical
  /// across ranks) and sliced, so the run equals single-process training up to the order of the
  /// gradient sums. After backward, `all_reduce_mean` receives the gradients of all parameters that
  /// require them (undefined ones as zeros) followed by one float64 tensor [loss, terms..., stop]
  /// (stop: 1 if this rank was asked to stop, see request_stop()) and must
  /// replace each by its mean over ranks, before clipping and the optimiser step. Only rank 0
  /// writes checkpoints, loss.csv/loss.png and previews, and calls on_log / on_sample /
  /// on_checkpoint (every rank may read checkpoints to resume). Call it before resume_latest().
  /// Requires batch_size divisible by grad_accum * world_size and max_minutes = 0 (ranks must
  /// agree on the number of steps). world_size 1 restores single-process behaviour.
  void set_data_parallel(int rank, int world_size,
                         std::function<void(std::vector<Tensor>&)> all_reduce_mean);
  /// This process's rank and the number of data-parallel processes (0 and 1 unless
  /// set_data_parallel was called).
  int rank() const;
  int world_size() const;

  /// Learning rate of step s (1-based): lr * min(1, s / warmup_steps).
  double lr_at(int64_t s) const;

  /// The example indices of the next `n` examples in data order (advances the position).
  Tensor next_indices(int64_t n);

  /// The permutation of the dataset used in epoch `e` (a pure function of seed and e).
  Tensor epoch_permutation(int64_t e) const;

  /// Replaces labels by the null id num_classes with probability label_dropout (label generator).
  Tensor drop_labels(const Tensor& labels);

  /// One optimiser step (grad_accum micro-batches). Throws diffuse::NumericalError naming the step
  /// if the loss or the gradient norm is NaN/Inf; the trainer must then be discarded (resume from
  /// the last checkpoint, which is never written from a non-finite state).
  StepStats train_step();

  /// Trains until options.steps steps are done or the time budget runs out; writes checkpoints,
  /// the loss curve and previews as configured, and a final checkpoint.
  TrainResult train();

  /// sample() for many images in batches of at most `chunk` (>= 1, default 250): sample i uses the
  /// seed seed + i and, for labelled data, class i % num_classes, whatever the chunking. On the
  /// CPU.
  Tensor sample_many(int64_t n, uint64_t seed, int64_t chunk = 250);

  /// Draws n samples with the EMA model (no_grad), the objective's prediction type, the preview
  /// sampler/steps/cfg options and per-sample noise from `seed`. `labels` (int64 [n]) default to
  /// i % num_classes for labelled data. Image data ([N, C, H, W]) is clipped to [-1, 1].
  Tensor sample(int64_t n, uint64_t seed, Tensor labels = {});

  // ----- checkpoints (training/trainer_checkpoint.cpp)

  /// Writes a checkpoint for the current step to checkpoint_dir (atomically) and prunes old ones;
  /// returns its path.
  std::string save_checkpoint();

  /// Writes the full training state to `path` atomically.
  void save_checkpoint(const std::string& path);

  /// Restores the state saved by save_checkpoint(path). Throws diffuse::Error if the file cannot
  /// be read or was written for a different setup (the message lists the differences).
  /// A file that is not a usable checkpoint throws CorruptCheckpointError (an IOError); then, or if
  /// entries are missing after the model was read, the trainer may be partly loaded: load another
  /// checkpoint or discard it.
  void load_checkpoint(const std::string& path);

  /// Starts a new training phase from the weights of another run (e.g. MaskDiT's unmasking
  /// fine-tune: the same DiT, the objective's mask_ratio 0, a smaller lr). Loads the model and EMA
  /// weights of the checkpoint at `path` (written by any trainer whose model has the same parameter
  /// names and shapes); optimiser state, step, data position and generators stay fresh, since the
  /// objective and optimiser settings may differ. Throws diffuse::Error naming the first mismatch.
  void initialize_from(const std::string& path);

  /// Resumes from the newest intact checkpoint in checkpoint_dir (after removing temporary files
  /// left by killed writers; older checkpoints beyond keep_checkpoints are pruned); returns its
  /// path, or "" (and changes nothing) if there is none. The next train() truncates loss.csv to the
  /// checkpoint's step.
  ///
  /// A newer checkpoint that cannot be read (CorruptCheckpointError: truncated, garbage, not a
  /// checkpoint, another format) is skipped: rank 0 renames it to <name>.corrupt (never deletes
  /// it; out of the ckpt_<digits>.pt pattern, it is neither resumed from, nor counted or deleted by
  /// keep_checkpoints pruning, nor overwritten when the run reaches its step again) and reports it
  /// through callbacks.on_checkpoint_skipped. A checkpoint written for a different setup is never
  /// skipped: it throws Error as load_checkpoint() does. If every checkpoint is corrupt, throws
  /// CorruptCheckpointError listing them and renames nothing.
  std::string resume_latest();

  /// Renames a corrupt checkpoint to <path>.corrupt (or .corrupt.N if taken); returns the new name,
  /// or "" if the rename failed.
  static std::string set_aside(const std::string& path);

 protected:
  /// The EMA copy of the model (a module of the model's type).
  const std::shared_ptr<torch::nn::Module>& ema_module() const;

 private:
  /// A preview: sample_count samples, written as samples_<step>.png (or .csv), then on_sample.
  void preview();

  std::unique_ptr<detail::TrainerState> s_;
};

/// Trains a model M (a TORCH_MODULE holder of a Cloneable module, with a free function
/// as_network(M) -> Network found by ADL) on `data` with `objective` and `schedule`.
///
///   Trainer<DiT> trainer(model, objective_from_spec("ddpm_ip"), make_schedule("discrete"), data,
///                        TrainerOptions().steps(20000).output_dir("run"), console_reporter());
///   trainer.resume_latest();   // optional: continue from run/checkpoints
///   TrainResult r = trainer.train();
///
/// The model is trained in place (model()); ema() is a separate copy (model->clone()) updated
/// after every optimiser step. Both live on the model's device (CPU or CUDA): the dataset stays in
/// host memory and each batch is copied to that device; the generators are CPU generators whose
/// draws the objectives move to the batch's device, so a CUDA run draws the same numbers as a CPU
/// run (bit-exact resume is guaranteed on the CPU; on CUDA it is as deterministic as the kernels).
/// Not thread-safe; one train() at a time. Everything but model() and ema() is TrainerBase's.
template <typename M>
class Trainer : public TrainerBase {
 public:
  using Module = typename M::ContainedType;

  Trainer(M model, std::shared_ptr<const Objective> objective,
          std::shared_ptr<const NoiseSchedule> schedule, Dataset data, TrainerOptions options = {},
          TrainerCallbacks callbacks = {})
      : TrainerBase(hooks(model), std::move(objective), std::move(schedule), std::move(data),
                    std::move(options), std::move(callbacks)),
        model_(std::move(model)),
        ema_(std::dynamic_pointer_cast<Module>(ema_module())) {}

  M& model() { return model_; }
  M& ema() { return ema_; }

 private:
  static detail::TrainerModel hooks(const M& model) {
    detail::TrainerModel h;
    h.module = model.ptr();
    h.own_type = [](const std::shared_ptr<torch::nn::Module>& m) {
      return static_cast<bool>(std::dynamic_pointer_cast<Module>(m));
    };
    h.network = [](const std::shared_ptr<torch::nn::Module>& m) -> Network {
      return as_network(M(std::dynamic_pointer_cast<Module>(m)));
    };
    return h;
  }

  M model_;
  M ema_{nullptr};
};

}  // namespace diffuse
