// SPDX-License-Identifier: Apache-2.0
// The operator header used by implementation headers, and the one place where LibTorch version
// differences are handled (TORCH_VERSION_MAJOR checks live here and nowhere else).
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>

#include <diffuse/tensor.h>

#ifndef TORCH_VERSION_MAJOR
#error "LibTorch did not define TORCH_VERSION_MAJOR"
#endif

namespace diffuse::detail {

/// LibTorch >= 2.0 ships a fused scaled_dot_product_attention; 1.13 does not.
constexpr bool kHasFusedAttention = TORCH_VERSION_MAJOR >= 2;

/// softmax(q k^T / sqrt(d)) v, fused where LibTorch provides it.
inline at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return at::matmul(at::softmax(at::matmul(q, k.transpose(-2, -1)) * scale, -1), v);
#endif
}

}  // namespace diffuse::detail
