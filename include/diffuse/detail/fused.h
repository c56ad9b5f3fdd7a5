// SPDX-License-Identifier: Apache-2.0
// Fused elementwise kernels for the sampler hot path: one pass over memory and no LibTorch dispatch
// or TensorIterator set-up for the small linear combinations a sampler step is made of. Each kernel
// reproduces the bits of the LibTorch expression it replaces: every product and quotient is
// rounded to the tensor's dtype, then every sum, in the order the expression gives (the
// coefficient is rounded to float32 first for float32 tensors, as the 0-dim float32 operand of
// diffuse::scaled does). The loops must therefore not be contracted into fused multiply-adds,
// which would skip a rounding: src/fused_kernels.cpp compiles them with fp-contract=off (GCC) or
// the fp contract(off) pragma (clang). Checked with -O3 -march=native (FMA available): no fused
// multiply-add in these loops with g++ 12 (also under an explicit -ffp-contract=fast) or clang 14
// (default contraction). Clang with an explicit -ffp-contract=fast disregards the pragma by design
// and does contract them: do not build with that flag if the last bit matters (-ffast-math is
// detected, see below).
//
// The loops live in src/fused_kernels.inc, compiled there once per instruction set (the build's
// baseline; with GCC on x86-64 also AVX2 and AVX-512) and picked at run time (kernel_isa()): the
// default build stays portable and still runs 256- or 512-bit loops where the CPU has them.
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

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <diffuse/detail/aten.h>
#include <diffuse/detail/kernel_isa.h>
#include <diffuse/detail/step_buffers.h>

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

/// The raw loops of one instruction set for element type T (fused_kernels.inc has them). `out`
/// never overlaps the inputs unless the signature says so (the in-place kernels take one pointer
/// for both); the *_check kernels also return whether their second tensor operand has a NaN/Inf.
template <typename T>
struct KernelTable {
  void (*mul)(const T* a, T c, T* out, int64_t n);                         // a * c
  void (*mul_inplace)(T* x, T c, int64_t n);                               // x *= c
  void (*div)(const T* a, T c, T* out, int64_t n);                         // a / c
  void (*div_inplace)(T* x, T c, int64_t n);                               // x /= c
  void (*lincomb)(const T* a, T ca, const T* b, T cb, T* out, int64_t n);  // a ca + b cb
  void (*lincomb_div)(const T* a, T ca, const T* b, T cb, T d, T* out, int64_t n);
  void (*solve)(const T* x, const T* u, T cu, T d, T* out, int64_t n);  // (x - u cu) / d
  void (*add_scaled)(T* x, const T* e, T c, int64_t n);                 // x += e c
  void (*sub_scaled)(T* x, const T* e, T c, int64_t n);                 // x -= e c
  void (*diff_mul)(const T* a, const T* b, T c, T* out, int64_t n);     // (a - b) c
  void (*diff_div)(const T* a, const T* b, T c, T* out, int64_t n);     // (a - b) / c
  bool (*any_nonfinite)(const T* a, int64_t n);
  bool (*solve_check)(const T* x, const T* u, T cu, T d, T* out, int64_t n);
  bool (*lincomb_check)(const T* a, T ca, const T* b, T cb, T* out, int64_t n);
  bool (*lincomb_div_check)(const T* a, T ca, const T* b, T cb, T d, T* out, int64_t n);
  // x0 = (x - u cu) / d and out = x0 ca + u cb, or out = x ca + x0 cb; flag of u
  bool (*solve_update_x0_eps)(const T* x, const T* u, T cu, T d, T ca, T cb, T* x0, T* out,
                              int64_t n);
  bool (*solve_update_x_x0)(const T* x, const T* u, T cu, T d, T ca, T cb, T* x0, T* out,
                            int64_t n);
  // and out = (x ca + x0 cb) + ((x0 - m) c1) c2
  bool (*solve_update_x_x0_diff)(const T* x, const T* u, const T* m, T cu, T d, T ca, T cb, T c1,
                                 T c2, T* x0, T* out, int64_t n);
  // x += ((m0 - m1) c0 cw1 - (m1 - m2) c1 cw) ca - ((m0 - m1) c0 - (m1 - m2) c1) cb
  void (*dpm3_terms)(T* x, const T* m0, const T* m1, const T* m2, T c0, T c1, T cw1, T cw, T ca,
                     T cb, int64_t n);
};

/// The kernels of kernel_isa() for T = float or double.
template <typename T>
const KernelTable<T>& kernels();
template <>
const KernelTable<float>& kernels<float>();
template <>
const KernelTable<double>& kernels<double>();

/// Runs body(begin, end) over [0, n) on LibTorch's intra-op threads with its elementwise grain
/// size (one thread below 32768 entries, like TensorIterator).
template <typename F>
inline void for_range(int64_t n, const F& body) {
  at::parallel_for(0, n, at::internal::GRAIN_SIZE, body);
}

/// An uninitialised tensor like t (from the run's StepBuffers while sample() runs).
inline Tensor empty_as(const Tensor& t) { return step_empty(t.sizes(), t.options()); }

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
    for_range(a.numel(),
              [&](int64_t b, int64_t e) { kernels<T>().mul(pa + b, cc, po + b, e - b); });
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
    for_range(a.numel(),
              [&](int64_t b, int64_t e) { kernels<T>().div(pa + b, cc, po + b, e - b); });
  });
  return out;
}

/// x *= c
inline void mul_(Tensor& x, double c) {
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    T* px = x.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(x.numel(),
              [&](int64_t b, int64_t e) { kernels<T>().mul_inplace(px + b, cc, e - b); });
  });
}

/// x /= c
inline void div_(Tensor& x, double c) {
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    T* px = x.data_ptr<T>();
    const T cc = coefficient<T>(c);
    for_range(x.numel(),
              [&](int64_t b, int64_t e) { kernels<T>().div_inplace(px + b, cc, e - b); });
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
      kernels<T>().lincomb(pa + s, fa, pb + s, fb, po + s, e - s);
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
      kernels<T>().lincomb_div(pa + s, fa, pb + s, fb, fd, po + s, e - s);
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
    for_range(x.numel(), [&](int64_t s, int64_t e) {
      kernels<T>().solve(px + s, pu + s, fu, fd, po + s, e - s);
    });
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
        kernels<T>().sub_scaled(px + s, pe + s, cc, n - s);
      } else {
        kernels<T>().add_scaled(px + s, pe + s, cc, n - s);
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
        kernels<T>().diff_div(pa + s, pb + s, cc, po + s, e - s);
      } else {
        kernels<T>().diff_mul(pa + s, pb + s, cc, po + s, e - s);
      }
    });
  });
  return out;
}

/// DPM-Solver++ 3M's third-order terms added to x in one pass (tensor_ops.h add_dpm3_terms_); x
/// must not overlap m0, m1 or m2, all fusable together.
inline void dpm3_terms_(Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& m2, double c0,
                        double c1, double cw1, double cw, double ca, double cb) {
  dispatch(x, [&](auto z) {
    using T = decltype(z);
    T* px = x.data_ptr<T>();
    const T *p0 = m0.data_ptr<T>(), *p1 = m1.data_ptr<T>(), *p2 = m2.data_ptr<T>();
    const T f0 = coefficient<T>(c0), f1 = coefficient<T>(c1), fw1 = coefficient<T>(cw1),
            fw = coefficient<T>(cw), fa = coefficient<T>(ca), fb = coefficient<T>(cb);
    for_range(x.numel(), [&](int64_t s, int64_t e) {
      kernels<T>().dpm3_terms(px + s, p0 + s, p1 + s, p2 + s, f0, f1, fw1, fw, fa, fb, e - s);
    });
  });
}

/// Whether any entry of `a` is NaN or +-Inf (serial: a reduction, read once per network call).
inline bool any_nonfinite(const Tensor& a) {
  return dispatch(a, [&](auto z) {
    using T = decltype(z);
    return kernels<T>().any_nonfinite(a.data_ptr<T>(), a.numel());
  });
}

// The conversions of a network output `u` with its finiteness flag read in the same pass: the
// result as solve() / lincomb() / lincomb_div(), and *u_nonfinite = whether u has a NaN or +-Inf
// entry (the value sample()'s finiteness check needs, without a pass of its own).

/// Runs a *_check kernel over [0, n) in chunks; true when any chunk saw a NaN/Inf.
template <typename F>
inline bool for_range_check(int64_t n, const F& chunk) {
  std::atomic<bool> bad{false};
  for_range(n, [&](int64_t s, int64_t e) {
    if (chunk(s, e)) bad.store(true, std::memory_order_relaxed);
  });
  return bad.load();
}

/// (x - u * cu) / d
inline Tensor solve_checked(const Tensor& x, const Tensor& u, double cu, double d,
                            bool* u_nonfinite) {
  Tensor out = empty_as(x);
  *u_nonfinite = dispatch(x, [&](auto z) {
    using T = decltype(z);
    const T *px = x.data_ptr<T>(), *pu = u.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T fu = coefficient<T>(cu), fd = coefficient<T>(d);
    return for_range_check(x.numel(), [&](int64_t s, int64_t e) {
      return kernels<T>().solve_check(px + s, pu + s, fu, fd, po + s, e - s);
    });
  });
  return out;
}

/// a * ca + u * cu
inline Tensor lincomb_checked(const Tensor& a, double ca, const Tensor& u, double cu,
                              bool* u_nonfinite) {
  Tensor out = empty_as(a);
  *u_nonfinite = dispatch(a, [&](auto z) {
    using T = decltype(z);
    const T *pa = a.data_ptr<T>(), *pu = u.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T fa = coefficient<T>(ca), fu = coefficient<T>(cu);
    return for_range_check(a.numel(), [&](int64_t s, int64_t e) {
      return kernels<T>().lincomb_check(pa + s, fa, pu + s, fu, po + s, e - s);
    });
  });
  return out;
}

/// (a * ca + u * cu) / d
inline Tensor lincomb_div_checked(const Tensor& a, double ca, const Tensor& u, double cu, double d,
                                  bool* u_nonfinite) {
  Tensor out = empty_as(a);
  *u_nonfinite = dispatch(a, [&](auto z) {
    using T = decltype(z);
    const T *pa = a.data_ptr<T>(), *pu = u.data_ptr<T>();
    T* po = out.data_ptr<T>();
    const T fa = coefficient<T>(ca), fu = coefficient<T>(cu), fd = coefficient<T>(d);
    return for_range_check(a.numel(), [&](int64_t s, int64_t e) {
      return kernels<T>().lincomb_div_check(pa + s, fa, pu + s, fu, fd, po + s, e - s);
    });
  });
  return out;
}

/// x0 = (x - u * cu) / d (returned) and, in the same pass, *update = x0 * ca + u * cb
/// (with_x = false) or x * ca + x0 * cb (with_x = true), and *u_nonfinite. With `m` (with_x
/// only; fusable like x, of its size), *update also gets + ((x0 - m) * c1) * c2.
inline Tensor solve_update_checked(const Tensor& x, const Tensor& u, double cu, double d,
                                   bool with_x, double ca, double cb, Tensor* update,
                                   bool* u_nonfinite, const Tensor* m = nullptr, double c1 = 0,
                                   double c2 = 0) {
  Tensor x0 = empty_as(x);
  *update = empty_as(x);
  *u_nonfinite = dispatch(x, [&](auto z) {
    using T = decltype(z);
    const T *px = x.data_ptr<T>(), *pu = u.data_ptr<T>();
    T *p0 = x0.data_ptr<T>(), *po = update->data_ptr<T>();
    const T fu = coefficient<T>(cu), fd = coefficient<T>(d);
    const T fa = coefficient<T>(ca), fb = coefficient<T>(cb);
    if (m != nullptr) {
      const T* pm = m->data_ptr<T>();
      const T f1 = coefficient<T>(c1), f2 = coefficient<T>(c2);
      return for_range_check(x.numel(), [&](int64_t s, int64_t e) {
        return kernels<T>().solve_update_x_x0_diff(px + s, pu + s, pm + s, fu, fd, fa, fb, f1, f2,
                                                   p0 + s, po + s, e - s);
      });
    }
    const auto kernel = with_x ? kernels<T>().solve_update_x_x0 : kernels<T>().solve_update_x0_eps;
    return for_range_check(x.numel(), [&](int64_t s, int64_t e) {
      return kernel(px + s, pu + s, fu, fd, fa, fb, p0 + s, po + s, e - s);
    });
  });
  return x0;
}

/// Two storages that may share memory (the in-place kernels must not read what they write).
inline bool may_overlap(const Tensor& a, const Tensor& b) { return a.is_alias_of(b); }

/// Whether an in-place kernel may write x while reading m: both fusable, no shared memory.
inline bool can_fuse_into(const Tensor& x, const Tensor& m) {
  return can_fuse(x, m) && !may_overlap(x, m);
}

}  // namespace diffuse::detail::fused
