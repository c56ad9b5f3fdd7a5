// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/distributed/sampling.h>.
#include <diffuse/training/distributed/sampling.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include <diffuse/config.h>

namespace diffuse {

std::pair<int64_t, int64_t> shard_chunks(int64_t num_chunks, int rank, int world_size) {
  check(num_chunks >= 0, "shard_chunks: num_chunks must be >= 0, got ", num_chunks);
  check(world_size >= 1, "shard_chunks: world_size must be >= 1, got ", world_size);
  check(rank >= 0 && rank < world_size, "shard_chunks: rank must be in [0, ", world_size, "), got ",
        rank);
  const int64_t base = num_chunks / world_size, extra = num_chunks % world_size;
  const int64_t first = rank * base + std::min<int64_t>(rank, extra);
  return {first, first + base + (rank < extra ? 1 : 0)};
}

std::pair<int64_t, int64_t> shard_items(int64_t num, int64_t chunk, int rank, int world_size) {
  check(num >= 0, "shard_items: num must be >= 0, got ", num);
  check(chunk >= 1, "shard_items: chunk must be >= 1, got ", chunk);
  const auto c = shard_chunks((num + chunk - 1) / chunk, rank, world_size);
  return {std::min(num, c.first * chunk), std::min(num, c.second * chunk)};
}

Tensor sample_sharded(int64_t num, int64_t chunk, int rank, int world_size,
                      const std::vector<int64_t>& item_shape, at::ScalarType dtype,
                      const std::function<Tensor(int64_t start, int64_t count)>& make,
                      const AllGatherFn& all_gather) {
  check(num >= 1, "sample_sharded: num must be >= 1, got ", num);
  check(chunk >= 1, "sample_sharded: chunk must be >= 1, got ", chunk);
  check(world_size == 1 || static_cast<bool>(all_gather), "sample_sharded: world_size ", world_size,
        " needs an all_gather function");
  std::vector<int64_t> shape{0};
  shape.insert(shape.end(), item_shape.begin(), item_shape.end());
  const auto options = at::TensorOptions().dtype(dtype);

  const auto mine = shard_items(num, chunk, rank, world_size);
  // The result is allocated once and filled chunk by chunk: the chunks and their concatenation are
  // never alive together (for a million images that halves the peak memory).
  shape[0] = mine.second - mine.first;
  Tensor local = at::empty(shape, options);
  for (int64_t start = mine.first; start < mine.second; start += chunk) {
    const int64_t count = std::min(chunk, mine.second - start);
    Tensor part = make(start, count);
    shape[0] = count;
    check(part.defined() && part.sizes().vec() == shape, "sample_sharded: make(", start, ", ",
          count, ") returned a tensor of shape ", part.defined() ? part.sizes().vec() : shape,
          ", expected ", shape);
    local.narrow(0, start - mine.first, count).copy_(part.to(at::kCPU).to(dtype));
  }
  if (world_size == 1) return local;

  // Equal shapes for the gather: pad every rank's block to the largest one; every rank knows
  // every block's size from the partition.
  int64_t largest = 0;
  std::vector<int64_t> counts;
  for (int r = 0; r < world_size; ++r) {
    const auto items = shard_items(num, chunk, r, world_size);
    counts.push_back(items.second - items.first);
    largest = std::max(largest, counts.back());
  }
  shape[0] = largest;
  Tensor padded = at::zeros(shape, options);
  if (local.size(0) > 0) padded.narrow(0, 0, local.size(0)).copy_(local);
  const std::vector<Tensor> all = all_gather(padded);
  check(static_cast<int>(all.size()) == world_size, "sample_sharded: all_gather returned ",
        all.size(), " tensors for ", world_size, " ranks");
  std::vector<Tensor> blocks;
  for (int r = 0; r < world_size; ++r)
    if (counts[static_cast<size_t>(r)] > 0)
      blocks.push_back(all[static_cast<size_t>(r)].narrow(0, 0, counts[static_cast<size_t>(r)]));
  return at::cat(blocks);
}

}  // namespace diffuse
