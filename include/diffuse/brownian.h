// SPDX-License-Identifier: Apache-2.0
// A seeded Brownian motion on an interval, built lazily by bisection (a Brownian tree): W(lo) = 0,
// W(hi) ~ N(0, hi - lo), and each midpoint of a known pair (a, b) is the Brownian-bridge draw
// (W(a) + W(b)) / 2 + sqrt((b - a) / 4) z with z from a generator seeded by the sample's seed and
// the node's place in the tree. A value at t is the node nearest t once the bracket is narrower
// than tol (hi - lo) (the bridge mean between the last two nodes). So the path is fixed by the
// seeds and the interval alone: querying it at other times (another step count) or in another order
// sees the same path, and each batch element has its own seed, so its path does not depend on the
// batch size. The SDE samplers (dpmpp_sde, dpmpp_3m_sde) use it for their noise as k-diffusion's
// BrownianTreeNoiseSampler does (k-diffusion uses torchsde's tree; the paths are not the same
// numbers, only the same kind of process).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include <diffuse/tensor.h>

namespace diffuse {

class BrownianTree {
 public:
  /// One path per seed (batch element); each sample shaped `sample_shape`; values in double on
  /// the CPU, cast by increment(). lo < hi, finite; tol in (0, 0.5).
  BrownianTree(std::vector<uint64_t> seeds, std::vector<int64_t> sample_shape, double lo, double hi,
               double tol = 1e-6);

  /// W(b) - W(a) for every batch element, stacked [batch, sample_shape...] in `options`'s dtype
  /// and device. a and b are clamped to [lo, hi].
  Tensor increment(double a, double b, const c10::TensorOptions& options) const;
  /// increment(a, b) / sqrt(|b - a|): N(0, 1) draws (k-diffusion's BrownianTreeNoiseSampler).
  Tensor normalized(double a, double b, const c10::TensorOptions& options) const;

  double lo() const { return lo_; }
  double hi() const { return hi_; }
  size_t batch() const { return seeds_.size(); }

 private:
  Tensor value(size_t sample, double t) const;  // W(t) of one sample (double, CPU)
  Tensor node_value(size_t sample, uint64_t key, const Tensor& wa, const Tensor& wb,
                    double width) const;  // a bracket's midpoint (cached)

  std::vector<uint64_t> seeds_;
  std::vector<int64_t> shape_;
  double lo_, hi_, tol_;
  // Caches of one run's queries (a tree serves one run; not thread-safe): midpoint values by
  // node key and path values by time, per sample, each dropped whole when it grows past a bound.
  // Successive queries of a sampler share most of their descent, so this saves most draws.
  mutable std::vector<std::unordered_map<uint64_t, Tensor>> nodes_;
  mutable std::vector<std::unordered_map<double, Tensor>> points_;
};

}  // namespace diffuse
