// SPDX-License-Identifier: Apache-2.0
// make_philox_noise: Philox4x32-10 against Random123's known answers, the normals against a
// double-precision Box-Muller of the same words (libm's log / cos / sin; random words and the
// ends of the ranges), their distribution, and
// the counter-based contract (batch-size and draw-order independence, determinism), and the same
// bits from every instruction set and thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/Parallel.h>

#include <diffuse/detail/fused.h>
#include <diffuse/detail/philox.h>
#include <diffuse/tensor_ops.h>

#include "test_util.h"

namespace diffuse {
namespace {

TEST(PhiloxNoise, Random123KnownAnswers) {
  // Random123's tests/kat_vectors for philox4x32 with 10 rounds.
  struct Kat {
    uint32_t ctr[4], key[2], out[4];
  };
  const Kat kats[] = {{{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
                      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                       {0xffffffffu, 0xffffffffu},
                       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
                      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                       {0xa4093822u, 0x299f31d0u},
                       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}};
  for (const Kat& k : kats) {
    uint32_t out[4];
    detail::philox4x32_10(k.ctr, k.key, out);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], k.out[i]) << i;
  }
}

TEST(PhiloxNoise, NormalsAreBoxMullerOfTheWords) {
  // The float32 log / sin / cos approximations against libm in double, on 2^17 pairs.
  const uint64_t seed = 0x123456789abcdefull, sample = 3, draw = 7;
  const int64_t n = int64_t{1} << 18;
  std::vector<float> z(static_cast<size_t>(n));
  detail::philox_normal(z.data(), n, seed, sample, draw);
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  double worst = 0;
  for (int64_t b = 0; b < n / 4; ++b) {
    const uint32_t ctr[4] = {static_cast<uint32_t>(b), static_cast<uint32_t>(draw),
                             static_cast<uint32_t>(sample), 0};
    uint32_t w[4];
    detail::philox4x32_10(ctr, key, w);
    for (int p = 0; p < 2; ++p) {
      const double u1 = (static_cast<double>(w[2 * p] >> 9) + 0.5) / 8388608.0;
      const double u2 = static_cast<double>(w[2 * p + 1] >> 8) / 16777216.0;
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double angle = 2.0 * M_PI * u2;
      const double e0 = r * std::cos(angle), e1 = r * std::sin(angle);
      worst = std::max(worst, std::abs(z[static_cast<size_t>(4 * b + 2 * p)] - e0));
      worst = std::max(worst, std::abs(z[static_cast<size_t>(4 * b + 2 * p + 1)] - e1));
    }
  }
  EXPECT_LT(worst, 1e-6) << "largest |float32 approximation - libm double|";
}

// The words at the ends of the ranges: u1 next to 0 and 1 (the largest and the smallest radius),
// the angle at and next to every quarter turn and half quarter (where the reduction switches
// quadrant), and next to a full turn.
TEST(PhiloxNoise, BoxMullerAtTheEdgesOfItsRanges) {
  std::vector<uint32_t> radius_words = {0u,          0x1ffu,      0x200u,      0x7fffffffu,
                                        0x80000000u, 0xfffffdffu, 0xfffffe00u, 0xffffffffu};
  for (uint32_t j = 1; j < (1u << 23); j *= 3) radius_words.push_back(j << 9);  // other octaves
  std::vector<uint32_t> angle_words;
  for (uint32_t eighth = 0; eighth <= 8; ++eighth) {
    for (const int64_t d : {-1, 0, 1}) {
      const int64_t k = static_cast<int64_t>(eighth) * 0x200000 + d;  // 24-bit angle index
      if (k >= 0 && k < (int64_t{1} << 24)) angle_words.push_back(static_cast<uint32_t>(k) << 8);
    }
  }
  double worst = 0;
  for (const uint32_t a : radius_words) {
    for (const uint32_t b : angle_words) {
      const uint32_t words[4] = {a, b, ~a, b};
      float z[4];
      detail::philox_box_muller(words, z);
      for (int p = 0; p < 2; ++p) {
        const double u1 = (static_cast<double>(words[2 * p] >> 9) + 0.5) / 8388608.0;
        const double angle = 2.0 * M_PI * static_cast<double>(words[2 * p + 1] >> 8) / 16777216.0;
        const double r = std::sqrt(-2.0 * std::log(u1));
        worst = std::max(worst, std::abs(z[2 * p] - r * std::cos(angle)));
        worst = std::max(worst, std::abs(z[2 * p + 1] - r * std::sin(angle)));
      }
    }
  }
  EXPECT_LT(worst, 1e-6) << "largest |float32 approximation - libm double|";
}

TEST(PhiloxNoise, IsStandardNormal) {
  auto noise = make_philox_noise(2026);
  const Tensor z = noise->randn({4, 1 << 18}, at::TensorOptions().dtype(at::kDouble)).reshape(-1);
  const double n = static_cast<double>(z.numel());
  const double mean = z.mean().item<double>(), var = z.var().item<double>();
  EXPECT_LT(std::abs(mean), 5.0 / std::sqrt(n));
  EXPECT_LT(std::abs(var - 1.0), 5.0 * std::sqrt(2.0 / n));
  const Tensor c = z - mean;
  EXPECT_LT(std::abs((c.pow(3).mean() / std::pow(var, 1.5)).item<double>()),
            5.0 * std::sqrt(6 / n));
  EXPECT_LT(std::abs((c.pow(4).mean() / (var * var)).item<double>() - 3.0),
            5.0 * std::sqrt(24 / n));
  // Kolmogorov-Smirnov against Phi: the 1e-4 critical value is about 2.1 / sqrt(n).
  const Tensor sorted = std::get<0>(z.sort());
  const Tensor cdf = 0.5 * (1.0 + at::erf(sorted / std::sqrt(2.0)));
  const Tensor ranks = at::arange(1, z.numel() + 1, at::kDouble) / n;
  const double ks = std::max((ranks - cdf).abs().max().item<double>(),
                             (cdf - (ranks - 1.0 / n)).abs().max().item<double>());
  EXPECT_LT(ks, 2.1 / std::sqrt(n));
  EXPECT_TRUE(at::isfinite(z).all().item<bool>());
}

TEST(PhiloxNoise, CounterBasedContract) {
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  auto a = make_philox_noise(9), b = make_philox_noise(9), other = make_philox_noise(10);
  const Tensor a0 = a->randn({4, 3, 5}, opts), a1 = a->randn({4, 3, 5}, opts);
  const Tensor b0 = b->randn({8, 3, 5}, opts), b1 = b->randn({2, 3, 5}, opts);
  // Sample i of draw k does not depend on the batch size.
  EXPECT_TRUE(at::equal(a0, b0.narrow(0, 0, 4)));
  EXPECT_TRUE(at::equal(a1.narrow(0, 0, 2), b1));
  // Draws, samples and seeds differ.
  EXPECT_FALSE(at::equal(a0, a1));
  EXPECT_FALSE(at::equal(a0.select(0, 0), a0.select(0, 1)));
  EXPECT_FALSE(at::equal(a0, other->randn({4, 3, 5}, opts)));
  // An odd element count per sample is the prefix of a longer one.
  auto c = make_philox_noise(9), d = make_philox_noise(9);
  EXPECT_TRUE(at::equal(c->randn({2, 7}, opts), d->randn({2, 1029}, opts).narrow(1, 0, 7)));
  // dtype: float32 numbers, widened.
  auto e = make_philox_noise(9);
  EXPECT_TRUE(
      at::equal(e->randn({4, 3, 5}, at::TensorOptions().dtype(at::kDouble)), a0.to(at::kDouble)));
}

// Every kernel instruction set, and the segments drawn on 1 or 2 intra-op threads, give the
// bits of the baseline loops drawing each sample whole: samples of 5000 normals span three 2048
// segments and end inside a Philox block.
TEST(PhiloxNoise, SameBitsOnEveryInstructionSetAndThreadCount) {
  namespace fused = detail::fused;
  const fused::KernelIsa before = fused::kernel_isa();
  const int threads_before = at::get_num_threads();
  fused::set_kernel_isa(fused::KernelIsa::kBaseline);
  std::vector<float> want(3 * 5000);
  for (int i = 0; i < 3; ++i) detail::philox_normal(want.data() + i * 5000, 5000, 77, i, 0);
  const Tensor expected = at::from_blob(want.data(), {3, 5000}, at::kFloat).clone();
  for (const fused::KernelIsa isa : fused::supported_kernel_isas()) {
    for (const int threads : {1, 2}) {
      fused::set_kernel_isa(isa);
      at::set_num_threads(threads);
      const Tensor z = make_philox_noise(77)->randn({3, 5000}, at::TensorOptions());
      EXPECT_TRUE(at::equal(z, expected))
          << fused::kernel_isa_name(isa) << ", " << threads << " thread(s)";
    }
  }
  at::set_num_threads(threads_before);
  fused::set_kernel_isa(before);
}

// add_randn_ (x += z c without materialising z on the fused float32 path) has the bits of
// add_scaled_(x, randn_like(x), c) and takes one draw, on every instruction set and thread count;
// float64, a view with strides and the other sources take the default path.
TEST(PhiloxNoise, AddRandnHasTheBitsOfAddScaled) {
  namespace fused = detail::fused;
  const fused::KernelIsa before = fused::kernel_isa();
  const int threads_before = at::get_num_threads();
  const double c = 0.3711;
  for (const fused::KernelIsa isa : fused::supported_kernel_isas()) {
    for (const int threads : {1, 2}) {
      fused::set_kernel_isa(isa);
      at::set_num_threads(threads);
      for (const auto dtype : {at::kFloat, at::kDouble}) {
        for (const std::vector<int64_t>& shape :
             {std::vector<int64_t>{3, 5000}, {2, 7}, {1, 1}, {4, 3, 8, 8}}) {
          const Tensor x = at::randn(shape, at::TensorOptions().dtype(dtype));
          auto fused_source = make_philox_noise(5), plain_source = make_philox_noise(5);
          Tensor a = x.clone(), b = x.clone();
          for (int draw = 0; draw < 2; ++draw) {  // the second draw checks the draw counter
            fused_source->add_randn_(a, c);
            add_scaled_(b, plain_source->randn_like(b), c);
          }
          EXPECT_TRUE(at::equal(a, b)) << fused::kernel_isa_name(isa) << ", " << threads
                                       << " thread(s), " << dtype << ", " << x.sizes();
        }
      }
    }
  }
  at::set_num_threads(threads_before);
  fused::set_kernel_isa(before);
  // A strided view and the default implementation of the other sources.
  const Tensor base = at::randn({4, 6});
  Tensor v = base.clone().t(), w = base.clone().t();
  make_philox_noise(3)->add_randn_(v, c);
  add_scaled_(w, make_philox_noise(3)->randn_like(w), c);
  EXPECT_TRUE(at::equal(v, w));
  Tensor p = base.clone(), q = base.clone();
  make_per_sample_noise(3)->add_randn_(p, c);
  add_scaled_(q, make_per_sample_noise(3)->randn_like(q), c);
  EXPECT_TRUE(at::equal(p, q));
}

}  // namespace
}  // namespace diffuse
