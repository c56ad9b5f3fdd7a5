// SPDX-License-Identifier: Apache-2.0
// The trainer (declared in <diffuse/training/trainer.h>): construction, the data order, one
// optimiser step and the training loop. Checkpoints are in trainer_checkpoint.cpp, previews in
// trainer_sample.cpp, the loss log in loss_log.cpp, mixed precision in precision.cpp and the
// data-parallel reduction in data_parallel.cpp.
#include <diffuse/training/trainer.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/module.h>
#include <torch/nn/utils/clip_grad.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/sampler.h>
#include <diffuse/training/ema.h>
#include <diffuse/training/fault_injection.h>

#include "trainer_state.h"

namespace diffuse {

std::shared_ptr<const Objective> objective_for_patch(const std::string& spec, int64_t patch) {
  std::shared_ptr<const Objective> obj = objective_from_spec(spec);
  const Config cfg = obj->to_config();
  auto it = cfg.find("patch_size");
  if (it != cfg.end() && spec.find("patch_size") == std::string::npos &&
      it->second != std::to_string(patch)) {
    obj = objective_from_spec(spec + (spec.find(':') == std::string::npos ? ":" : ",") +
                              "patch_size=" + std::to_string(patch));
  }
  return obj;
}

bool is_masked_objective(const Objective& obj) { return obj.to_config().count("mask_ratio") > 0; }

namespace detail {

at::Generator make_cpu_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

std::string exception_first_line(const std::exception& e) {
  const auto* ce = dynamic_cast<const c10::Error*>(&e);
  std::string text = ce != nullptr ? ce->what_without_backtrace() : e.what();
  const auto nl = text.find('\n');
  return trim(nl == std::string::npos ? text : text.substr(0, nl));
}

bool stop_wanted(TrainerState& s) {
  if (s.stop_requested.load()) return true;
  return s.callbacks.should_stop && s.callbacks.should_stop();
}

void write_loss_plot(const TrainerState& s) {
  s.log.write_plot(s.options.output_dir(), s.objective->name());
}

}  // namespace detail

namespace {

void validate(const detail::TrainerState& s) {
  const auto& o = s.options;
  check(static_cast<bool>(s.model), "Trainer: the model is empty");
  check(s.objective != nullptr, "Trainer: the objective is null");
  check(s.schedule != nullptr, "Trainer: the schedule is null");
  s.data.validate();
  check(o.steps() >= 1, "TrainerOptions.steps must be >= 1, got ", o.steps());
  check(o.batch_size() >= 1, "TrainerOptions.batch_size must be >= 1, got ", o.batch_size());
  check(o.grad_accum() >= 1, "TrainerOptions.grad_accum must be >= 1, got ", o.grad_accum());
  check(o.batch_size() % o.grad_accum() == 0, "TrainerOptions.batch_size (", o.batch_size(),
        ") must be divisible by grad_accum (", o.grad_accum(), ")");
  check(std::isfinite(o.lr()) && o.lr() > 0, "TrainerOptions.lr must be > 0, got ", o.lr());
  const double b1 = std::get<0>(o.betas()), b2 = std::get<1>(o.betas());
  check(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1, "TrainerOptions.betas must be in [0, 1), got (", b1,
        ", ", b2, ")");
  check(o.adam_eps() > 0, "TrainerOptions.adam_eps must be > 0, got ", o.adam_eps());
  check(o.weight_decay() >= 0, "TrainerOptions.weight_decay must be >= 0, got ", o.weight_decay());
  check(o.warmup_steps() >= 0, "TrainerOptions.warmup_steps must be >= 0, got ", o.warmup_steps());
  check(o.grad_clip() >= 0, "TrainerOptions.grad_clip must be >= 0, got ", o.grad_clip());
  check(o.ema_decay() >= 0 && o.ema_decay() <= 1,
        "TrainerOptions.ema_decay must be in [0, 1], got ", o.ema_decay());
  check(o.label_dropout() >= 0 && o.label_dropout() <= 1,
        "TrainerOptions.label_dropout must be in [0, 1], got ", o.label_dropout());
  check(o.checkpoint_every() >= 0, "TrainerOptions.checkpoint_every must be >= 0, got ",
        o.checkpoint_every());
  check(o.keep_checkpoints() >= 0, "TrainerOptions.keep_checkpoints must be >= 0, got ",
        o.keep_checkpoints());
  check(o.log_every() >= 1, "TrainerOptions.log_every must be >= 1, got ", o.log_every());
  check(o.sample_every() >= 0, "TrainerOptions.sample_every must be >= 0, got ", o.sample_every());
  check(o.sample_steps() >= 1, "TrainerOptions.sample_steps must be >= 1, got ", o.sample_steps());
  check(o.sample_count() >= 1, "TrainerOptions.sample_count must be >= 1, got ", o.sample_count());
  check(o.sample_nrow() >= 1, "TrainerOptions.sample_nrow must be >= 1, got ", o.sample_nrow());
  check(std::isfinite(o.cfg_scale()), "TrainerOptions.cfg_scale must be finite, got ",
        o.cfg_scale());
  check(o.max_minutes() >= 0, "TrainerOptions.max_minutes must be >= 0, got ", o.max_minutes());
  if (o.sample_every() > 0) (void)sampler_from_spec(o.sampler());  // fail early on a bad spec
}

}  // namespace

TrainerBase::TrainerBase(detail::TrainerModel model, std::shared_ptr<const Objective> objective,
                         std::shared_ptr<const NoiseSchedule> schedule, Dataset data,
                         TrainerOptions options, TrainerCallbacks callbacks)
    : s_(std::make_unique<detail::TrainerState>()) {
  auto& s = *s_;
  s.hooks = std::move(model);
  s.model = s.hooks.module;
  s.objective = std::move(objective);
  s.schedule = std::move(schedule);
  s.data = std::move(data);
  s.options = std::move(options);
  s.callbacks = std::move(callbacks);
  s.objective_gen = detail::make_cpu_generator(detail::mix_seed(s.options.seed(), 1001));
  s.label_gen = detail::make_cpu_generator(detail::mix_seed(s.options.seed(), 1002));
  validate(s);
  if (s.options.threads() >= 0) {
    const int64_t n = s.options.threads() > 0
                          ? s.options.threads()
                          : std::max<int64_t>(1, std::thread::hardware_concurrency());
    at::set_num_threads(static_cast<int>(n));
  }
  bool first = true;
  for (const auto& p : s.model->parameters()) {
    if (first) s.device = p.device();
    first = false;
    check(p.device() == s.device, "Trainer: all model parameters must be on one device, found ",
          s.device, " and ", p.device());
  }
  s.precision = detail::LossScaler(detail::autocast_dtype_for(s.options.autocast(), s.device));
  s.data.data = s.data.data.contiguous();
  s.ema = s.model->clone();
  check(s.ema != nullptr && s.hooks.own_type(s.ema),
        "Trainer: model->clone() did not return the model's own type");
  for (auto& p : s.ema->parameters()) p.requires_grad_(false);
  s.ema->eval();
  torch::optim::AdamWOptions ao(s.options.lr());
  ao.betas(s.options.betas()).eps(s.options.adam_eps()).weight_decay(s.options.weight_decay());
  s.optimizer = std::make_unique<torch::optim::AdamW>(s.model->parameters(), ao);
  s.net = s.hooks.network(s.model);
  check(static_cast<bool>(s.net), "Trainer: as_network(model) returned an empty Network");
  s.checkpoint_dir = s.options.checkpoint_dir();
  if (s.checkpoint_dir.empty() && !s.options.output_dir().empty()) {
    s.checkpoint_dir = (std::filesystem::path(s.options.output_dir()) / "checkpoints").string();
  }
  s.fingerprint = detail::make_fingerprint(s);
}

TrainerBase::~TrainerBase() = default;

double TrainerBase::loss_scale() const { return s_->precision.scale(); }
const TrainerOptions& TrainerBase::options() const { return s_->options; }
const Dataset& TrainerBase::dataset() const { return s_->data; }
torch::optim::AdamW& TrainerBase::optimizer() { return *s_->optimizer; }
int64_t TrainerBase::step() const { return s_->step; }
int64_t TrainerBase::epoch() const { return s_->epoch; }
int64_t TrainerBase::epoch_position() const { return s_->position; }
const std::string& TrainerBase::checkpoint_dir() const { return s_->checkpoint_dir; }
const std::string& TrainerBase::fingerprint() const { return s_->fingerprint; }
const std::shared_ptr<torch::nn::Module>& TrainerBase::ema_module() const { return s_->ema; }
void TrainerBase::request_stop() { s_->stop_requested.store(true); }
int TrainerBase::rank() const { return s_->dp.rank(); }
int TrainerBase::world_size() const { return s_->dp.world_size(); }

void TrainerBase::set_data_parallel(int rank, int world_size,
                                    std::function<void(std::vector<Tensor>&)> all_reduce_mean) {
  s_->dp.configure(rank, world_size, std::move(all_reduce_mean), s_->options);
}

double TrainerBase::lr_at(int64_t s) const {
  const auto& o = s_->options;
  if (o.warmup_steps() <= 0) return o.lr();
  return o.lr() * std::min(1.0, static_cast<double>(s) / static_cast<double>(o.warmup_steps()));
}

Tensor TrainerBase::next_indices(int64_t n) {
  auto& s = *s_;
  const int64_t size = s.data.size();
  std::vector<Tensor> parts;
  while (n > 0) {
    if (!s.permutation.defined()) s.permutation = epoch_permutation(s.epoch);
    const int64_t take = std::min(n, size - s.position);
    parts.push_back(s.permutation.narrow(0, s.position, take));
    s.position += take;
    n -= take;
    if (s.position == size) {
      ++s.epoch;
      s.position = 0;
      s.permutation = Tensor();
    }
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts);
}

Tensor TrainerBase::epoch_permutation(int64_t e) const {
  at::Generator g = detail::make_cpu_generator(
      detail::mix_seed(s_->options.seed(), 2000 + static_cast<uint64_t>(e)));
  return at::randperm(s_->data.size(), g, at::TensorOptions().dtype(at::kLong));
}

Tensor TrainerBase::drop_labels(const Tensor& labels) {
  auto& s = *s_;
  if (!labels.defined() || s.options.label_dropout() <= 0) return labels;
  Tensor u = at::empty({labels.size(0)}, at::TensorOptions().dtype(at::kDouble));
  u.uniform_(0.0, 1.0, s.label_gen);
  return labels.masked_fill(u < s.options.label_dropout(), s.data.num_classes);
}

StepStats TrainerBase::train_step() {
  auto& s = *s_;
  const int64_t step = s.step + 1;
  const int64_t k = s.options.grad_accum();
  const int64_t micro = s.options.batch_size() / k;
  const double lr = lr_at(step);
  for (auto& group : s.optimizer->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
  s.optimizer->zero_grad();
  s.model->train();
  StepStats st;
  st.step = step;
  st.total_steps = s.options.steps();
  st.lr = lr;
  const int64_t local = micro / s.dp.world_size();
  const bool scaled = s.precision.scaled();
  st.loss_scale = s.precision.scale();
  for (int64_t m = 0; m < k; ++m) {
    Tensor idx = next_indices(micro);
    Batch b;
    b.x0 = s.data.data.index_select(0, idx).to(s.device);
    if (s.data.labels.defined())
      b.cond.value = drop_labels(s.data.labels.index_select(0, idx)).to(s.device);
    ObjectiveOutput out;
    if (s.dp.world_size() == 1) {
      detail::AutocastGuard autocast(s.device.type(), s.precision.dtype(), s.precision.autocast());
      out = s.objective->loss(s.net, *s.schedule, b, s.objective_gen);
    } else {  // draw for the global micro-batch, evaluate this rank's slice
      ObjectiveDraw d = s.objective->draw(*s.schedule, b, s.objective_gen);
      s.dp.slice(b, d, micro);
      detail::AutocastGuard autocast(s.device.type(), s.precision.dtype(), s.precision.autocast());
      out = s.objective->evaluate(s.net, *s.schedule, b, d);
    }
    check(out.loss.defined() && out.loss.dim() == 1 && out.loss.size(0) == local, "objective '",
          s.objective->name(), "' must return a per-example loss of shape [", local, "], got ",
          out.loss.defined() ? detail::cat(out.loss.sizes()) : std::string("an undefined tensor"));
    Tensor l = out.loss.mean();
    const double lv = l.item<double>();
    if (!std::isfinite(lv)) {
      throw NumericalError(detail::cat("loss is ", lv, " at step ", step, " (objective '",
                                       s.objective->name(), "')"));
    }
    const double factor = s.precision.scale() / static_cast<double>(k);
    (factor == 1.0 ? l : l * factor).backward();
    st.loss += lv / static_cast<double>(k);
    for (const auto& kv : out.terms)
      st.terms[kv.first] += kv.second.mean().item<double>() / static_cast<double>(k);
  }
  auto params = s.model->parameters();
  if (s.dp.active())
    s.stop_agreed = s.dp.reduce(params, st, detail::stop_wanted(s)) || s.stop_agreed;
  if (scaled)
    s.precision.unscale(params);  // after the reduction, so every rank sees the same gradients
  // With grad_clip = 0 the cap is +inf: the gradients are unchanged and the norm is computed
  // exactly as when clipping (float, as torch::nn::utils::clip_grad_norm_ does).
  st.grad_norm = torch::nn::utils::clip_grad_norm_(
      params,
      s.options.grad_clip() > 0 ? s.options.grad_clip() : std::numeric_limits<double>::infinity());
  if (scaled) {  // dynamic loss scaling: skip non-finite steps, grow after a run of good ones
    st.skipped = s.precision.update(st.grad_norm);
    if (st.skipped) s.optimizer->zero_grad();
  } else if (!std::isfinite(st.grad_norm)) {
    throw NumericalError(detail::cat("gradient norm is ", st.grad_norm, " at step ", step));
  }
  if (!st.skipped) s.optimizer->step();
  st.ema_decay = ema_decay_at(s.options.ema_decay(), step, s.options.ema_warmup());
  ema_update(*s.ema, *s.model, st.ema_decay);
  s.step = step;
  st.epoch = s.epoch;
  return st;
}

TrainResult TrainerBase::train() {
  using clock = std::chrono::steady_clock;
  auto& s = *s_;
  const auto& o = s.options;
  const auto t0 = clock::now();
  const int64_t start = s.step;
  const bool rank0 = s.dp.rank() == 0;
  TrainResult res;
  s.stop_agreed = false;
  if (rank0) s.log.prepare(o.output_dir(), s.step, s.resumed);
  while (s.step < o.steps()) {
    const auto s0 = clock::now();
    StepStats st = train_step();
    fault_point("after_step");
    res.step_seconds += std::chrono::duration<double>(clock::now() - s0).count();
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    st.elapsed_s = elapsed;
    st.it_per_s = elapsed > 0 ? static_cast<double>(s.step - start) / elapsed : 0;
    st.images_per_s = st.it_per_s * static_cast<double>(o.batch_size());
    st.eta_s = st.it_per_s > 0 ? static_cast<double>(o.steps() - s.step) / st.it_per_s : 0;
    st.progress = static_cast<double>(s.step) / static_cast<double>(o.steps());
    if (o.max_minutes() > 0) {
      const double budget = o.max_minutes() * 60.0;
      st.eta_s = std::min(st.eta_s, std::max(0.0, budget - elapsed));
      st.progress = std::max(st.progress, std::min(1.0, elapsed / budget));
    }
    s.log.accumulate(st);
    if (s.callbacks.on_step) s.callbacks.on_step(st);
    if (s.step % o.log_every() == 0) {
      const auto avg = s.log.flush(st);
      if (avg && rank0) {
        s.log.append(o.output_dir(), *avg);
        if (s.log.rows() == 1) detail::write_loss_plot(s);  // loss.png exists from the first row on
        if (s.callbacks.on_log) s.callbacks.on_log(*avg);
      }
    }
    const bool out_of_time =
        o.max_minutes() > 0 &&
        std::chrono::duration<double>(clock::now() - t0).count() >= o.max_minutes() * 60.0;
    // A stop request: data-parallel ranks decide on the value reduced with this step's
    // statistics (all the same), a single process on its own flag, polled now.
    const bool interrupted = s.dp.active() ? s.stop_agreed : detail::stop_wanted(s);
    const bool last = s.step >= o.steps() || out_of_time;
    // The last preview too comes before the checkpoint: a run killed after the final checkpoint
    // has nothing left to redo when it is resumed. An interrupted run draws only the previews
    // due anyway (so that, resumed, its folder equals an uninterrupted run's), plus a checkpoint.
    if (o.sample_every() > 0 && (s.step % o.sample_every() == 0 || last) && rank0) preview();
    if (!s.checkpoint_dir.empty() && rank0 &&
        ((o.checkpoint_every() > 0 && s.step % o.checkpoint_every() == 0) || last || interrupted)) {
      res.last_checkpoint = save_checkpoint();
      detail::write_loss_plot(s);  // loss.png follows the checkpoints, not only the previews
    }
    if (interrupted && !last) {
      res.reason = StopReason::kInterrupted;
      s.stop_requested.store(false);  // answered
      break;
    }
    if (out_of_time) {
      res.reason = StopReason::kTimeBudget;
      break;
    }
  }
  if (rank0) detail::write_loss_plot(s);
  res.steps_done = s.step - start;
  res.final_step = s.step;
  res.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  const double examples = static_cast<double>(res.steps_done * o.batch_size());
  res.images_per_s = res.seconds > 0 ? examples / res.seconds : 0;
  res.step_images_per_s = res.step_seconds > 0 ? examples / res.step_seconds : 0;
  return res;
}

}  // namespace diffuse
