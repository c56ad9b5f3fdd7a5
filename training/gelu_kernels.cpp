// SPDX-License-Identifier: Apache-2.0
// The loops of diffuse::gelu_tanh (<diffuse/training/gelu.h>): GELU's tanh form and its derivative
// in one pass each, one copy per instruction set (baseline, AVX2, AVX-512 with GCC on x86-64;
// picked by fused::kernel_isa(), as the sampler kernels). A unit of its own, outside the unity
// batches and without LibTorch headers. Correctly rounded float operations only and no multiply-add
// contraction (-ffp-contract=off, see CMakeLists.txt), so every copy gives the same bits.
//
// gelu(x) = x / 2 (1 + tanh(u)), u = sqrt(2 / pi) (x + 0.044715 x^3), is x s with s = 1 / (1 + e),
// e = exp(-2 u) (1 + tanh(u) = 2 / (1 + exp(-2 u))): one exp and one division instead of
// LibTorch's tanh (Sleef's 1-ulp tanhf, most of the MLP's elementwise time in a DiT training
// step). The derivative: s + x s (1 - s) 2 u' = s (1 + 2 sqrt(2 / pi) x e s (1 + 3 0.044715 x^2)),
// as 1 - s = e s. x is clamped to [-9, 9] inside (u to +-33.2, e within float's range): beyond,
// s is 1 or below 2e-29, so gelu is x (exactly, as LibTorch's) or below 2e-28 in magnitude, and
// the derivative 1 or 0 within 3e-27. Against a double-precision gelu: within 1e-7 (1 + |x|)
// and, where |gelu(x)| > 1e-6, 3e-6 relative (LibTorch's 1 + tanh(u) loses that for x < -3).
#include <diffuse/training/gelu.h>

#include <cstdint>
#include <cstring>

#include <diffuse/detail/kernel_isa.h>

#if defined(__FAST_MATH__)
#error "training/gelu_kernels.cpp needs IEEE float arithmetic: do not build it with -ffast-math"
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DIFFUSE_GELU_DISPATCH 1
#else
#define DIFFUSE_GELU_DISPATCH 0
#endif

#if defined(__clang__)
#define DIFFUSE_GELU_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define DIFFUSE_GELU_NO_CONTRACT
#endif

namespace diffuse::detail {
namespace {

namespace gelu_base {
#include "gelu_kernels.inc"
}  // namespace gelu_base

#if DIFFUSE_GELU_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx2")
namespace gelu_avx2 {
#include "gelu_kernels.inc"
}  // namespace gelu_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,prefer-vector-width=512")
namespace gelu_avx512 {
#include "gelu_kernels.inc"
}  // namespace gelu_avx512
#pragma GCC pop_options
#endif

}  // namespace

void gelu_tanh_forward(const float* x, float* y, int64_t n) {
#if DIFFUSE_GELU_DISPATCH
  switch (fused::kernel_isa()) {
    case fused::KernelIsa::kAvx512:
      return gelu_avx512::forward(x, y, n);
    case fused::KernelIsa::kAvx2:
      return gelu_avx2::forward(x, y, n);
    default:
      break;
  }
#endif
  gelu_base::forward(x, y, n);
}

void gelu_tanh_backward(const float* x, const float* g, float* dx, int64_t n) {
#if DIFFUSE_GELU_DISPATCH
  switch (fused::kernel_isa()) {
    case fused::KernelIsa::kAvx512:
      return gelu_avx512::backward(x, g, dx, n);
    case fused::KernelIsa::kAvx2:
      return gelu_avx2::backward(x, g, dx, n);
    default:
      break;
  }
#endif
  gelu_base::backward(x, g, dx, n);
}

}  // namespace diffuse::detail
