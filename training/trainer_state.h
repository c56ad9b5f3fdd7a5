// SPDX-License-Identifier: Apache-2.0
// The state of a TrainerBase (private to libdiffuse_training) and the helpers its parts share:
// trainer.cpp (construction, data order, the step, the loop), trainer_checkpoint.cpp
// (fingerprint, checkpoints, resume) and trainer_sample.cpp (previews, sample()). Reporting,
// mixed precision and data parallelism are the components loss_log.h, precision.h and
// data_parallel.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>

#include <ATen/core/Generator.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>

#include <diffuse/objective.h>
#include <diffuse/schedule.h>
#include <diffuse/training/trainer.h>

#include "data_parallel.h"
#include "loss_log.h"
#include "precision.h"

namespace diffuse {
namespace detail {

struct TrainerState {
  TrainerModel hooks;
  std::shared_ptr<torch::nn::Module> model, ema;
  std::atomic<bool> stop_requested{false};
  bool stop_agreed = false;  // data-parallel: the reduced stop request of this train()
  std::shared_ptr<const Objective> objective;
  std::shared_ptr<const NoiseSchedule> schedule;
  Dataset data;
  TrainerOptions options;
  TrainerCallbacks callbacks;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  Network net;
  at::Generator objective_gen, label_gen;
  std::string checkpoint_dir, fingerprint;
  at::Device device = at::kCPU;
  int64_t step = 0, epoch = 0, position = 0;
  Tensor permutation;
  bool resumed = false;
  LossScaler precision;  // TrainerOptions::autocast
  DataParallel dp;       // set_data_parallel
  LossLog log;           // window, loss.csv, loss.png
};

/// SplitMix64 finaliser: well-mixed 64-bit values from (seed, stream).
inline uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

at::Generator make_cpu_generator(uint64_t seed);

/// The first line of an exception's message (LibTorch's backtrace and context lines dropped).
std::string exception_first_line(const std::exception& e);

/// Whether this process was asked to stop (request_stop() or callbacks.should_stop).
bool stop_wanted(TrainerState& s);

/// Text identifying everything that must match for a resume (trainer_checkpoint.cpp).
std::string make_fingerprint(const TrainerState& s);

/// Writes loss.png (rank 0's reporting).
void write_loss_plot(const TrainerState& s);

}  // namespace detail
}  // namespace diffuse
