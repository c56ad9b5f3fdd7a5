// SPDX-License-Identifier: Apache-2.0
// The training loop: AdamW with linear learning-rate warm-up, global-norm gradient clipping,
// gradient accumulation, an EMA copy of the model with decay warm-up (training/ema.h), class-label
// dropout for classifier-free guidance, periodic atomic checkpoints that resume bit-exactly on the
// CPU, a loss curve (CSV + PNG) and periodic sample grids drawn with the foundation samplers.
//
// The trainer is generic over the model: M is a torch module holder (TORCH_MODULE) whose module is
// Cloneable (the EMA copy is model->clone()), and the network the objective and the samplers call
// is obtained from a free function as_network(M) -> diffuse::Network found by argument-dependent
// lookup (training/dit.h provides as_network(DiT)).
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

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/guidance.h>
#include <diffuse/objective.h>
#include <diffuse/sample.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>
#include <diffuse/training/checkpoint.h>
#include <diffuse/training/dataset.h>
#include <diffuse/training/ema.h>
#include <diffuse/training/fault_injection.h>
#include <diffuse/training/image.h>

namespace diffuse {

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
  /// Anything else is an error naming the value. A value other than "off" is part of the resume
  /// fingerprint.
  TORCH_ARG(std::string, autocast) = "off";
};

/// What one optimiser step did (passed to on_step every step, and, averaged over log_every
/// steps, to on_log).
struct StepStats {
  int64_t step = 0;         ///< optimiser steps completed (1-based index of this step)
  int64_t total_steps = 0;  ///< TrainerOptions::steps
  int64_t epoch = 0;        ///< data epoch the next example comes from
  double loss = 0;          ///< mean per-example loss of the step's batch
  std::map<std::string, double> terms;  ///< the objective's named terms, batch means
  double lr = 0;            ///< learning rate used by this step
  double grad_norm = 0;     ///< global gradient norm before clipping (after loss-scale removal)
  double loss_scale = 1;    ///< fp16 autocast: the loss scale used by this step; otherwise 1
  bool skipped = false;     ///< fp16 autocast: non-finite gradients, no optimiser update this step
  double ema_decay = 0;     ///< EMA decay used by this step
  double it_per_s = 0;      ///< optimiser steps per second since train() started
  double images_per_s = 0;  ///< it_per_s * batch_size
  double elapsed_s = 0;     ///< seconds since train() started
  double eta_s = 0;         ///< estimated seconds to the end: to total_steps at the current rate, or
                            ///< to the end of the time budget (max_minutes) if that comes first
  double progress = 0;      ///< fraction of the run done in [0, 1]: the larger of step / total_steps
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
  /// Polled after every optimiser step (and, data-parallel, during it, see Trainer::request_stop);
  /// returning true stops train() after that step with a checkpoint (StopReason::kInterrupted).
  /// Called on every rank. The CLI's Ctrl-C handling (training/stop_signal.h) plugs in here.
  std::function<bool()> should_stop;
  /// resume_latest() skipped a checkpoint it could not load (path, reason) and fell back to an
  /// older one; the skipped file was renamed to path + ".corrupt" (renamed_to, "" if that failed).
  std::function<void(const std::string& path, const std::string& reason, const std::string& renamed_to)>
      on_checkpoint_skipped;
};

/// The objective `spec` for a DiT of patch size `patch`: masked objectives (those with a
/// patch_size option) get patch_size=patch unless the spec sets it.
inline std::shared_ptr<const Objective> objective_for_patch(const std::string& spec, int64_t patch) {
  std::shared_ptr<const Objective> obj = objective_from_spec(spec);
  const Config cfg = obj->to_config();
  auto it = cfg.find("patch_size");
  if (it != cfg.end() && spec.find("patch_size") == std::string::npos && it->second != std::to_string(patch)) {
    obj = objective_from_spec(spec + (spec.find(':') == std::string::npos ? ":" : ",") + "patch_size=" +
                              std::to_string(patch));
  }
  return obj;
}

/// Whether the objective masks tokens (has a mask_ratio option), i.e. needs a MaskDiT decoder.
inline bool is_masked_objective(const Objective& obj) { return obj.to_config().count("mask_ratio") > 0; }

/// Why train() returned.
enum class StopReason {
  kFinished,     ///< options.steps steps are done
  kTimeBudget,   ///< max_minutes ran out
  kInterrupted,  ///< request_stop() or callbacks.should_stop asked (after a step, with a checkpoint)
};

struct TrainResult {
  int64_t steps_done = 0;  ///< steps taken by this call
  int64_t final_step = 0;
  StopReason reason = StopReason::kFinished;
  double seconds = 0;        ///< wall-clock time of train()
  double images_per_s = 0;   ///< examples per second over `seconds` (includes checkpoints, previews)
  double step_seconds = 0;   ///< time spent in train_step() alone
  double step_images_per_s = 0;  ///< examples per second of train_step() alone (compute throughput)
  std::string last_checkpoint;  ///< "" if none was written
};

namespace detail {

/// SplitMix64 finaliser: well-mixed 64-bit values from (seed, stream).
inline uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline at::Generator make_cpu_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

/// key=value lines -> map (fingerprints are stored as text in checkpoints).
inline std::map<std::string, std::string> parse_fingerprint(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

}  // namespace detail

/// A checkpoint file that cannot be used because of the file itself: unreadable, truncated, not a
/// trainer checkpoint, another format, or entries missing or malformed. A checkpoint that is intact
/// but was written for a different setup is a plain Error instead (a configuration mistake, which
/// resume_latest() never skips).
class CorruptCheckpointError : public Error {
 public:
  using Error::Error;
};

namespace detail {
/// The first line of an exception's message (LibTorch's backtrace and context lines dropped).
inline std::string exception_first_line(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  std::string text = ce != nullptr ? ce->what_without_backtrace() : e.what();
  const auto nl = text.find('\n');
  return trim(nl == std::string::npos ? text : text.substr(0, nl));
}
}  // namespace detail

/// The step encoded in a checkpoint without loading the model (reads the archive).
inline int64_t checkpoint_step(const std::string& path) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const std::exception& e) {
    throw Error(detail::cat("cannot read checkpoint '", path, "': ", e.what()));
  }
  c10::IValue v;
  check(ar.try_read("step", v) && v.isInt(), "'", path, "' is not a diffuse trainer checkpoint (no step)");
  return v.toInt();
}

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
/// Not thread-safe; one train() at a time.
template <typename M>
class Trainer {
 public:
  using Module = typename M::ContainedType;

  Trainer(M model, std::shared_ptr<const Objective> objective, std::shared_ptr<const NoiseSchedule> schedule,
          Dataset data, TrainerOptions options = {}, TrainerCallbacks callbacks = {})
      : model_(std::move(model)),
        objective_(std::move(objective)),
        schedule_(std::move(schedule)),
        data_(std::move(data)),
        options_(std::move(options)),
        callbacks_(std::move(callbacks)),
        objective_gen_(detail::make_cpu_generator(detail::mix_seed(options_.seed(), 1001))),
        label_gen_(detail::make_cpu_generator(detail::mix_seed(options_.seed(), 1002))) {
    validate();
    if (options_.threads() >= 0) {
      const int64_t n = options_.threads() > 0 ? options_.threads()
                                               : std::max<int64_t>(1, std::thread::hardware_concurrency());
      at::set_num_threads(static_cast<int>(n));
    }
    bool first = true;
    for (const auto& p : model_->parameters()) {
      if (first) device_ = p.device();
      first = false;
      check(p.device() == device_, "Trainer: all model parameters must be on one device, found ", device_, " and ",
            p.device());
    }
    autocast_dtype_ = autocast_dtype_for(options_.autocast(), device_);
    data_.data = data_.data.contiguous();
    ema_ = M(std::dynamic_pointer_cast<Module>(model_->clone()));
    check(static_cast<bool>(ema_.ptr()), "Trainer: model->clone() did not return the model's own type");
    for (auto& p : ema_->parameters()) p.requires_grad_(false);
    ema_->eval();
    torch::optim::AdamWOptions ao(options_.lr());
    ao.betas(options_.betas()).eps(options_.adam_eps()).weight_decay(options_.weight_decay());
    optimizer_ = std::make_unique<torch::optim::AdamW>(model_->parameters(), ao);
    net_ = as_network(model_);
    check(static_cast<bool>(net_), "Trainer: as_network(model) returned an empty Network");
    checkpoint_dir_ = options_.checkpoint_dir();
    if (checkpoint_dir_.empty() && !options_.output_dir().empty()) {
      checkpoint_dir_ = (std::filesystem::path(options_.output_dir()) / "checkpoints").string();
    }
    fingerprint_ = make_fingerprint();
  }

  // ----- accessors
  M& model() { return model_; }
  /// The fp16 loss scale the next step will use (1 unless autocast is "fp16").
  double loss_scale() const { return autocast_dtype_ == at::kHalf ? loss_scale_ : 1.0; }
  M& ema() { return ema_; }
  const TrainerOptions& options() const { return options_; }
  const Dataset& dataset() const { return data_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  /// Optimiser steps completed.
  int64_t step() const { return step_; }
  /// Data position: the epoch and the index into its permutation of the next example.
  int64_t epoch() const { return epoch_; }
  int64_t epoch_position() const { return position_; }
  const std::string& checkpoint_dir() const { return checkpoint_dir_; }
  /// Text identifying everything that must match for a resume (options that change the
  /// trajectory, objective, schedule, dataset shape, parameter names and shapes).
  const std::string& fingerprint() const { return fingerprint_; }

  /// Asks train() to stop after the step in progress (or after the next one, if none is), writing a
  /// checkpoint for it; train() then returns StopReason::kInterrupted. Thread-safe and lock-free
  /// (std::atomic<bool>), so another thread may call it; a signal handler should rather set a
  /// std::sig_atomic_t that callbacks.should_stop reads (training/stop_signal.h). Data-parallel:
  /// the request of any rank is part of the step's all-reduce, so every rank stops after the same
  /// step (the first whose reduction saw a request); rank 0 writes the checkpoint.
  void request_stop() { stop_requested_.store(true); }

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
  void set_data_parallel(int rank, int world_size, std::function<void(std::vector<Tensor>&)> all_reduce_mean) {
    check(world_size >= 1, "Trainer::set_data_parallel: world_size must be >= 1, got ", world_size);
    check(rank >= 0 && rank < world_size, "Trainer::set_data_parallel: rank must be in [0, ", world_size, "), got ",
          rank);
    if (world_size > 1) {
      check(static_cast<bool>(all_reduce_mean), "Trainer::set_data_parallel: all_reduce_mean is empty");
      check(options_.batch_size() % (options_.grad_accum() * world_size) == 0, "TrainerOptions.batch_size (",
            options_.batch_size(), ") must be divisible by grad_accum * world_size (", options_.grad_accum(), " * ",
            world_size, ") for data-parallel training");
      check(options_.max_minutes() == 0, "TrainerOptions.max_minutes (", options_.max_minutes(),
            ") must be 0 for data-parallel training: ranks must agree on the number of steps");
    }
    dp_rank_ = rank;
    dp_world_ = world_size;
    all_reduce_mean_ = world_size > 1 ? std::move(all_reduce_mean) : nullptr;
  }
  /// This process's rank and the number of data-parallel processes (0 and 1 unless
  /// set_data_parallel was called).
  int rank() const { return dp_rank_; }
  int world_size() const { return dp_world_; }

  /// Learning rate of step s (1-based): lr * min(1, s / warmup_steps).
  double lr_at(int64_t s) const {
    if (options_.warmup_steps() <= 0) return options_.lr();
    return options_.lr() * std::min(1.0, static_cast<double>(s) / static_cast<double>(options_.warmup_steps()));
  }

  /// The example indices of the next `n` examples in data order (advances the position).
  Tensor next_indices(int64_t n) {
    const int64_t size = data_.size();
    std::vector<Tensor> parts;
    while (n > 0) {
      if (!permutation_.defined()) permutation_ = epoch_permutation(epoch_);
      const int64_t take = std::min(n, size - position_);
      parts.push_back(permutation_.narrow(0, position_, take));
      position_ += take;
      n -= take;
      if (position_ == size) {
        ++epoch_;
        position_ = 0;
        permutation_ = Tensor();
      }
    }
    return parts.size() == 1 ? parts[0] : at::cat(parts);
  }

  /// The permutation of the dataset used in epoch `e` (a pure function of seed and e).
  Tensor epoch_permutation(int64_t e) const {
    at::Generator g = detail::make_cpu_generator(detail::mix_seed(options_.seed(), 2000 + static_cast<uint64_t>(e)));
    return at::randperm(data_.size(), g, at::TensorOptions().dtype(at::kLong));
  }

  /// Replaces labels by the null id num_classes with probability label_dropout (label generator).
  Tensor drop_labels(const Tensor& labels) {
    if (!labels.defined() || options_.label_dropout() <= 0) return labels;
    Tensor u = at::empty({labels.size(0)}, at::TensorOptions().dtype(at::kDouble));
    u.uniform_(0.0, 1.0, label_gen_);
    return labels.masked_fill(u < options_.label_dropout(), data_.num_classes);
  }

  /// One optimiser step (grad_accum micro-batches). Throws diffuse::Error naming the step if the
  /// loss or the gradient norm is NaN/Inf; the trainer must then be discarded (resume from the
  /// last checkpoint, which is never written from a non-finite state).
  StepStats train_step() {
    const int64_t s = step_ + 1;
    const int64_t k = options_.grad_accum();
    const int64_t micro = options_.batch_size() / k;
    const double lr = lr_at(s);
    for (auto& group : optimizer_->param_groups()) {
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    }
    optimizer_->zero_grad();
    model_->train();
    StepStats st;
    st.step = s;
    st.total_steps = options_.steps();
    st.lr = lr;
    const int64_t local = micro / dp_world_;
    const bool scaled = autocast_dtype_ == at::kHalf;
    const bool cast = autocast_dtype_ != at::kFloat;
    st.loss_scale = scaled ? loss_scale_ : 1.0;
    for (int64_t m = 0; m < k; ++m) {
      Tensor idx = next_indices(micro);
      Batch b;
      b.x0 = data_.data.index_select(0, idx).to(device_);
      if (data_.labels.defined()) b.cond.value = drop_labels(data_.labels.index_select(0, idx)).to(device_);
      ObjectiveOutput out;
      if (dp_world_ == 1) {
        detail::AutocastGuard autocast(device_.type(), autocast_dtype_, cast);
        out = objective_->loss(net_, *schedule_, b, objective_gen_);
      } else {  // draw for the global micro-batch, evaluate this rank's slice
        ObjectiveDraw d = objective_->draw(*schedule_, b, objective_gen_);
        const int64_t from = dp_rank_ * local;
        const auto slice = [&](Tensor& t) {
          if (t.defined() && t.dim() >= 1 && t.size(0) == micro) t = t.narrow(0, from, local);
        };
        slice(b.x0);
        slice(b.cond.value);
        for (auto& kv : b.cond.extra) slice(kv.second);
        slice(d.t);
        slice(d.eps);
        for (auto& kv : d.extra) slice(kv.second);
        detail::AutocastGuard autocast(device_.type(), autocast_dtype_, cast);
        out = objective_->evaluate(net_, *schedule_, b, d);
      }
      check(out.loss.defined() && out.loss.dim() == 1 && out.loss.size(0) == local, "objective '",
            objective_->name(), "' must return a per-example loss of shape [", local, "], got ",
            out.loss.defined() ? detail::cat(out.loss.sizes()) : std::string("an undefined tensor"));
      Tensor l = out.loss.mean();
      const double lv = l.item<double>();
      if (!std::isfinite(lv)) {
        throw Error(detail::cat("loss is ", lv, " at step ", s, " (objective '", objective_->name(), "')"));
      }
      const double factor = (scaled ? loss_scale_ : 1.0) / static_cast<double>(k);
      (factor == 1.0 ? l : l * factor).backward();
      st.loss += lv / static_cast<double>(k);
      for (const auto& kv : out.terms) st.terms[kv.first] += kv.second.mean().item<double>() / static_cast<double>(k);
    }
    auto params = model_->parameters();
    if (all_reduce_mean_) reduce_across_ranks(params, st);
    if (scaled) {  // unscale after the reduction, so every rank sees the same gradients
      torch::NoGradGuard no_grad;
      for (auto& p : params)
        if (p.grad().defined()) p.mutable_grad().mul_(1.0 / loss_scale_);
    }
    // With grad_clip = 0 the cap is +inf: the gradients are unchanged and the norm is computed
    // exactly as when clipping (float, as torch::nn::utils::clip_grad_norm_ does).
    st.grad_norm = torch::nn::utils::clip_grad_norm_(
        params, options_.grad_clip() > 0 ? options_.grad_clip() : std::numeric_limits<double>::infinity());
    if (scaled) {  // dynamic loss scaling: skip non-finite steps, grow after a run of good ones
      if (!std::isfinite(st.grad_norm)) {
        st.skipped = true;
        loss_scale_ *= 0.5;
        loss_scale_good_ = 0;
        optimizer_->zero_grad();
      } else if (++loss_scale_good_ >= kLossScaleInterval) {
        loss_scale_ *= 2.0;
        loss_scale_good_ = 0;
      }
    } else if (!std::isfinite(st.grad_norm)) {
      throw Error(detail::cat("gradient norm is ", st.grad_norm, " at step ", s));
    }
    if (!st.skipped) optimizer_->step();
    st.ema_decay = ema_decay_at(options_.ema_decay(), s, options_.ema_warmup());
    ema_update(*ema_, *model_, st.ema_decay);
    step_ = s;
    st.epoch = epoch_;
    return st;
  }

  /// Trains until options.steps steps are done or the time budget runs out; writes checkpoints,
  /// the loss curve and previews as configured, and a final checkpoint.
  TrainResult train() {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const int64_t start = step_;
    TrainResult res;
    stop_agreed_ = false;
    if (dp_rank_ == 0) prepare_output();
    while (step_ < options_.steps()) {
      const auto s0 = clock::now();
      StepStats st = train_step();
      fault_point("after_step");
      res.step_seconds += std::chrono::duration<double>(clock::now() - s0).count();
      const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
      st.elapsed_s = elapsed;
      st.it_per_s = elapsed > 0 ? static_cast<double>(step_ - start) / elapsed : 0;
      st.images_per_s = st.it_per_s * static_cast<double>(options_.batch_size());
      st.eta_s = st.it_per_s > 0 ? static_cast<double>(options_.steps() - step_) / st.it_per_s : 0;
      st.progress = static_cast<double>(step_) / static_cast<double>(options_.steps());
      if (options_.max_minutes() > 0) {
        const double budget = options_.max_minutes() * 60.0;
        st.eta_s = std::min(st.eta_s, std::max(0.0, budget - elapsed));
        st.progress = std::max(st.progress, std::min(1.0, elapsed / budget));
      }
      accumulate_log(st);
      if (callbacks_.on_step) callbacks_.on_step(st);
      if (step_ % options_.log_every() == 0) flush_log(st);
      const bool out_of_time =
          options_.max_minutes() > 0 &&
          std::chrono::duration<double>(clock::now() - t0).count() >= options_.max_minutes() * 60.0;
      // A stop request: data-parallel ranks decide on the value reduced with this step's
      // statistics (all the same), a single process on its own flag, polled now.
      const bool interrupted = all_reduce_mean_ ? stop_agreed_ : stop_wanted();
      const bool last = step_ >= options_.steps() || out_of_time;
      // The last preview too comes before the checkpoint: a run killed after the final checkpoint
      // has nothing left to redo when it is resumed. An interrupted run draws only the previews
      // due anyway (so that, resumed, its folder equals an uninterrupted run's), plus a checkpoint.
      if (options_.sample_every() > 0 && (step_ % options_.sample_every() == 0 || last) && dp_rank_ == 0) {
        preview();
      }
      if (!checkpoint_dir_.empty() && dp_rank_ == 0 &&
          ((options_.checkpoint_every() > 0 && step_ % options_.checkpoint_every() == 0) || last || interrupted)) {
        res.last_checkpoint = save_checkpoint();
        write_loss_plot();  // loss.png follows the checkpoints, not only the previews
      }
      if (interrupted && !last) {
        res.reason = StopReason::kInterrupted;
        stop_requested_.store(false);  // answered
        break;
      }
      if (out_of_time) {
        res.reason = StopReason::kTimeBudget;
        break;
      }
    }
    if (dp_rank_ == 0) write_loss_plot();
    res.steps_done = step_ - start;
    res.final_step = step_;
    res.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    const double examples = static_cast<double>(res.steps_done * options_.batch_size());
    res.images_per_s = res.seconds > 0 ? examples / res.seconds : 0;
    res.step_images_per_s = res.step_seconds > 0 ? examples / res.step_seconds : 0;
    return res;
  }

  /// sample() for many images in batches of at most `chunk` (>= 1, default 250): sample i uses the
  /// seed seed + i and, for labelled data, class i % num_classes, whatever the chunking. On the CPU.
  Tensor sample_many(int64_t n, uint64_t seed, int64_t chunk = 250) {
    check(n >= 1, "Trainer::sample_many: n must be >= 1, got ", n);
    check(chunk >= 1, "Trainer::sample_many: chunk must be >= 1, got ", chunk);
    std::vector<Tensor> parts;
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t m = std::min(chunk, n - start);
      Tensor labels;
      if (data_.labels.defined()) labels = at::arange(start, start + m, at::kLong).remainder(data_.num_classes);
      parts.push_back(sample(m, seed + static_cast<uint64_t>(start), labels).cpu());
    }
    return at::cat(parts);
  }

  /// Draws n samples with the EMA model (no_grad), the objective's prediction type, the preview
  /// sampler/steps/cfg options and per-sample noise from `seed`. `labels` (int64 [n]) default to
  /// i % num_classes for labelled data. Image data ([N, C, H, W]) is clipped to [-1, 1].
  Tensor sample(int64_t n, uint64_t seed, Tensor labels = {}) {
    check(n >= 1, "Trainer::sample: n must be >= 1, got ", n);
    torch::NoGradGuard no_grad;
    ema_->eval();
    DenoiserOptions dopt;
    dopt.prediction_type = objective_->prediction_type();
    dopt.clip_sample = data_.data.dim() == 4;
    Denoiser denoiser(as_network(ema_), dopt);
    auto sampler = sampler_from_spec(options_.sampler());
    SampleOptions so;
    so.num_steps = options_.sample_steps();
    so.seed = seed;
    if (data_.labels.defined()) {
      if (!labels.defined()) labels = at::arange(n, at::kLong).remainder(data_.num_classes);
      check(labels.dim() == 1 && labels.size(0) == n, "Trainer::sample: labels must have shape [", n, "], got ",
            labels.sizes());
      so.cond.value = labels.to(device_);
      if (options_.cfg_scale() != 1.0) {
        so.guidance = make_guidance("cfg", {{"scale", format_double(options_.cfg_scale())}});
        so.uncond.value = at::full({n}, data_.num_classes, at::TensorOptions(at::kLong).device(device_));
      }
    }
    std::vector<int64_t> shape(data_.data.sizes().begin(), data_.data.sizes().end());
    shape[0] = n;
    Tensor noise = randn(shape, seed, data_.data.options().device(device_));
    return diffuse::sample(*sampler, denoiser, *schedule_, noise, so);
  }

  // ----- checkpoints

  /// Writes a checkpoint for the current step to checkpoint_dir (atomically) and prunes old ones;
  /// returns its path.
  std::string save_checkpoint() {
    check(!checkpoint_dir_.empty(), "Trainer: no checkpoint_dir (set checkpoint_dir or output_dir)");
    create_directories_or_throw(checkpoint_dir_);
    const std::string path = (std::filesystem::path(checkpoint_dir_) / checkpoint_filename(step_)).string();
    save_checkpoint(path);
    fault_point("after_checkpoint");
    prune_checkpoints(checkpoint_dir_, options_.keep_checkpoints());
    if (callbacks_.on_checkpoint) callbacks_.on_checkpoint(path, step_);
    return path;
  }

  /// Writes the full training state to `path` atomically.
  void save_checkpoint(const std::string& path) {
    torch::serialize::OutputArchive ar;
    torch::serialize::OutputArchive m, e, o;
    model_->save(m);
    ema_->save(e);
    optimizer_->save(o);
    ar.write("model", m);
    ar.write("ema", e);
    ar.write("optimizer", o);
    ar.write("format", c10::IValue(static_cast<int64_t>(kFormat)));
    ar.write("step", c10::IValue(step_));
    ar.write("epoch", c10::IValue(epoch_));
    ar.write("position", c10::IValue(position_));
    ar.write("fingerprint", c10::IValue(fingerprint_));
    ar.write("rng_objective", generator_state(objective_gen_));
    ar.write("rng_labels", generator_state(label_gen_));
    ar.write("log_window", log_window_tensor());
    ar.write("log_terms", c10::IValue(log_window_names()));
    if (autocast_dtype_ == at::kHalf) {
      ar.write("loss_scale", c10::IValue(loss_scale_));
      ar.write("loss_scale_good", c10::IValue(loss_scale_good_));
    }
    write_file_atomic(path, [&](std::ostream& os) { ar.save_to(os); });
  }

  /// Restores the state saved by save_checkpoint(path). Throws diffuse::Error if the file cannot
  /// be read or was written for a different setup (the message lists the differences).
  /// A file that is not a usable checkpoint throws CorruptCheckpointError (a subclass); then, or if
  /// entries are missing after the model was read, the trainer may be partly loaded: load another
  /// checkpoint or discard it.
  void load_checkpoint(const std::string& path) {
    torch::serialize::InputArchive ar;
    open_checkpoint(ar, path);
    c10::IValue v;
    if (!ar.try_read("fingerprint", v) || !v.isString()) {
      throw CorruptCheckpointError(detail::cat("checkpoint '", path, "' has no fingerprint (damaged?)"));
    }
    const std::string theirs = v.toStringRef();
    if (theirs != fingerprint_) {
      const auto a = detail::parse_fingerprint(theirs), b = detail::parse_fingerprint(fingerprint_);
      std::string diff;
      for (const auto& kv : b) {
        auto it = a.find(kv.first);
        const std::string old = it == a.end() ? "<missing>" : it->second;
        if (old != kv.second) diff += "\n  " + kv.first + ": checkpoint " + old + ", this run " + kv.second;
      }
      for (const auto& kv : a)
        if (!b.count(kv.first)) diff += "\n  " + kv.first + ": checkpoint " + kv.second + ", this run <missing>";
      throw Error(detail::cat("cannot resume from '", path, "': it was written for a different setup:", diff));
    }
    try {
      read_checkpoint_state(ar);
    } catch (const std::exception& ex) {
      throw CorruptCheckpointError(detail::cat("checkpoint '", path, "' is damaged: ", detail::exception_first_line(ex)));
    }
    resumed_ = true;
  }

 private:
  /// The state entries of an opened checkpoint whose fingerprint matched.
  void read_checkpoint_state(torch::serialize::InputArchive& ar) {
    c10::IValue v;
    torch::serialize::InputArchive m, e, o;
    ar.read("model", m);
    ar.read("ema", e);
    ar.read("optimizer", o);
    model_->load(m);
    ema_->load(e);
    optimizer_->load(o);
    ar.read("step", v);
    step_ = v.toInt();
    ar.read("epoch", v);
    epoch_ = v.toInt();
    ar.read("position", v);
    position_ = v.toInt();
    permutation_ = Tensor();
    // read() into a defined tensor would set_() it in place: use a fresh tensor for each.
    Tensor rng_objective, rng_labels, log_window;
    ar.read("rng_objective", rng_objective);
    set_generator_state(objective_gen_, rng_objective);
    ar.read("rng_labels", rng_labels);
    set_generator_state(label_gen_, rng_labels);
    ar.read("log_window", log_window);
    ar.read("log_terms", v);
    set_log_window(log_window, v.toStringRef());
    if (autocast_dtype_ == at::kHalf) {
      if (ar.try_read("loss_scale", v) && v.isDouble()) loss_scale_ = v.toDouble();
      if (ar.try_read("loss_scale_good", v) && v.isInt()) loss_scale_good_ = v.toInt();
    }
  }

 public:
  /// Starts a new training phase from the weights of another run (e.g. MaskDiT's unmasking
  /// fine-tune: the same DiT, the objective's mask_ratio 0, a smaller lr). Loads the model and EMA
  /// weights of the checkpoint at `path` (written by any trainer whose model has the same parameter
  /// names and shapes); optimiser state, step, data position and generators stay fresh, since the
  /// objective and optimiser settings may differ. Throws diffuse::Error naming the first mismatch.
  void initialize_from(const std::string& path) {
    torch::serialize::InputArchive ar;
    open_checkpoint(ar, path);
    c10::IValue v;
    ar.read("fingerprint", v);
    const auto theirs = detail::parse_fingerprint(v.toStringRef());
    const auto ours = detail::parse_fingerprint(fingerprint_);
    const auto shapes = [](const std::map<std::string, std::string>& f) {
      auto it = f.find("model_shapes");
      return it == f.end() ? std::string() : it->second;
    };
    check(shapes(theirs) == shapes(ours), "cannot initialise from '", path,
          "': its model has different parameter names or shapes (checkpoint model: ",
          theirs.count("model") ? theirs.at("model") : "?", ", this run: ", ours.at("model"), ")");
    torch::serialize::InputArchive m, e;
    ar.read("model", m);
    ar.read("ema", e);
    model_->load(m);
    ema_->load(e);
  }

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
  std::string resume_latest() {
    if (checkpoint_dir_.empty()) return "";
    if (dp_rank_ == 0) remove_stale_temporaries(checkpoint_dir_);
    const auto all = list_checkpoints(checkpoint_dir_);
    if (all.empty()) return "";
    std::vector<std::pair<std::string, std::string>> skipped;  // (path, reason), newest first
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      try {
        load_checkpoint(it->second);
      } catch (const CorruptCheckpointError& e) {
        skipped.emplace_back(it->second, detail::exception_first_line(e));
        continue;
      }
      for (const auto& [path, why] : skipped) {
        const std::string renamed = dp_rank_ == 0 ? set_aside(path) : std::string();
        if (dp_rank_ == 0 && callbacks_.on_checkpoint_skipped) callbacks_.on_checkpoint_skipped(path, why, renamed);
      }
      // A run killed between writing a checkpoint and pruning the old ones.
      if (dp_rank_ == 0) prune_checkpoints(checkpoint_dir_, options_.keep_checkpoints());
      return it->second;
    }
    std::string list;
    for (const auto& [path, why] : skipped) list += "\n  " + why;
    throw CorruptCheckpointError(detail::cat("none of the ", skipped.size(), " checkpoint(s) in '", checkpoint_dir_,
                                             "' can be read:", list));
  }

  /// Renames a corrupt checkpoint to <path>.corrupt (or .corrupt.N if taken); returns the new name,
  /// or "" if the rename failed.
  static std::string set_aside(const std::string& path) {
    for (int n = 0; n < 1000; ++n) {
      const std::string to = path + ".corrupt" + (n == 0 ? std::string() : "." + std::to_string(n));
      std::error_code ec;
      if (std::filesystem::exists(to, ec)) continue;
      std::filesystem::rename(path, to, ec);
      return ec ? std::string() : to;
    }
    return "";
  }

 private:
  static constexpr int64_t kFormat = 1;
  static constexpr double kInitialLossScale = 65536.0;
  static constexpr int64_t kLossScaleInterval = 2000;

  /// TrainerOptions::autocast -> the autocast dtype (kFloat for "off"); checks the device.
  static at::ScalarType autocast_dtype_for(const std::string& value, const at::Device& device) {
    if (value == "off") return at::kFloat;
    check(value == "bf16" || value == "fp16", "TrainerOptions.autocast must be off, bf16 or fp16, got '", value,
          "'");
    check(device.is_cpu() || device.is_cuda(), "TrainerOptions.autocast='", value,
          "' needs a CPU or CUDA model, the model is on ", device);
    check(value == "bf16" || device.is_cuda(), "TrainerOptions.autocast='fp16' needs a CUDA model (the model is on ",
          device, "); use bf16 on the CPU");
    return value == "bf16" ? at::kBFloat16 : at::kHalf;
  }

  /// Loads `path` into `ar` and checks that it is a trainer checkpoint of this format.
  /// Throws CorruptCheckpointError.
  static void open_checkpoint(torch::serialize::InputArchive& ar, const std::string& path) {
    try {
      ar.load_from(path);
    } catch (const std::exception& ex) {
      std::error_code ec;
      const auto size = std::filesystem::file_size(path, ec);
      throw CorruptCheckpointError(detail::cat("cannot read checkpoint '", path, "' (",
                                               ec ? std::string("unreadable") : detail::cat(size, " bytes"),
                                               "; truncated or damaged?): ", detail::exception_first_line(ex)));
    }
    c10::IValue v;
    if (!ar.try_read("format", v) || !v.isInt()) {
      throw CorruptCheckpointError(detail::cat("'", path, "' is not a diffuse trainer checkpoint"));
    }
    if (v.toInt() != kFormat) {
      throw CorruptCheckpointError(
          detail::cat("checkpoint '", path, "' has format ", v.toInt(), ", this build reads ", kFormat));
    }
  }

  /// Data-parallel: replaces the gradients and the step's loss/terms by their means over ranks.
  void reduce_across_ranks(std::vector<Tensor>& params, StepStats& st) {
    std::vector<Tensor> v;
    v.reserve(params.size() + 1);
    for (auto& p : params) {
      if (!p.requires_grad()) continue;
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      v.push_back(p.grad());
    }
    std::vector<double> stats{st.loss};
    for (const auto& kv : st.terms) stats.push_back(kv.second);
    stats.push_back(stop_wanted() ? 1.0 : 0.0);  // every rank stops after the same step
    v.push_back(at::tensor(stats, at::TensorOptions().dtype(at::kDouble)));
    const size_t n = v.size();
    all_reduce_mean_(v);
    check(v.size() == n, "Trainer: all_reduce_mean changed the number of tensors");
    size_t i = 0;
    for (auto& p : params) {
      if (!p.requires_grad()) continue;
      if (!v[i].is_same(p.grad())) p.mutable_grad() = v[i];
      ++i;
    }
    const Tensor s = v.back().to(at::kDouble).contiguous();
    auto a = s.accessor<double, 1>();
    st.loss = a[0];
    int64_t j = 1;
    for (auto& kv : st.terms) kv.second = a[j++];
    stop_agreed_ = stop_agreed_ || a[j] > 0;
  }

  /// Whether this process was asked to stop (request_stop() or callbacks.should_stop).
  bool stop_wanted() {
    if (stop_requested_.load()) return true;
    return callbacks_.should_stop && callbacks_.should_stop();
  }

  void validate() {
    const auto& o = options_;
    check(static_cast<bool>(model_.ptr()), "Trainer: the model is empty");
    check(objective_ != nullptr, "Trainer: the objective is null");
    check(schedule_ != nullptr, "Trainer: the schedule is null");
    data_.validate();
    check(o.steps() >= 1, "TrainerOptions.steps must be >= 1, got ", o.steps());
    check(o.batch_size() >= 1, "TrainerOptions.batch_size must be >= 1, got ", o.batch_size());
    check(o.grad_accum() >= 1, "TrainerOptions.grad_accum must be >= 1, got ", o.grad_accum());
    check(o.batch_size() % o.grad_accum() == 0, "TrainerOptions.batch_size (", o.batch_size(),
          ") must be divisible by grad_accum (", o.grad_accum(), ")");
    check(std::isfinite(o.lr()) && o.lr() > 0, "TrainerOptions.lr must be > 0, got ", o.lr());
    const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
    check(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1, "TrainerOptions.betas must be in [0, 1), got (", b1, ", ", b2,
          ")");
    check(o.adam_eps() > 0, "TrainerOptions.adam_eps must be > 0, got ", o.adam_eps());
    check(o.weight_decay() >= 0, "TrainerOptions.weight_decay must be >= 0, got ", o.weight_decay());
    check(o.warmup_steps() >= 0, "TrainerOptions.warmup_steps must be >= 0, got ", o.warmup_steps());
    check(o.grad_clip() >= 0, "TrainerOptions.grad_clip must be >= 0, got ", o.grad_clip());
    check(o.ema_decay() >= 0 && o.ema_decay() <= 1, "TrainerOptions.ema_decay must be in [0, 1], got ",
          o.ema_decay());
    check(o.label_dropout() >= 0 && o.label_dropout() <= 1, "TrainerOptions.label_dropout must be in [0, 1], got ",
          o.label_dropout());
    check(o.checkpoint_every() >= 0, "TrainerOptions.checkpoint_every must be >= 0, got ", o.checkpoint_every());
    check(o.keep_checkpoints() >= 0, "TrainerOptions.keep_checkpoints must be >= 0, got ", o.keep_checkpoints());
    check(o.log_every() >= 1, "TrainerOptions.log_every must be >= 1, got ", o.log_every());
    check(o.sample_every() >= 0, "TrainerOptions.sample_every must be >= 0, got ", o.sample_every());
    check(o.sample_steps() >= 1, "TrainerOptions.sample_steps must be >= 1, got ", o.sample_steps());
    check(o.sample_count() >= 1, "TrainerOptions.sample_count must be >= 1, got ", o.sample_count());
    check(o.sample_nrow() >= 1, "TrainerOptions.sample_nrow must be >= 1, got ", o.sample_nrow());
    check(std::isfinite(o.cfg_scale()), "TrainerOptions.cfg_scale must be finite, got ", o.cfg_scale());
    check(o.max_minutes() >= 0, "TrainerOptions.max_minutes must be >= 0, got ", o.max_minutes());
    if (o.sample_every() > 0) (void)sampler_from_spec(o.sampler());  // fail early on a bad spec
  }

  std::string make_fingerprint() const {
    using format_double;
    std::ostringstream os;
    const auto& o = options_;
    os << "batch_size=" << o.batch_size() << "\n"
       << "grad_accum=" << o.grad_accum() << "\n"
       << "lr=" << format_double(o.lr()) << "\n"
       << "betas=" << format_double(std::get<0>(o.betas())) << ";" << format_double(std::get<1>(o.betas())) << "\n"
       << "adam_eps=" << format_double(o.adam_eps()) << "\n"
       << "weight_decay=" << format_double(o.weight_decay()) << "\n"
       << "warmup_steps=" << o.warmup_steps() << "\n"
       << "grad_clip=" << format_double(o.grad_clip()) << "\n"
       << "ema_decay=" << format_double(o.ema_decay()) << (o.ema_warmup() ? " (warm-up)" : "") << "\n"
       << "label_dropout=" << format_double(o.label_dropout()) << "\n"
       << "seed=" << o.seed() << "\n"
       << "objective=" << objective_->name() << ":" << format_config(objective_->to_config()) << "\n"
       << "schedule=" << schedule_->name() << ":" << format_config(schedule_->to_config()) << "\n"
       << "dataset=" << data_.name << " " << data_.data.sizes() << " classes " << data_.num_classes << "\n";
    int64_t count = 0;
    std::ostringstream shapes;
    for (const auto& item : model_->named_parameters(true)) {
      shapes << item.key() << item.value().sizes() << ";";
      count += item.value().numel();
    }
    for (const auto& item : model_->named_buffers(true)) shapes << item.key() << item.value().sizes() << ";";
    os << "model=" << model_->name() << " " << count << " parameters\n"
       << "model_config=" << o.model_config() << "\n"
       << "model_shapes=" << shapes.str() << "\n";
    if (o.autocast() != "off") os << "autocast=" << o.autocast() << "\n";  // absent: old checkpoints match
    return os.str();
  }

  // ----- loss log (window averages, loss.csv, loss.png)

  void accumulate_log(const StepStats& st) {
    window_loss_ += st.loss;
    window_lr_ += st.lr;
    window_grad_ += st.grad_norm;
    for (const auto& kv : st.terms) window_terms_[kv.first] += kv.second;
    ++window_count_;
  }

  void flush_log(const StepStats& last) {
    if (window_count_ == 0) return;
    StepStats avg = last;
    const double n = static_cast<double>(window_count_);
    avg.loss = window_loss_ / n;
    avg.lr = window_lr_ / n;
    avg.grad_norm = window_grad_ / n;
    avg.terms.clear();
    for (const auto& kv : window_terms_) avg.terms[kv.first] = kv.second / n;
    window_loss_ = window_lr_ = window_grad_ = 0;
    window_count_ = 0;
    window_terms_.clear();
    if (dp_rank_ != 0) return;
    append_csv(avg);
    if (curve_steps_.size() == 1) write_loss_plot();  // loss.png exists from the first row on
    if (callbacks_.on_log) callbacks_.on_log(avg);
  }

  /// The partial log window: values [count, loss, lr, grad_norm, terms...] and the term names
  /// (one per line, in the same order).
  Tensor log_window_tensor() const {
    std::vector<double> v{static_cast<double>(window_count_), window_loss_, window_lr_, window_grad_};
    for (const auto& kv : window_terms_) v.push_back(kv.second);
    return at::tensor(v, at::TensorOptions().dtype(at::kDouble));
  }
  std::string log_window_names() const {
    std::string names;
    for (const auto& kv : window_terms_) names += kv.first + "\n";
    return names;
  }
  void set_log_window(const Tensor& t, const std::string& names) {
    check(t.dim() == 1 && t.size(0) >= 4 && t.scalar_type() == at::kDouble, "checkpoint log window is malformed");
    auto a = t.accessor<double, 1>();
    window_count_ = static_cast<int64_t>(a[0]);
    window_loss_ = a[1];
    window_lr_ = a[2];
    window_grad_ = a[3];
    window_terms_.clear();
    std::istringstream is(names);
    std::string name;
    int64_t i = 4;
    while (std::getline(is, name)) {
      check(i < t.size(0), "checkpoint log window has more term names than values");
      window_terms_[name] = a[i++];
    }
  }

  std::string csv_path() const {
    return options_.output_dir().empty() ? "" : (std::filesystem::path(options_.output_dir()) / "loss.csv").string();
  }

  /// Creates output_dir, and on resume truncates loss.csv to rows with step <= the current step
  /// (rows written after the checkpoint by the interrupted run are dropped) and reloads the curve.
  void prepare_output() {
    if (options_.output_dir().empty()) return;
    create_directories_or_throw(options_.output_dir());
    // Temporaries of loss.csv, previews or other files whose writer was killed.
    remove_stale_temporaries(options_.output_dir());
    curve_steps_.clear();
    curve_loss_.clear();
    csv_header_.clear();
    const std::string path = csv_path();
    std::ifstream in(path);
    if (!in) return;
    std::string line, kept;
    bool first = true;
    while (std::getline(in, line)) {
      if (first) {
        csv_header_ = line;
        kept += line + "\n";
        first = false;
        continue;
      }
      // A row is kept if it is complete (as many fields as the header, a final newline was
      // written before it) and not after the checkpoint; the first other row ends the file (a row
      // cut short by a kill is always the last one).
      if (std::count(line.begin(), line.end(), ',') != std::count(csv_header_.begin(), csv_header_.end(), ',')) break;
      std::istringstream ls(line);
      std::string f0, f1;
      std::getline(ls, f0, ',');
      std::getline(ls, f1, ',');
      int64_t s = 0;
      try {
        s = std::stoll(f0);
      } catch (...) {
        break;
      }
      if (s > step_) break;
      kept += line + "\n";
      curve_steps_.push_back(static_cast<double>(s));
      curve_loss_.push_back(std::stod(f1));
    }
    in.close();
    if (step_ == 0 && !resumed_) {  // a fresh run starts a fresh curve
      kept.clear();
      csv_header_.clear();
      curve_steps_.clear();
      curve_loss_.clear();
    }
    write_text_file_atomic(path, kept);
  }

  void append_csv(const StepStats& avg) {
    curve_steps_.push_back(static_cast<double>(avg.step));
    curve_loss_.push_back(avg.loss);
    const std::string path = csv_path();
    if (path.empty()) return;
    std::ofstream out(path, std::ios::app);
    check(static_cast<bool>(out), "cannot append to '", path, "'");
    if (csv_header_.empty()) {
      csv_header_ = "step,loss";
      for (const auto& kv : avg.terms) csv_header_ += "," + kv.first;
      csv_header_ += ",lr,grad_norm";
      out << csv_header_ << "\n";
    }
    std::ostringstream row;
    row << avg.step << "," << format_double(avg.loss);
    for (const auto& kv : avg.terms) row << "," << format_double(kv.second);
    row << "," << format_double(avg.lr) << "," << format_double(avg.grad_norm) << "\n";
    const std::string text = row.str();
    size_t half = 0;
    if (fault_injection_armed()) {  // tests: a row cut short by a kill
      half = text.size() / 2;
      out << text.substr(0, half);
      out.flush();
      fault_point("mid_log_append", path);
    }
    out << text.substr(half);
    out.flush();
    check(static_cast<bool>(out), "cannot append to '", path, "'");
  }

  void write_loss_plot() {
    if (options_.output_dir().empty() || curve_steps_.empty()) return;
    PlotOptions po;
    po.title = "training loss (" + objective_->name() + ")";
    po.log_y = true;
    plot_curves_png((std::filesystem::path(options_.output_dir()) / "loss.png").string(), {"loss"}, {curve_steps_},
                    {curve_loss_}, po);
  }

  void preview() {
    Tensor x = sample(options_.sample_count(), options_.seed()).cpu();
    std::string path;
    if (!options_.output_dir().empty()) {
      char name[64];
      std::snprintf(name, sizeof(name), "samples_%08lld", static_cast<long long>(step_));
      if (x.dim() == 4) {
        path = (std::filesystem::path(options_.output_dir()) / (std::string(name) + ".png")).string();
        save_image_grid(path, x.clamp(-1, 1), options_.sample_nrow());
      } else {
        path = (std::filesystem::path(options_.output_dir()) / (std::string(name) + ".csv")).string();
        Tensor flat = x.reshape({x.size(0), -1}).to(at::kDouble).contiguous();
        std::ostringstream os;
        auto a = flat.accessor<double, 2>();
        for (int64_t i = 0; i < flat.size(0); ++i) {
          for (int64_t j = 0; j < flat.size(1); ++j) os << (j ? "," : "") << format_double(a[i][j]);
          os << "\n";
        }
        write_text_file_atomic(path, os.str());
      }
    }
    write_loss_plot();
    if (callbacks_.on_sample) callbacks_.on_sample(x, path, step_);
  }

  M model_;
  M ema_{nullptr};
  std::atomic<bool> stop_requested_{false};
  bool stop_agreed_ = false;  // data-parallel: the reduced stop request of this train()
  std::shared_ptr<const Objective> objective_;
  std::shared_ptr<const NoiseSchedule> schedule_;
  Dataset data_;
  TrainerOptions options_;
  TrainerCallbacks callbacks_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  Network net_;
  at::Generator objective_gen_, label_gen_;
  std::string checkpoint_dir_, fingerprint_;
  at::Device device_ = at::kCPU;
  int64_t step_ = 0, epoch_ = 0, position_ = 0;
  Tensor permutation_;
  bool resumed_ = false;
  // mixed precision (TrainerOptions::autocast): kFloat = off
  at::ScalarType autocast_dtype_ = at::kFloat;
  double loss_scale_ = kInitialLossScale;
  int64_t loss_scale_good_ = 0;
  // data parallelism (set_data_parallel)
  int dp_rank_ = 0, dp_world_ = 1;
  std::function<void(std::vector<Tensor>&)> all_reduce_mean_;
  // log window
  int64_t window_count_ = 0;
  double window_loss_ = 0, window_lr_ = 0, window_grad_ = 0;
  std::map<std::string, double> window_terms_;
  std::vector<double> curve_steps_, curve_loss_;
  std::string csv_header_;
};

}  // namespace diffuse
