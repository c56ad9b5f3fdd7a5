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
constexpr size_t kMaxCachedNodes = 4096;  // per sample
constexpr size_t kMaxCachedPoints = 256;

}  // namespace

BrownianTree::BrownianTree(std::vector<uint64_t> seeds, std::vector<int64_t> sample_shape,
                           double lo, double hi, double tol)
    : seeds_(std::move(seeds)),
      shape_(std::move(sample_shape)),
      lo_(lo),
      hi_(hi),
      tol_(tol),
      nodes_(seeds_.size()),
      points_(seeds_.size()) {
  check(!seeds_.empty(), "BrownianTree: needs at least one seed (batch element)");
  check(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
        "BrownianTree: the interval must be finite with lo < hi, got [", lo, ", ", hi, "]");
  check(tol > 0 && tol < 0.5, "BrownianTree: tol must be in (0, 0.5), got ", tol);
}

Tensor BrownianTree::node_value(size_t sample, uint64_t key, const Tensor& wa, const Tensor& wb,
                                double width) const {
  auto& cache = nodes_[sample];
  const auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxCachedNodes) cache.clear();
  at::Generator g = detail::cpu_generator(splitmix64(seeds_[sample] ^ splitmix64(key)));
  Tensor z = at::randn(shape_, g, at::TensorOptions().dtype(at::kDouble));
  // W(hi) (key 1) ~ N(0, width); a midpoint ~ N((W(a) + W(b)) / 2, width / 4).
  Tensor w =
      key == 1 ? z.mul_(std::sqrt(width)) : (wa + wb).mul_(0.5).add_(z, 0.5 * std::sqrt(width));
  cache.emplace(key, w);
  return w;
}

Tensor BrownianTree::value(size_t sample, double t) const {
  t = std::min(std::max(t, lo_), hi_);
  auto& memo = points_[sample];
  const auto hit = memo.find(t);
  if (hit != memo.end()) return hit->second;
  if (memo.size() >= kMaxCachedPoints) memo.clear();
  const Tensor zero = at::zeros(shape_, at::TensorOptions().dtype(at::kDouble));
  // Brackets are numbered as in a binary heap (the root [lo, hi] is 1, the halves of bracket k are
  // 2k and 2k + 1); bracket k draws its midpoint under key 2k, and W(hi) under key 1.
  double a = lo_, b = hi_;
  Tensor wa = zero;
  Tensor wb = node_value(sample, 1, zero, zero, hi_ - lo_);
  Tensor out;
  if (t == lo_) {
    out = zero;
  } else if (t == hi_) {
    out = wb;
  } else {
    const double width = tol_ * (hi_ - lo_);
    uint64_t node = 1;
    for (int depth = 0; depth < kMaxDepth && !out.defined(); ++depth) {
      const double m = 0.5 * (a + b);
      Tensor wm = node_value(sample, 2 * node, wa, wb, b - a);
      if (std::abs(t - m) <= 0.5 * width || b - a <= width) {
        out = wm;
      } else if (t < m) {
        b = m;
        wb = wm;
        node = 2 * node;
      } else {
        a = m;
        wa = wm;
        node = 2 * node + 1;
      }
    }
    if (!out.defined()) {  // the bracket is below double resolution: the bridge mean
      const double w = (t - a) / (b - a);
      out = wa * (1 - w) + wb * w;
    }
  }
  memo.emplace(t, out);
  return out;
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
