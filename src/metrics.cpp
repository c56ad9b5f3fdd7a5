// SPDX-License-Identifier: Apache-2.0
#include <diffuse/metrics.h>

#include <tuple>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/noise.h>

namespace diffuse {

namespace {
Tensor as_points(const Tensor& x, const char* what) {
  check(x.defined() && x.dim() >= 1 && x.size(0) >= 2, what,
        ": needs at least 2 samples, got shape ", x.defined() ? x.sizes() : c10::IntArrayRef{});
  return x.reshape({x.size(0), -1}).to(at::kDouble);
}
}  // namespace

Tensor sample_covariance(const Tensor& x) {
  const Tensor p = as_points(x, "sample_covariance");
  const Tensor c = p - p.mean(0);
  return at::matmul(c.t(), c) / static_cast<double>(p.size(0) - 1);
}

double sliced_wasserstein(const Tensor& a, const Tensor& b, uint64_t seed, int64_t directions) {
  const Tensor pa = as_points(a, "sliced_wasserstein"), pb = as_points(b, "sliced_wasserstein");
  check(pa.sizes() == pb.sizes(), "sliced_wasserstein: point sets differ in shape: ", pa.sizes(),
        " vs ", pb.sizes());
  check(directions >= 1, "sliced_wasserstein: directions must be >= 1, got ", directions);
  at::Generator g = detail::cpu_generator(seed);
  Tensor dirs = at::randn({pa.size(1), directions}, g, at::TensorOptions().dtype(at::kDouble));
  dirs = dirs / dirs.norm(2, 0, /*keepdim=*/true);
  const Tensor sa = std::get<0>(at::sort(at::matmul(pa, dirs), 0));
  const Tensor sb = std::get<0>(at::sort(at::matmul(pb, dirs), 0));
  return (sa - sb).pow(2).mean().sqrt().item<double>();
}

double mean_error(const Tensor& x, const Tensor& mean) {
  return (as_points(x, "mean_error").mean(0) - mean.to(at::kDouble).reshape({-1}))
      .norm()
      .item<double>();
}
double covariance_error(const Tensor& x, const Tensor& cov) {
  return (sample_covariance(x) - cov.to(at::kDouble)).norm().item<double>();
}

}  // namespace diffuse
