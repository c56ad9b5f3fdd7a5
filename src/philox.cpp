// SPDX-License-Identifier: Apache-2.0
// make_philox_noise of <diffuse/noise.h>: Philox4x32-10 and a branch-free float32 Box-Muller.
#include <diffuse/noise.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include <ATen/Parallel.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/detail/fused.h>

// The AVX2 and AVX-512 copies need GCC on x86-64 (as the fused kernels of fused_kernels.cpp).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__FAST_MATH__)
#define DIFFUSE_PHILOX_DISPATCH 1
#include <immintrin.h>
#else
#define DIFFUSE_PHILOX_DISPATCH 0
#endif

// The same numbers from every compiler and instruction set: no a * b + c fused into one rounding
// (GCC contracts by default in C++, clang within expressions). The option covers exactly the
// functions below (push / pop: this file may share a unity translation unit), which call only
// builtins, so that everything inlines into the loops (GCC inlines neither across differing
// optimisation options nor into another instruction set's function: hence one copy of the loops
// per set, src/philox_kernels.inc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
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

inline void philox_block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                         uint32_t k1, uint32_t* out) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

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
#include "philox_kernels.inc"
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

/// Normals first .. first + n (first a multiple of 4) of make_philox_noise(seed)'s stream for
/// (sample, draw), by the kernels in use.
void normals_range(float* out, int64_t first, int64_t n, uint64_t seed, uint64_t sample,
                   uint64_t draw) {
  const auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const auto c1 = static_cast<uint32_t>(draw), c2 = static_cast<uint32_t>(sample),
             c3 = static_cast<uint32_t>(sample >> 32) ^ static_cast<uint32_t>(draw >> 32);
#if DIFFUSE_PHILOX_DISPATCH
  switch (fused::kernel_isa()) {
    case fused::KernelIsa::kAvx512:
      return philox_avx512::normals(out, first, n, k0, k1, c1, c2, c3);
    case fused::KernelIsa::kAvx2:
      return philox_avx2::normals(out, first, n, k0, k1, c1, c2, c3);
    default:
      break;
  }
#endif
  philox_base::normals(out, first, n, k0, k1, c1, c2, c3);
}

}  // namespace

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  philox_block(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], out);
}

void philox_normal(float* out, int64_t n, uint64_t seed, uint64_t sample, uint64_t draw) {
  normals_range(out, 0, n, seed, sample, draw);
}

}  // namespace detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

namespace {

class PhiloxNoise final : public NoiseSource {
 public:
  explicit PhiloxNoise(uint64_t seed) : seed_(seed) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    check(!shape.empty(), "philox noise needs a batch dimension, got a 0-d shape");
    Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
    const int64_t batch = shape[0];
    if (batch > 0 && out.numel() > 0) {
      // Counter-based: any segment of any sample can be drawn on its own, so the segments run on
      // the intra-op threads (at least 8192 normals per task; the same numbers on any count).
      const int64_t per = out.numel() / batch;
      constexpr int64_t kSegment = 2048;  // a multiple of 4: segments start at a block
      const int64_t segments = (per + kSegment - 1) / kSegment;
      float* data = out.data_ptr<float>();
      const uint64_t seed = seed_, draw = draw_;
      at::parallel_for(0, batch * segments, 4, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t i = t / segments, first = (t % segments) * kSegment;
          detail::normals_range(data + i * per + first, first, std::min(kSegment, per - first),
                                seed, static_cast<uint64_t>(i), draw);
        }
      });
    }
    ++draw_;
    return out.to(options.device(), options.dtype().toScalarType());
  }

 private:
  uint64_t seed_;
  uint64_t draw_ = 0;
};

}  // namespace

std::unique_ptr<NoiseSource> make_philox_noise(uint64_t seed) {
  return std::make_unique<PhiloxNoise>(seed);
}

}  // namespace diffuse
