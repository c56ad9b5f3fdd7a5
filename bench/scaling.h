// SPDX-License-Identifier: Apache-2.0
// The scaling measurements shared by bench/scaling.cpp and `diffuse bench --suite scaling`
// (bench/suites.h): sampling time and memory vs batch size and resolution, training images/s vs
// batch size. Sampling goes through diffuse::sample() with a TimedNetwork (timing.h); training
// steps and the exact tensor-memory accounting are training_step.h's.
#pragma once

#include <diffuse/training/dit.h>
#include <diffuse/training/model_file.h>

#include "timing.h"
#include "training_step.h"

#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace diffuse::bench {

/// A network to sample from, with what a Denoiser and sample() need.
struct SamplingModel {
  std::string name;         ///< short name used in case names and CSVs
  std::string description;  ///< one line: architecture, tokens, parameters
  Network network;
  DenoiserOptions denoiser;
  std::shared_ptr<NoiseSchedule> schedule;
  std::vector<int64_t> sample_shape;  ///< [C, H, W]
  int64_t resolution = 0;             ///< H (= W)
  int64_t tokens = 0;                 ///< patch tokens per image
  int64_t parameters = 0;
  double gmac = 0;  ///< multiply-accumulates of one forward pass per image, in 1e9
};

/// Multiply-accumulates of one DiT forward pass for one image, counted as DiT's paper does (its
/// "Gflops" are fvcore MAC counts; DiT-S/2 at 32x32x4 gives 6.06e9): per block and token the qkv,
/// output and MLP projections (4 + 2 mlp_ratio) d^2, per block 2 N^2 d for the attention products,
/// plus the patch embedding and final projection (2 p^2 C d per token) and the MaskDiT decoder's
/// blocks when present. The per-image adaLN and embedding MLPs (independent of N) are left out.
inline double dit_forward_macs(const DiTOptions& o) {
  const double p = static_cast<double>(o.patch_size()), c = static_cast<double>(o.in_channels());
  const double n = std::pow(static_cast<double>(o.input_size()) / p, 2);
  auto blocks = [&](double d, double depth) {
    return depth * (n * (4.0 + 2.0 * o.mlp_ratio()) * d * d + 2.0 * n * n * d);
  };
  const double d = static_cast<double>(o.hidden_size());
  double macs = blocks(d, static_cast<double>(o.depth())) + 2.0 * n * p * p * c * d;
  if (o.decoder_depth() > 0) {
    const double dd = static_cast<double>(o.decoder_hidden_size());
    macs += blocks(dd, static_cast<double>(o.decoder_depth())) + n * d * dd;
  }
  return macs;
}

/// The DiT of the resolution sweep: the library's "mini" size (d 128, depth 6, 4 heads) with patch
/// 2 on resolution x resolution x 4 inputs (a latent-like shape), unconditional.
inline DiTOptions scaling_dit_options(int64_t resolution) {
  return dit_preset("mini", resolution, 4).patch_size(2);
}

/// A randomly initialised (seed 0) scaling_dit_options(resolution) DiT in eval mode, epsilon
/// prediction, `discrete` schedule. Timing does not depend on the weights' values.
inline SamplingModel scaling_dit(int64_t resolution) {
  const DiTOptions o = scaling_dit_options(resolution);
  torch::manual_seed(0);
  DiT model(o);
  model->eval();
  SamplingModel m;
  m.name = "dit_mini2_" + std::to_string(resolution);
  m.network = as_network(model);
  m.schedule = make_schedule("discrete");
  m.sample_shape = {o.in_channels(), resolution, resolution};
  m.resolution = resolution;
  m.tokens = model->num_tokens();
  for (const auto& t : model->parameters()) m.parameters += t.numel();
  m.gmac = dit_forward_macs(o) / 1e9;
  m.description = "DiT mini (d 128 x 6, 4 heads), patch 2, " + std::to_string(resolution) + "x" +
                  std::to_string(resolution) + "x4 (" + std::to_string(m.tokens) + " tokens), " +
                  std::to_string(m.parameters) + " parameters, random weights";
  return m;
}

/// The shipped Fashion-MNIST model (training/assets/fashion_mnist_dit.pt: DiT tiny, patch 4 on
/// 28x28x1, 49 tokens), sampled unconditionally (null class), with its card's schedule and
/// clipping.
inline SamplingModel shipped_model() {
  LoadedModel lm = load_model(default_model_path());
  SamplingModel m;
  m.name = "shipped_fmnist_28";
  m.network = lm.network;
  m.denoiser = lm.denoiser_options();
  m.schedule = lm.make_schedule();
  m.sample_shape = lm.card.sample_shape;
  m.resolution = m.sample_shape.size() == 3 ? m.sample_shape[1] : 0;
  if (lm.dit) {
    (*lm.dit)->eval();
    m.tokens = (*lm.dit)->num_tokens();
    for (const auto& t : (*lm.dit)->parameters()) m.parameters += t.numel();
    m.gmac = dit_forward_macs((*lm.dit)->options) / 1e9;
  }
  m.description = "the shipped Fashion-MNIST DiT (tiny: d 64 x 4, patch 4, 28x28x1, " +
                  std::to_string(m.tokens) + " tokens, " + std::to_string(m.parameters) +
                  " parameters), unconditional";
  return m;
}

/// What measure_sampling() measured for one batch size. The rates are computed from CPU time
/// (timing.h cpu_seconds(): with one intra-op thread, the compute a dedicated core needs; on a
/// shared machine wall time also counts waiting for a core).
struct SamplingScale {
  int64_t batch = 0, steps = 0;
  double cpu_seconds = 0;      ///< the least CPU time of a run of `steps` steps (whole sample())
  double seconds = 0;          ///< the least wall time of a run
  double network_seconds = 0;  ///< wall time inside the network in that fastest run
  int64_t peak_bytes = 0;      ///< highest live tensor bytes during a run minus those at its start
  int64_t repetitions = 0;
  double ms_per_step() const { return cpu_seconds / static_cast<double>(steps) * 1e3; }
  double wall_ms_per_step() const { return seconds / static_cast<double>(steps) * 1e3; }
  double images_per_second() const { return static_cast<double>(batch) / cpu_seconds; }
  /// CPU time per image of the whole `steps`-step sample, ms.
  double ms_per_image() const { return cpu_seconds / static_cast<double>(batch) * 1e3; }
  double network_share() const { return network_seconds / seconds; }
};

/// Times diffuse::sample() with the deterministic `ddim` sampler (eta 0, default spacing, `steps`
/// steps) on a float32 CPU batch of `batch` noise images, without autograd; one warm-up run, then
/// runs repeated for at least `min_time` seconds and at least `at_least` times; the least CPU and
/// the least wall time are reported. Peak memory is exact tensor memory from the allocators'
/// reports (training_step.h's PeakMemory; complete with one intra-op thread) and does not count the
/// model or the noise batch, which are live before the run starts.
inline SamplingScale measure_sampling(const SamplingModel& m, int64_t batch, int64_t steps,
                                      double min_time, int64_t at_least) {
  check(batch >= 1 && steps >= 1, "measure_sampling: batch and steps must be >= 1, got ", batch,
        " and ", steps);
  torch::NoGradGuard no_grad;
  auto mem = std::make_shared<PeakMemory>(c10::DeviceType::CPU);
  c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, mem);
  std::vector<int64_t> shape{batch};
  shape.insert(shape.end(), m.sample_shape.begin(), m.sample_shape.end());
  const Tensor noise = randn(shape, 0, at::TensorOptions().dtype(at::kFloat));
  TimedNetwork timer;
  const Denoiser denoiser(timer.wrap(m.network), m.denoiser);
  auto sampler = make_sampler("ddim");
  timed_sample(*sampler, *m.schedule, timer, denoiser, noise, steps, 0);  // warm-up
  SamplingScale s;
  s.batch = batch;
  s.steps = steps;
  s.seconds = 1e30;
  s.cpu_seconds = 1e30;
  uint64_t seed = 1;
  s.repetitions = detail::repeat_for(min_time, at_least, 100000, [&] {
    const int64_t base = mem->live();
    mem->reset_peak();
    const RunTime r = timed_sample(*sampler, *m.schedule, timer, denoiser, noise, steps, seed++);
    s.peak_bytes = std::max(s.peak_bytes, mem->peak() - base);
    s.cpu_seconds = std::min(s.cpu_seconds, r.cpu);
    if (r.total < s.seconds) {
      s.seconds = r.total;
      s.network_seconds = r.network;
    }
  });
  return s;
}

/// The shipped model's training configuration (DiT tiny, patch 4 on 28x28x1, 10 classes, no
/// decoder; trained with batch 64), as a training_step.h config.
inline TrainingConfig shipped_training_config() {
  return {"tiny28",
          "DiT tiny (the shipped model's architecture): 28x28x1, patch 4 (49 tokens), d 64 x 4, "
          "10 classes",
          dit_preset("tiny", 28, 1).patch_size(4).num_classes(10), 64};
}

/// The training configurations of the batch sweep: the shipped model's and training_step.h's
/// Fashion-MNIST MaskDiT (patch 2, 196 tokens, encoder 128 x 6 + decoder 64 x 2), unmasked.
inline std::vector<TrainingConfig> scaling_training_configs() {
  return {shipped_training_config(), training_configs().front()};
}

/// What measure_training() measured for one batch size.
struct TrainingScale {
  int64_t batch = 0;
  double cpu_seconds = 0;  ///< least CPU time of a step (forward, loss, backward, AdamW)
  double seconds = 0;      ///< median wall time of a step
  int64_t peak_bytes = 0;  ///< highest step peak (activations and temporaries)
  int64_t repetitions = 0;
  int64_t parameters = 0;
  double images_per_second() const { return static_cast<double>(batch) / cpu_seconds; }
};

/// Times unmasked training steps of `cfg` at `batch` with training_step.h's TrainingBench: one
/// warm-up step, then steps for at least `min_time` seconds and at least `at_least` times; the
/// least CPU time of a step (rates use it), the median wall time and the largest step peak of
/// tensor memory.
inline TrainingScale measure_training(const TrainingConfig& cfg, int64_t batch, double min_time,
                                      int64_t at_least) {
  check(batch >= 1, "measure_training: batch must be >= 1, got ", batch);
  auto mem = std::make_shared<PeakMemory>(c10::DeviceType::CPU);
  c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, mem);
  TrainingBench tb(cfg, batch, mem, at::Device(at::kCPU));
  tb.step(false);  // warm-up: gradients and AdamW state
  std::vector<double> times;
  TrainingScale s;
  s.batch = batch;
  s.cpu_seconds = 1e30;
  s.repetitions = detail::repeat_for(min_time, at_least, 100000, [&] {
    const TrainingBench::Step st = tb.step(false);
    times.push_back(st.seconds);
    s.cpu_seconds = std::min(s.cpu_seconds, st.cpu_seconds);
    s.peak_bytes = std::max(s.peak_bytes, st.step_peak);
  });
  s.seconds = median_of(times);
  s.parameters = tb.parameters();
  return s;
}

}  // namespace diffuse::bench
