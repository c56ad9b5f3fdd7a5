// SPDX-License-Identifier: Apache-2.0
// The fused kernels of detail/fused.h, compiled once per instruction set and picked at run time:
// the loops of fused_kernels.inc for the build's baseline and, with GCC on x86-64, again for AVX2
// and for AVX-512 (512-bit vectors). The best set the CPU supports is chosen at the first call;
// DIFFUSE_CPU_ISA=baseline|avx2|avx512 (or set_kernel_isa) picks another one (an unsupported
// one is an error naming it). All sets give the same bits: see fused_kernels.inc.
#include <diffuse/detail/fused.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include <diffuse/tensor.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__FAST_MATH__)
#define DIFFUSE_KERNEL_DISPATCH 1
#else
#define DIFFUSE_KERNEL_DISPATCH 0
#endif

// Contraction off for every copy: GCC through the optimize pragma of each region (a per-function
// attribute would stop the helpers from being inlined into the loops), clang per function body.
// With GCC the same pragma starts every loop on a 64-byte boundary: the body of a fused loop is
// 60-100 bytes, and where a link put it across three cache lines instead of two the AVX-512
// DDIM kernel took 2.25-2.31 us per [4, 4, 32, 32] call instead of 1.55-1.7 (AMD EPYC,
// `diffuse_bench_vs_diffusers --floor 1`, 2026-12-07): the speed of a kernel no longer depends
// on where the linker happens to place it.
#if defined(__clang__)
#define DIFFUSE_KERNEL_FN
#define DIFFUSE_KERNEL_BODY _Pragma("clang fp contract(off)")
#else
#define DIFFUSE_KERNEL_FN
#define DIFFUSE_KERNEL_BODY
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#pragma fp_contract(off)
#endif

namespace diffuse::detail::fused {

namespace {

// Every kernel of one instruction set, for float and double.
#define DIFFUSE_KERNEL_TABLE(T)                                                                  \
  KernelTable<T> {                                                                               \
    &mul<T>, &mul_inplace<T>, &div<T>, &div_inplace<T>, &lincomb<T>, &lincomb_div<T>, &solve<T>, \
        &add_scaled<T>, &sub_scaled<T>, &diff_mul<T>, &diff_div<T>, &any_nonfinite<T>,           \
        &solve_check<T>, &lincomb_check<T>, &lincomb_div_check<T>, &solve_update_x0_eps<T>,      \
        &solve_update_x_x0<T>, &solve_update_x_x0_diff<T>, &dpm3_terms<T>                        \
  }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off", "align-loops=64")
#endif
namespace baseline {
#include "fused_kernels.inc"
const KernelTable<float> f32 = DIFFUSE_KERNEL_TABLE(float);
const KernelTable<double> f64 = DIFFUSE_KERNEL_TABLE(double);
}  // namespace baseline
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#if DIFFUSE_KERNEL_DISPATCH
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off", "align-loops=64")
#pragma GCC target("avx2")
namespace avx2 {
#include "fused_kernels.inc"
const KernelTable<float> f32 = DIFFUSE_KERNEL_TABLE(float);
const KernelTable<double> f64 = DIFFUSE_KERNEL_TABLE(double);
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off", "align-loops=64")
#pragma GCC target("avx512f,prefer-vector-width=512")
namespace avx512 {
#include "fused_kernels.inc"
const KernelTable<float> f32 = DIFFUSE_KERNEL_TABLE(float);
const KernelTable<double> f64 = DIFFUSE_KERNEL_TABLE(double);
}  // namespace avx512
#pragma GCC pop_options
#endif

#undef DIFFUSE_KERNEL_TABLE

bool cpu_has(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kBaseline:
      return true;
#if DIFFUSE_KERNEL_DISPATCH
    case KernelIsa::kAvx2:
      return __builtin_cpu_supports("avx2");
    case KernelIsa::kAvx512:
      return __builtin_cpu_supports("avx512f");
#endif
    default:
      return false;
  }
}

KernelIsa best_isa() {
  for (KernelIsa isa : {KernelIsa::kAvx512, KernelIsa::kAvx2})
    if (cpu_has(isa)) return isa;
  return KernelIsa::kBaseline;
}

// -1 until the first call chooses (the environment, else the best the CPU has).
std::atomic<int> g_isa{-1};

KernelIsa initial_isa() {
  const char* env = std::getenv("DIFFUSE_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  const std::string name = env;
  for (KernelIsa isa : {KernelIsa::kBaseline, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (name != kernel_isa_name(isa)) continue;
    check(cpu_has(isa), "DIFFUSE_CPU_ISA=", name,
          ": this CPU or build does not support it (supported: ", supported_kernel_isas_text(),
          ")");
    return isa;
  }
  throw Error(cat("DIFFUSE_CPU_ISA='", name, "' is not one of baseline, avx2, avx512"));
}

}  // namespace

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::kAvx2:
      return "avx2";
    case KernelIsa::kAvx512:
      return "avx512";
    default:
      return "baseline";
  }
}

std::vector<KernelIsa> supported_kernel_isas() {
  std::vector<KernelIsa> out;
  for (KernelIsa isa : {KernelIsa::kBaseline, KernelIsa::kAvx2, KernelIsa::kAvx512})
    if (cpu_has(isa)) out.push_back(isa);
  return out;
}

std::string supported_kernel_isas_text() {
  std::string s;
  for (KernelIsa isa : supported_kernel_isas())
    s += (s.empty() ? "" : ", ") + std::string(kernel_isa_name(isa));
  return s;
}

KernelIsa kernel_isa() {
  int v = g_isa.load(std::memory_order_acquire);
  if (v < 0) {
    int expected = -1;
    const int chosen = static_cast<int>(initial_isa());
    g_isa.compare_exchange_strong(expected, chosen, std::memory_order_acq_rel);
    v = g_isa.load(std::memory_order_acquire);
  }
  return static_cast<KernelIsa>(v);
}

void set_kernel_isa(KernelIsa isa) {
  check(cpu_has(isa), "set_kernel_isa(", kernel_isa_name(isa),
        "): this CPU or build does not support it (supported: ", supported_kernel_isas_text(), ")");
  g_isa.store(static_cast<int>(isa), std::memory_order_release);
}

namespace {

/// The table of the set in use, of the baseline / AVX2 / AVX-512 ones given.
template <typename T>
const KernelTable<T>& in_use(const KernelTable<T>& base, const KernelTable<T>& with_avx2,
                             const KernelTable<T>& with_avx512) {
  switch (kernel_isa()) {
    case KernelIsa::kAvx512:
      return with_avx512;
    case KernelIsa::kAvx2:
      return with_avx2;
    default:
      return base;
  }
}

}  // namespace

#if DIFFUSE_KERNEL_DISPATCH
template <>
const KernelTable<float>& kernels<float>() {
  return in_use(baseline::f32, avx2::f32, avx512::f32);
}

template <>
const KernelTable<double>& kernels<double>() {
  return in_use(baseline::f64, avx2::f64, avx512::f64);
}
#else
template <>
const KernelTable<float>& kernels<float>() {
  return baseline::f32;
}

template <>
const KernelTable<double>& kernels<double>() {
  return baseline::f64;
}
#endif

}  // namespace diffuse::detail::fused
