// SPDX-License-Identifier: Apache-2.0
// The operator header used by implementation headers, and the one place where LibTorch version
// differences are handled (TORCH_VERSION_MAJOR checks live here and nowhere else).
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
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

/// LibTorch >= 2.4 has the device-generic autocast API (set_autocast_enabled(device, bool),
/// set_autocast_dtype(device, dtype)); older versions have per-device functions.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define DIFFUSE_DETAIL_AUTOCAST_GENERIC 1
#else
#define DIFFUSE_DETAIL_AUTOCAST_GENERIC 0
#endif

/// Whether autocast is enabled for `device` (kCPU or kCUDA) on this thread.
inline bool autocast_enabled(at::DeviceType device) {
#if DIFFUSE_DETAIL_AUTOCAST_GENERIC
  return at::autocast::is_autocast_enabled(device);
#else
  return device == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

/// The lower-precision dtype autocast uses on `device` (kCPU or kCUDA).
inline at::ScalarType autocast_dtype(at::DeviceType device) {
#if DIFFUSE_DETAIL_AUTOCAST_GENERIC
  return at::autocast::get_autocast_dtype(device);
#else
  return device == at::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                             : at::autocast::get_autocast_cpu_dtype();
#endif
}

inline void set_autocast(at::DeviceType device, bool enabled, at::ScalarType dtype) {
#if DIFFUSE_DETAIL_AUTOCAST_GENERIC
  at::autocast::set_autocast_dtype(device, dtype);
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == at::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

/// RAII mixed precision, like Python's `with torch.autocast(device_type, dtype)`: on this thread,
/// operators on `device` tensors that autocast lists (matmul, linear, convolution, ...) run in
/// `dtype` (at::kBFloat16 or at::kHalf) while precision-sensitive ones stay float32; the previous
/// state is restored on destruction and the cast cache is cleared when the outermost guard ends.
/// `device` is kCPU or kCUDA (checked by the caller). A guard with enabled = false changes nothing.
/// Not copyable; create and destroy on the same thread.
class AutocastGuard {
 public:
  AutocastGuard(at::DeviceType device, at::ScalarType dtype, bool enabled = true)
      : device_(device), active_(enabled) {
    if (!active_) return;
    prev_enabled_ = autocast_enabled(device_);
    prev_dtype_ = autocast_dtype(device_);
    set_autocast(device_, true, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set_autocast(device_, prev_enabled_, prev_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  at::DeviceType device_;
  bool active_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

}  // namespace diffuse::detail
