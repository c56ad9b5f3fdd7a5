// SPDX-License-Identifier: Apache-2.0
// The trainer's data-parallel plumbing (training/data_parallel.h).
#include "data_parallel.h"

#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include <diffuse/config.h>

namespace diffuse {
namespace detail {

void DataParallel::configure(int rank, int world_size, AllReduceMean all_reduce_mean,
                             const TrainerOptions& options) {
  check(world_size >= 1, "Trainer::set_data_parallel: world_size must be >= 1, got ", world_size);
  check(rank >= 0 && rank < world_size, "Trainer::set_data_parallel: rank must be in [0, ",
        world_size, "), got ", rank);
  if (world_size > 1) {
    check(static_cast<bool>(all_reduce_mean),
          "Trainer::set_data_parallel: all_reduce_mean is empty");
    check(options.batch_size() % (options.grad_accum() * world_size) == 0,
          "TrainerOptions.batch_size (", options.batch_size(),
          ") must be divisible by grad_accum * world_size (", options.grad_accum(), " * ",
          world_size, ") for data-parallel training");
    check(options.max_minutes() == 0, "TrainerOptions.max_minutes (", options.max_minutes(),
          ") must be 0 for data-parallel training: ranks must agree on the number of steps");
  }
  rank_ = rank;
  world_ = world_size;
  all_reduce_mean_ = world_size > 1 ? std::move(all_reduce_mean) : nullptr;
}

void DataParallel::slice(Batch& b, ObjectiveDraw& d, int64_t micro) const {
  const int64_t local = micro / world_;
  const int64_t from = rank_ * local;
  const auto narrow = [&](Tensor& t) {
    if (t.defined() && t.dim() >= 1 && t.size(0) == micro) t = t.narrow(0, from, local);
  };
  narrow(b.x0);
  narrow(b.cond.value);
  for (auto& kv : b.cond.extra) narrow(kv.second);
  narrow(d.t);
  narrow(d.eps);
  for (auto& kv : d.extra) narrow(kv.second);
}

bool DataParallel::reduce(std::vector<Tensor>& params, StepStats& st, bool stop_wanted) const {
  std::vector<Tensor> v;
  v.reserve(params.size() + 1);
  for (auto& p : params) {
    if (!p.requires_grad()) continue;
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    v.push_back(p.grad());
  }
  std::vector<double> stats{st.loss};
  for (const auto& kv : st.terms) stats.push_back(kv.second);
  stats.push_back(stop_wanted ? 1.0 : 0.0);  // every rank stops after the same step
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
  return a[j] > 0;
}

}  // namespace detail
}  // namespace diffuse
