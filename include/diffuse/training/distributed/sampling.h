// SPDX-License-Identifier: Apache-2.0
// Sampling sharded across data-parallel ranks. The N requested items are cut into the chunks a
// single process would use (chunk c holds items [c * chunk, min(N, (c + 1) * chunk))), each rank
// makes a contiguous block of whole chunks, and the results are gathered in item order. As item i
// is made from the same inputs (seed + i, its class) in the same chunk as in a single-process run,
// the gathered result is bit-identical to that run's (LibTorch's batched kernels give the same bits
// for the same batch on the same thread count; another chunking agrees to float precision only).
// Independent of the communication library: the gather is a function (DistributedContext::
// all_gather in <diffuse/training/distributed.h>).
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include <c10/core/ScalarType.h>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here
#include <diffuse/tensor.h>

namespace diffuse {

/// The chunks [first, last) that rank `rank` of `world_size` makes out of `num_chunks`: contiguous
/// blocks in rank order whose sizes differ by at most one (the first num_chunks % world_size ranks
/// get one more). A rank may get none (first == last) when there are fewer chunks than ranks.
std::pair<int64_t, int64_t> shard_chunks(int64_t num_chunks, int rank, int world_size);

/// The items [begin, end) of rank `rank`: those of its chunks (shard_chunks) when `num` items are
/// made in chunks of `chunk` (>= 1).
std::pair<int64_t, int64_t> shard_items(int64_t num, int64_t chunk, int rank, int world_size);

/// Gathers one tensor per rank (same shape and dtype on every rank) into a vector in rank order,
/// on every rank (e.g. [&ctx](const Tensor& t) { return ctx.all_gather(t); }).
using AllGatherFn = std::function<std::vector<Tensor>(const Tensor&)>;

/// Makes `num` (>= 1) items in chunks of `chunk` (>= 1) items, `make(start, count)` returning the
/// items [start, start + count) as a tensor [count, item_shape...]; this rank makes only its chunks
/// (shard_chunks) and the full [num, item_shape...] result, in item order and of dtype `dtype`, is
/// returned on every rank. With world_size 1 (`all_gather` may then be empty) it is the plain
/// single-process loop. Every rank must call it with the same num, chunk, item_shape and dtype.
/// The result equals, bit for bit, what a single process calling `make` on every chunk returns.
Tensor sample_sharded(int64_t num, int64_t chunk, int rank, int world_size,
                      const std::vector<int64_t>& item_shape, at::ScalarType dtype,
                      const std::function<Tensor(int64_t start, int64_t count)>& make,
                      const AllGatherFn& all_gather = {});

}  // namespace diffuse
