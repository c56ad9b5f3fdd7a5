// SPDX-License-Identifier: Apache-2.0
// The trainer's data-parallel plumbing (private to libdiffuse_training; see
// TrainerBase::set_data_parallel for the contract): the rank, the world size, slicing the global
// micro-batch and the per-step reduction of gradients and statistics. Independent of any
// communication library (training/distributed.h supplies all_reduce_mean).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <diffuse/objective.h>
#include <diffuse/tensor.h>
#include <diffuse/training/trainer.h>

namespace diffuse {
namespace detail {

class DataParallel {
 public:
  using AllReduceMean = std::function<void(std::vector<Tensor>&)>;

  /// Checks and stores the setup (errors as documented at TrainerBase::set_data_parallel).
  void configure(int rank, int world_size, AllReduceMean all_reduce_mean,
                 const TrainerOptions& options);

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  /// Whether a reduction runs every step (world_size > 1).
  bool active() const { return static_cast<bool>(all_reduce_mean_); }

  /// Narrows the global micro-batch `b` (of `micro` examples) and its draws `d` to this rank's
  /// slice.
  void slice(Batch& b, ObjectiveDraw& d, int64_t micro) const;

  /// Replaces the gradients of `params` and the step's loss/terms by their means over ranks;
  /// returns whether any rank asked to stop (`stop_wanted`: this rank's request).
  bool reduce(std::vector<Tensor>& params, StepStats& st, bool stop_wanted) const;

 private:
  int rank_ = 0, world_ = 1;
  AllReduceMean all_reduce_mean_;
};

}  // namespace detail
}  // namespace diffuse
