// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/brownian.h>.
#include <diffuse/brownian.h>

#include <algorithm>
#include <cmath>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/noise.h>

namespace diffuse {

namespace {

uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr int kMaxDepth = 60;

}  // namespace

BrownianTree::BrownianTree(std::vector<uint64_t> seeds, std::vector<int64_t> sample_shape,
                           double lo, double hi, double tol)
    : seeds_(std::move(seeds)), shape_(std::move(sample_shape)), lo_(lo), hi_(hi), tol_(tol) {
  check(!seeds_.empty(), "BrownianTree: needs at least one seed (batch element)");
  check(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
        "BrownianTree: the interval must be finite with lo < hi, got [", lo, ", ", hi, "]");
  check(tol > 0 && tol < 0.5, "BrownianTree: tol must be in (0, 0.5), got ", tol);
}

Tensor BrownianTree::node_draw(size_t sample, uint64_t node) const {
  const uint64_t seed = splitmix64(seeds_[sample] ^ splitmix64(node));
  at::Generator g = detail::cpu_generator(seed);
  return at::randn(shape_, g, at::TensorOptions().dtype(at::kDouble));
}

Tensor BrownianTree::value(size_t sample, double t) const {
  t = std::min(std::max(t, lo_), hi_);
  if (t == lo_) return at::zeros(shape_, at::TensorOptions().dtype(at::kDouble));
  // Brackets are numbered as in a binary heap (the root [lo, hi] is 1, the halves of bracket k are
  // 2k and 2k + 1); bracket k draws its midpoint under key 2k, and W(hi) under key 1.
  double a = lo_, b = hi_;
  Tensor wa = at::zeros(shape_, at::TensorOptions().dtype(at::kDouble));
  Tensor wb = node_draw(sample, 1).mul_(std::sqrt(hi_ - lo_));
  if (t == hi_) return wb;
  const double width = tol_ * (hi_ - lo_);
  uint64_t node = 1;
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    const double m = 0.5 * (a + b);
    const uint64_t child = 2 * node;  // this bracket's midpoint node
    Tensor wm = (wa + wb).mul_(0.5).add_(node_draw(sample, child), std::sqrt(0.25 * (b - a)));
    if (std::abs(t - m) <= 0.5 * width || b - a <= width) return wm;
    if (t < m) {
      b = m;
      wb = std::move(wm);
      node = child;
    } else {
      a = m;
      wa = std::move(wm);
      node = child + 1;
    }
  }
  // The bracket is below double resolution: the bridge mean.
  const double w = (t - a) / (b - a);
  return wa.mul_(1 - w).add_(wb, w);
}

Tensor BrownianTree::increment(double a, double b, const c10::TensorOptions& options) const {
  std::vector<Tensor> per_sample;
  per_sample.reserve(seeds_.size());
  for (size_t i = 0; i < seeds_.size(); ++i) per_sample.push_back(value(i, b) - value(i, a));
  return at::stack(per_sample).to(options);
}

Tensor BrownianTree::normalized(double a, double b, const c10::TensorOptions& options) const {
  check(a != b, "BrownianTree: a normalised increment needs a != b, got ", a, " twice");
  std::vector<Tensor> per_sample;
  const double scale = 1.0 / std::sqrt(std::abs(b - a));
  for (size_t i = 0; i < seeds_.size(); ++i)
    per_sample.push_back((value(i, b) - value(i, a)).mul_(scale));
  return at::stack(per_sample).to(options);
}

}  // namespace diffuse
