// SPDX-License-Identifier: Apache-2.0
// Distances between sample sets, for testbeds, demos and benchmarks: sliced 2-Wasserstein, mean
// error and covariance error. Samples are [n, ...], flattened to [n, D]; computed in float64.
#pragma once

#include <cstdint>

#include <diffuse/tensor.h>

namespace diffuse {

/// Sample covariance [D, D] of points [n, D] (unbiased).
Tensor sample_covariance(const Tensor& x);

/// Sliced 2-Wasserstein distance between two equally sized point sets: the root mean, over
/// `directions` random unit directions (seeded), of the squared W2 distance of the sorted 1-D
/// projections.
double sliced_wasserstein(const Tensor& a, const Tensor& b, uint64_t seed = 0,
                          int64_t directions = 64);

/// || mean(x) - mean ||_2 and || cov(x) - cov ||_F against a reference mean [D] and covariance [D,
/// D].
double mean_error(const Tensor& x, const Tensor& mean);
double covariance_error(const Tensor& x, const Tensor& cov);

}  // namespace diffuse
