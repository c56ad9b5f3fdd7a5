// SPDX-License-Identifier: Apache-2.0
// The kernels of make_philox_noise (src/philox.cpp): Philox4x32-10 and a float32 Box-Muller, one
// copy of the loops per instruction set (src/philox_kernels.inc). A translation unit of its own,
// outside the unity batches and without LibTorch's tensor headers, compiled with
// -ffp-contract=off (no a * b + c fused into one rounding: the same numbers from every compiler
// and instruction set) and -fno-math-errno (sqrt without errno handling is one correctly rounded
// instruction that GCC vectorises); see CMakeLists.txt.
#include <diffuse/detail/philox.h>

#include <cmath>

#include <diffuse/detail/kernel_isa.h>

#if defined(__FAST_MATH__)
#error "src/philox_kernels.cpp needs IEEE float arithmetic: do not build it with -ffast-math"
#endif

// The AVX2 and AVX-512 copies need GCC on x86-64 (as the fused kernels of fused_kernels.cpp).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DIFFUSE_PHILOX_DISPATCH 1
#include <immintrin.h>
#else
#define DIFFUSE_PHILOX_DISPATCH 0
#endif

// clang contracts within an expression unless told otherwise, whatever the command line says.
#if defined(__clang__)
#define DIFFUSE_NO_CONTRACT_BLOCK _Pragma("clang fp contract(off)")
#else
#define DIFFUSE_NO_CONTRACT_BLOCK
#endif

namespace diffuse {
namespace detail {

namespace {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Philox4x32 multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
constexpr int64_t kChunk = 256;                           // blocks per pass (1024 normals)
static_assert(kChunk % 64 == 0, "the AVX-512 rounds take 64 blocks at a time");

/// Counter words of blocks b0 .. b0 + nb of one (sample, draw) stream, one array per word
/// (structure of arrays, so that each Philox round is one loop over the blocks with one key).
struct Blocks {
  alignas(64) uint32_t w0[kChunk];
  alignas(64) uint32_t w1[kChunk];
  alignas(64) uint32_t w2[kChunk];
  alignas(64) uint32_t w3[kChunk];
};

namespace philox_base {
#include "philox_kernels.inc"
}  // namespace philox_base

#if DIFFUSE_PHILOX_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx2")
namespace philox_avx2 {
#define DIFFUSE_PHILOX_AVX2_ROUNDS 1
#include "philox_kernels.inc"
#undef DIFFUSE_PHILOX_AVX2_ROUNDS
}  // namespace philox_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,prefer-vector-width=512")
// GCC 12 warns inside its own intrinsics (their deliberately undefined pass-through operand).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace philox_avx512 {
#define DIFFUSE_PHILOX_AVX512_ROUNDS 1
#include "philox_kernels.inc"
#undef DIFFUSE_PHILOX_AVX512_ROUNDS
}  // namespace philox_avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

}  // namespace

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  Blocks w;
  philox_base::init_blocks(w, 0, 1, ctr[1], ctr[2], ctr[3]);
  w.w0[0] = ctr[0];
  philox_base::rounds_portable(w, 1, key[0], key[1]);
  out[0] = w.w0[0];
  out[1] = w.w1[0];
  out[2] = w.w2[0];
  out[3] = w.w3[0];
}

void philox_box_muller(const uint32_t words[4], float z[4]) {
  Blocks w;
  w.w0[0] = words[0];
  w.w1[0] = words[1];
  w.w2[0] = words[2];
  w.w3[0] = words[3];
  philox_base::box_muller(w, 1, z);
}

namespace {

void normals_of(float* out, int64_t n, uint64_t seed, uint64_t sample, uint64_t draw, int64_t first,
                bool add, float scale) {
  const auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const auto c1 = static_cast<uint32_t>(draw), c2 = static_cast<uint32_t>(sample),
             c3 = static_cast<uint32_t>(sample >> 32) ^ static_cast<uint32_t>(draw >> 32);
#if DIFFUSE_PHILOX_DISPATCH
  switch (fused::kernel_isa()) {
    case fused::KernelIsa::kAvx512:
      return philox_avx512::normals(out, first, n, k0, k1, c1, c2, c3, add, scale);
    case fused::KernelIsa::kAvx2:
      return philox_avx2::normals(out, first, n, k0, k1, c1, c2, c3, add, scale);
    default:
      break;
  }
#endif
  philox_base::normals(out, first, n, k0, k1, c1, c2, c3, add, scale);
}

}  // namespace

void philox_normal(float* out, int64_t n, uint64_t seed, uint64_t sample, uint64_t draw,
                   int64_t first) {
  normals_of(out, n, seed, sample, draw, first, false, 0.0f);
}

void philox_add_normal(float* x, float c, int64_t n, uint64_t seed, uint64_t sample, uint64_t draw,
                       int64_t first) {
  normals_of(x, n, seed, sample, draw, first, true, c);
}

}  // namespace detail
}  // namespace diffuse
