// SPDX-License-Identifier: Apache-2.0
// make_philox_noise of <diffuse/noise.h>: Philox4x32-10 and a branch-free float32 Box-Muller.
#include <diffuse/noise.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>

// The same numbers from every compiler and instruction set: no a * b + c fused into one rounding
// (GCC contracts by default in C++, clang within expressions). The option covers exactly the
// functions below (push / pop: this file may share a unity translation unit), which call only
// builtins, so that everything inlines into the loop (GCC does not inline across differing
// optimisation options).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
// Runtime dispatch on x86-64 with GCC: an AVX2 clone of the loop (the same IEEE operations, so
// the same numbers; no FMA) chosen at load time, the baseline otherwise.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define DIFFUSE_PHILOX_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DIFFUSE_PHILOX_CLONES
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

inline float bits_to_float(uint32_t b) {
  float f;
  __builtin_memcpy(&f, &b, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  __builtin_memcpy(&b, &f, sizeof b);
  return b;
}

/// ln(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln(m) = 2 atanh(s),
/// s = (m - 1) / (m + 1), |s| <= 0.172, by its series to s^11 (relative error < 1e-9 before
/// float rounding).
inline float log_unit(float u) {
  DIFFUSE_NO_CONTRACT_BLOCK
  const uint32_t b = float_to_bits(u);
  int32_t e = static_cast<int32_t>((b >> 23) & 0xffu) - 127;
  float m = bits_to_float((b & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  // Branch-free (the loop vectorises): big = 1 when m > sqrt(2), then m / 2 and e + 1 (exact).
  const int32_t big = static_cast<int32_t>(m > 1.41421356f);
  m = m * (1.0f - 0.5f * static_cast<float>(big));
  e += big;
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float poly =
      1.0f +
      s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11)))));
  return static_cast<float>(e) * 0.693147180559945f + 2.0f * s * poly;
}

/// sqrt(x) for x in [1e-7, 64] without libm (a correctly rounded sqrt keeps errno handling, which
/// stops GCC vectorising the loop): the classic bit-level guess of 1 / sqrt(x), three Newton steps
/// (relative error below 1e-7), times x.
inline float sqrt_pos(float x) {
  DIFFUSE_NO_CONTRACT_BLOCK
  float y = bits_to_float(0x5f3759dfu - (float_to_bits(x) >> 1));
  const float h = 0.5f * x;
  y = y * (1.5f - h * y * y);
  y = y * (1.5f - h * y * y);
  y = y * (1.5f - h * y * y);
  return x * y;
}

/// sin and cos of 2 pi v for v in [0, 1): quadrant q = floor(4 v), t = (4 v - q) pi / 2 in
/// [0, pi / 2), Taylor polynomials to t^13 / t^14 (error < 1e-7), then the quadrant's signs.
inline void sincos_turn(float v, float* sn, float* cs) {
  DIFFUSE_NO_CONTRACT_BLOCK
  const float w = v * 4.0f;
  const int32_t q = static_cast<int32_t>(w);  // 0..3 (w >= 0)
  const float t = (w - static_cast<float>(q)) * 1.57079632679490f;
  const float t2 = t * t;
  const float s =
      t * (1.0f + t2 * (-1.0f / 6 +
                        t2 * (1.0f / 120 +
                              t2 * (-1.0f / 5040 +
                                    t2 * (1.0f / 362880 + t2 * (-1.0f / 39916800 +
                                                                t2 * (1.0f / 6227020800.0f)))))));
  const float c =
      1.0f +
      t2 * (-0.5f + t2 * (1.0f / 24 +
                          t2 * (-1.0f / 720 + t2 * (1.0f / 40320 +
                                                    t2 * (-1.0f / 3628800 +
                                                          t2 * (1.0f / 479001600 +
                                                                t2 * (-1.0f / 87178291200.0f)))))));
  // q = 0: (s, c); 1: (c, -s); 2: (-s, -c); 3: (-c, s). Branch-free, exact: the swap weights
  // are 0 and 1, the signs +-1.
  const float odd = static_cast<float>(q & 1);
  const float a = s * (1.0f - odd) + c * odd, bb = c * (1.0f - odd) + s * odd;
  *sn = a * (1.0f - 2.0f * static_cast<float>(q >> 1));
  *cs = bb * (1.0f - 2.0f * static_cast<float>(((q + 1) >> 1) & 1));
}

}  // namespace

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  philox_block(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], out);
}

DIFFUSE_PHILOX_CLONES
void philox_normal(float* out, int64_t n, uint64_t seed, uint64_t sample, uint64_t draw) {
  DIFFUSE_NO_CONTRACT_BLOCK
  const auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const auto c1 = static_cast<uint32_t>(draw), c2 = static_cast<uint32_t>(sample),
             c3 = static_cast<uint32_t>(sample >> 32) ^ static_cast<uint32_t>(draw >> 32);
  uint32_t words[kChunk * 4];
  float z[kChunk * 4];
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b0 = 0; b0 < blocks; b0 += kChunk) {
    const int64_t nb = blocks - b0 < kChunk ? blocks - b0 : kChunk;
    for (int64_t b = 0; b < nb; ++b)
      philox_block(static_cast<uint32_t>(b0 + b), c1, c2, c3, k0, k1, words + 4 * b);
    // Box-Muller on the pairs (w0, w1), (w2, w3): u1 = (top 23 bits + 1/2) / 2^23 in (0, 1)
    // (never 0, and exact in float32), u2 = top 24 bits / 2^24 in [0, 1).
    for (int64_t p = 0; p < 2 * nb; ++p) {
      const float u1 = (static_cast<float>(words[2 * p] >> 9) + 0.5f) * 1.1920928955078125e-7f;
      const float u2 = static_cast<float>(words[2 * p + 1] >> 8) * 5.9604644775390625e-8f;
      const float r = sqrt_pos(-2.0f * log_unit(u1));
      float sn = 0, cs = 0;
      sincos_turn(u2, &sn, &cs);
      z[2 * p] = r * cs;
      z[2 * p + 1] = r * sn;
    }
    const int64_t first = 4 * b0, count = 4 * nb < n - first ? 4 * nb : n - first;
    __builtin_memcpy(out + first, z, static_cast<size_t>(count) * sizeof(float));
  }
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
    if (batch > 0) {
      const int64_t per = out.numel() / batch;
      float* data = out.data_ptr<float>();
      for (int64_t i = 0; i < batch; ++i)
        detail::philox_normal(data + i * per, per, seed_, static_cast<uint64_t>(i), draw_);
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
