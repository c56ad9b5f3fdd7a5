// SPDX-License-Identifier: Apache-2.0
// The linear multistep update in sigma_ve shared by lms and ipndm: with the Karras ODE's slopes
// d_j = (x_ve_j - x0_j) / sigma_j at the current point (j = 0) and the last k - 1 steps,
//   x_ve' = x_ve + sum_j c_j d_j,
// returned at next's scale (x' = alpha' x_ve'). Used by .cpp files only.
#pragma once

#include <cstddef>
#include <vector>

#include <diffuse/sampler.h>
#include <diffuse/tensor_ops.h>

namespace diffuse::detail {

/// nodes: sigma_ve of now and of the last k - 1 history entries (newest first); c: the weights.
inline Tensor sigma_multistep(const Tensor& x, const TimePoint& now, const TimePoint& next,
                              const Prediction& p, const History& history,
                              const std::vector<double>& nodes, const std::vector<double>& c) {
  const size_t n = history.size();
  const Tensor x_ve = divided(x, now.alpha);
  Tensor x_next = x_ve.clone();
  add_scaled_(x_next, diff_divided(x_ve, p.x0, nodes[0]), c[0]);
  for (size_t j = 1; j < c.size(); ++j) {
    const TimePoint& tj = history.times[n - j];
    const Tensor d =
        diff_divided(divided(history.xs[n - j], tj.alpha), history.preds[n - j].x0, nodes[j]);
    add_scaled_(x_next, d, c[j]);
  }
  return scale_(x_next, next.alpha);
}

/// sigma_ve of now and of the last k - 1 history entries, newest first.
inline std::vector<double> sigma_nodes(const TimePoint& now, const History& history, size_t k) {
  std::vector<double> nodes{now.sigma_ve()};
  const size_t n = history.size();
  for (size_t j = 1; j < k; ++j) nodes.push_back(history.times[n - j].sigma_ve());
  return nodes;
}

}  // namespace diffuse::detail
