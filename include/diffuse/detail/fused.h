// SPDX-License-Identifier: Apache-2.0
// Fused elementwise kernels for the sampler hot path: one pass over memory and no LibTorch dispatch
// or TensorIterator set-up for the small linear combinations a sampler step is made of. Each kernel
// reproduces the bits of the LibTorch expression it replaces: every product and quotient is
// rounded to the tensor's dtype, then every sum, in the order the expression gives (the
// coefficient is rounded to float32 first for float32 tensors, as the 0-dim float32 operand of
// diffuse::scaled does). The loops must therefore not be contracted into fused multiply-adds,
// which would skip a rounding: GCC gets fp-contract=off per function, clang a pragma inside it.
// Checked with -O3 -march=native (FMA available): no fused multiply-add in these loops with g++ 12
// (also under an explicit -ffp-contract=fast) or clang 14 (default contraction). Clang with an
// explicit -ffp-contract=fast disregards the pragma by design and does contract them: do not
// build with that flag if the last bit matters (-ffast-math is detected, see below).
//
// Only contiguous, strided CPU tensors of float32 or float64 with identical shapes, without
// requires_grad and without a negation view, take the fused path (can_fuse()); callers fall back
// to the LibTorch expression for everything else (CUDA, other dtypes, broadcasting, views with
// strides, autograd). Results agree bit for bit with LibTorch except for the payload and sign of
// a NaN result (LibTorch's own vector and scalar loops do not fix it either); a NaN stays a NaN.
// Built with -ffast-math (which would allow reciprocal division and reassociation) the fused
// path is switched off: kFusedKernels is false and every helper uses LibTorch.
#pragma once

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include <diffuse/detail/aten.h>

#if defined(__clang__)
#define DIFFUSE_NO_CONTRACT_FN
#define DIFFUSE_NO_CONTRACT_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define DIFFUSE_NO_CONTRACT_FN __attribute__((optimize("fp-contract=off")))
#define DIFFUSE_NO_CONTRACT_BODY
#else
// MSVC contracts only under /fp:fast or /fp:contract; the pragma turns it off for this header.
#if defined(_MSC_VER)
#pragma fp_contract(off)
#endif
#define DIFFUSE_NO_CONTRACT_FN
#define DIFFUSE_NO_CONTRACT_BODY
#endif

namespace diffuse::detail::fused {

#if defined(__FAST_MATH__)
constexpr bool kFusedKernels = false;
#else
/// Whether the fused kernels are compiled in (false under -ffast-math).
constexpr bool kFusedKernels = true;
#endif

/// Whether `t` can go through the fused kernels on its own: a contiguous strided CPU float32 or
/// float64 tensor that does not require grad and is not a negated view.
inline bool can_fuse(const Tensor& t) {
  if (!kFusedKernels || !t.defined()) return false;
  const auto st = t.scalar_type();
  return (st == at::kFloat || st == at::kDouble) && t.device().is_cpu() &&
         t.layout() == at::kStrided && !t.requires_grad() && !t.is_neg() && t.is_contiguous();
}

/// can_fuse(a) and b can join it: same dtype and the same shape (no broadcasting).
inline bool can_fuse(const Tensor& a, const Tensor& b) {
  return can_fuse(a) && can_fuse(b) && a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes();
}

/// The coefficient as the kernels of dtype T see it: float32 tensors round it to float first
/// (to nearest; beyond the float range to +-Inf, as LibTorch's `t * c` does for a float tensor).
template <typename T>
inline T coefficient(double c) {
  return static_cast<T>(c);
}

template <>
inline float coefficient<float>(double c) {
  constexpr double kMax = static_cast<double>(std::numeric_limits<float>::max());
  if (!(std::fabs(c) > kMax)) return static_cast<float>(c);  // in range, or NaN
  // Out of range the cast is undefined behaviour in C++: round by hand. Halfway between the
  // largest float and 2^128 (a tie, which goes to the even 2^128) and beyond is Inf.
  const double halfway = kMax + std::ldexp(1.0, 103);
  const float mag = std::fabs(c) < halfway ? std::numeric_limits<float>::max()
                                           : std::numeric_limits<float>::infinity();
  return c < 0 ? -mag : mag;
}

// The raw loops. `out` never overlaps the inputs unless the signature says so (the in-place
// kernels take one pointer for both).
namespace kernel {

template <typename T>
DIFFUSE_NO_CONTRACT_FN void mul(const T* __restrict a, T c, T* __restrict out, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * c;
}

template <typename T>
DIFFUSE_NO_CONTRACT_FN void mul_inplace(T* __restrict x, T c, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * c;
}

template <typename T>
DIFFUSE_NO_CONTRACT_FN void div(const T* __restrict a, T c, T* __restrict out, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] / c;
}

template <typename T>
DIFFUSE_NO_CONTRACT_FN void div_inplace(T* __restrict x, T c, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] / c;
}

// out = a * ca + b * cb
template <typename T>
DIFFUSE_NO_CONTRACT_FN void lincomb(const T* __restrict a, T ca, const T* __restrict b, T cb,
                                    T* __restrict out, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) {
    const T p = a[i] * ca;
    const T q = b[i] * cb;
    out[i] = p + q;
  }
}

// out = (a * ca + b * cb) / d
template <typename T>
DIFFUSE_NO_CONTRACT_FN void lincomb_div(const T* __restrict a, T ca, const T* __restrict b, T cb,
                                        T d, T* __restrict out, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) {
    const T p = a[i] * ca;
    const T q = b[i] * cb;
    const T s = p + q;
    out[i] = s / d;
  }
}

// out = (x - u * cu) / d
template <typename T>
DIFFUSE_NO_CONTRACT_FN void solve(const T* __restrict x, const T* __restrict u, T cu, T d,
                                  T* __restrict out, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) {
    const T p = u[i] * cu;
    const T s = x[i] - p;
    out[i] = s / d;
  }
}

// x = x + e * c (sign > 0) or x = x - e * c (sign < 0)
template <typename T>
DIFFUSE_NO_CONTRACT_FN void add_scaled(T* __restrict x, const T* __restrict e, T c, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) {
    const T q = e[i] * c;
    x[i] = x[i] + q;
  }
}

template <typename T>
DIFFUSE_NO_CONTRACT_FN void sub_scaled(T* __restrict x, const T* __restrict e, T c, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) {
    const T q = e[i] * c;
    x[i] = x[i] - q;
  }
}

// out = (a - b) * c
template <typename T>
DIFFUSE_NO_CONTRACT_FN void diff_mul(const T* __restrict a, const T* __restrict b, T c,
                                     T* __restrict out, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) {
    const T s = a[i] - b[i];
    out[i] = s * c;
  }
}

// out = (a - b) / c
template <typename T>
DIFFUSE_NO_CONTRACT_FN void diff_div(const T* __restrict a, const T* __restrict b, T c,
                                     T* __restrict out, int64_t n) {
  DIFFUSE_NO_CONTRACT_BODY
  for (int64_t i = 0; i < n; ++i) {
    const T s = a[i] - b[i];
    out[i] = s / c;
  }
}

// Whether any entry is NaN or +-Inf: all exponent bits set. Integer arithmetic on the bit
// patterns, so no floating-point flag (-ffinite-math-only included) can fold it away.
inline bool any_nonfinite(const float* a, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, a + i, sizeof u);
    bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad != 0;
}

inline bool any_nonfinite(const double* a, int64_t n) {
  uint64_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t u;
    std::memcpy(&u, a + i, sizeof u);
    bad |= static_cast<uint64_t>((u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull);
  }
  return bad != 0;
}

}  // namespace kernel

/// Runs body(begin, end) over [0, n) on LibTorch's intra-op threads with its elementwise grain
/// size (one thread below 32768 entries, like TensorIterator).
template <typename F>
inline void for_range(int64_t n, const F& body) {
  at::parallel_for(0, n, at::internal::GRAIN_SIZE, body);
}

inline Tensor empty_as(const Tensor& t) { return at::empty(t.sizes(), t.options()); }

/// Calls f(T{}) with T = float or double after t's dtype (t must satisfy can_fuse()).
template <typename F>
inline auto dispatch(const Tensor& t, const F& f) {
  if (t.scalar_type() == at::kFloat) return f(float{});
  return f(double{});
}

// The entry points. Each requires the can_fuse() condition its caller checked.

/// a * c
inline Tensor mul(const Tensor& a, double c) {
  Tensor out = empty_as(a);
  dispatch(a, [&](auto z) {
    using T = decltype(z);
    const T* pa = a.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(a.numel(), [&](int64_t b, int64_t e) { kernel::mul(pa + b, cc, po + b, e - b); });
  });
  return out;
}

/// a / c
inline Tensor div(const Tensor& a, double c) {
  Tensor out = empty_as(a);
  dispatch(a, [&](auto z) {
    using T = decltype(z);
    const T* pa = a.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(a.numel(), [&](int64_t b, int64_t e) { kernel::div(pa + b, cc, po + b, e - b); });
  });
  return out;
}

/// x *= c
inline void mul_(Tensor& x, double c) {
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    T* px = x.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(x.numel(), [&](int64_t b, int64_t e) { kernel::mul_inplace(px + b, cc, e - b); });
  });
}

/// x /= c
inline void div_(Tensor& x, double c) {
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    T* px = x.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(x.numel(), [&](int64_t b, int64_t e) { kernel::div_inplace(px + b, cc, e - b); });
  });
}

/// a * ca + b * cb
inline Tensor lincomb(const Tensor& a, double ca, const Tensor& b, double cb) {
  Tensor out = empty_as(a);
  dispatch(a, [&](auto z) {
    using T = decltype(z);
    const T *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T fa = coefficient<T>(ca), fb = coefficient<T>(cb);
    for_range(a.numel(), [&](int64_t s, int64_t e) {
      kernel::lincomb(pa + s, fa, pb + s, fb, po + s, e - s);
    });
  });
  return out;
}

/// (a * ca + b * cb) / d
inline Tensor lincomb_div(const Tensor& a, double ca, const Tensor& b, double cb, double d) {
  Tensor out = empty_as(a);
  dispatch(a, [&](auto z) {
    using T = decltype(z);
    const T *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T fa = coefficient<T>(ca), fb = coefficient<T>(cb), fd = coefficient<T>(d);
    for_range(a.numel(), [&](int64_t s, int64_t e) {
      kernel::lincomb_div(pa + s, fa, pb + s, fb, fd, po + s, e - s);
    });
  });
  return out;
}

/// (x - u * cu) / d
inline Tensor solve(const Tensor& x, const Tensor& u, double cu, double d) {
  Tensor out = empty_as(x);
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    const T *px = x.data_ptr<T>(), *pu = u.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T fu = coefficient<T>(cu), fd = coefficient<T>(d);
    for_range(x.numel(),
              [&](int64_t s, int64_t e) { kernel::solve(px + s, pu + s, fu, fd, po + s, e - s); });
  });
  return out;
}

/// x += e * c (negative = false) or x -= e * c (negative = true); x must not overlap e.
inline void add_scaled_(Tensor& x, const Tensor& e, double c, bool negative) {
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    T* px = x.data_ptr<T>();
    const T* pe = e.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(x.numel(), [&](int64_t s, int64_t n) {
      if (negative) {
        kernel::sub_scaled(px + s, pe + s, cc, n - s);
      } else {
        kernel::add_scaled(px + s, pe + s, cc, n - s);
      }
    });
  });
}

/// (a - b) * c, or (a - b) / c with divide = true.
inline Tensor diff_scaled(const Tensor& a, const Tensor& b, double c, bool divide) {
  Tensor out = empty_as(a);
  dispatch(a, [&](auto z) {
    using T = decltype(z);
    const T *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(a.numel(), [&](int64_t s, int64_t e) {
      if (divide) {
        kernel::diff_div(pa + s, pb + s, cc, po + s, e - s);
      } else {
        kernel::diff_mul(pa + s, pb + s, cc, po + s, e - s);
      }
    });
  });
  return out;
}

/// Whether any entry of `a` is NaN or +-Inf (serial: a reduction, read once per network call).
inline bool any_nonfinite(const Tensor& a) {
  return dispatch(a, [&](auto z) {
    using T = decltype(z);
    return kernel::any_nonfinite(a.data_ptr<T>(), a.numel());
  });
}

/// Two storages that may share memory (the in-place kernels must not read what they write).
inline bool may_overlap(const Tensor& a, const Tensor& b) { return a.is_alias_of(b); }

}  // namespace diffuse::detail::fused

#undef DIFFUSE_NO_CONTRACT_FN
#undef DIFFUSE_NO_CONTRACT_BODY
