// SPDX-License-Identifier: Apache-2.0
// The Brownian tree (<diffuse/brownian.h>): increments add up along the path, are N(0, dt) with
// independent disjoint pieces, the path does not depend on where or in which order it is queried,
// and each batch element's path depends on its seed alone.
#include <cmath>

#include "test_util.h"

#include <diffuse/brownian.h>

namespace diffuse {
namespace {

const c10::TensorOptions kBrownianF64 = at::TensorOptions().dtype(at::kDouble);

TEST(BrownianTree, IncrementsAddUpAndDoNotDependOnTheQueries) {
  const BrownianTree tree({11, 12}, {3, 5}, 0.03, 14.6);
  const Tensor whole = tree.increment(0.5, 9.0, kBrownianF64);
  ASSERT_EQ(whole.sizes(), (std::vector<int64_t>{2, 3, 5}));
  const Tensor parts = tree.increment(0.5, 2.0, kBrownianF64) +
                       tree.increment(2.0, 4.5, kBrownianF64) +
                       tree.increment(4.5, 9.0, kBrownianF64);
  testing::ExpectTensorNear(parts, whole, 1e-12, 0, "sum of pieces");
  // A fresh tree with the same seeds, queried on another grid first, has the same path.
  const BrownianTree again({11, 12}, {3, 5}, 0.03, 14.6);
  (void)again.increment(1.25, 7.0, kBrownianF64);
  testing::ExpectTensorNear(again.increment(0.5, 9.0, kBrownianF64), whole, 0, 0, "same path");
  // Reversed order is the negated increment; normalised = increment / sqrt(|dt|).
  testing::ExpectTensorNear(tree.increment(9.0, 0.5, kBrownianF64), -whole, 0, 0, "reversed");
  testing::ExpectTensorNear(tree.normalized(0.5, 9.0, kBrownianF64), whole / std::sqrt(8.5), 1e-15,
                            0, "normalised");
}

TEST(BrownianTree, EachSamplesPathDependsOnItsSeedAlone) {
  const BrownianTree pair({7, 8}, {4}, 0.1, 10.0);
  const BrownianTree single({8}, {4}, 0.1, 10.0);
  testing::ExpectTensorNear(pair.increment(0.2, 3.0, kBrownianF64)[1],
                            single.increment(0.2, 3.0, kBrownianF64)[0], 0, 0, "sample 1");
  EXPECT_GT((pair.increment(0.2, 3.0, kBrownianF64)[0] - pair.increment(0.2, 3.0, kBrownianF64)[1])
                .abs()
                .max()
                .item<double>(),
            1e-3);
}

// Many seeds: normalised increments are N(0, 1) and disjoint ones uncorrelated; overlapping ones
// [a, b], [a, c] have correlation sqrt((b - a) / (c - a)).
TEST(BrownianTree, IncrementsHaveBrownianStatistics) {
  std::vector<uint64_t> seeds;
  for (uint64_t i = 0; i < 1500; ++i) seeds.push_back(1000 + i);
  const BrownianTree tree(seeds, {1}, 0.0 + 0.01, 10.0);
  const Tensor z1 = tree.normalized(1.0, 3.0, kBrownianF64).reshape({-1});
  const Tensor z2 = tree.normalized(3.0, 7.5, kBrownianF64).reshape({-1});
  const Tensor z3 = tree.normalized(1.0, 9.0, kBrownianF64).reshape({-1});
  const double n = 1500;
  for (const Tensor& z : {z1, z2, z3}) {
    EXPECT_NEAR(z.mean().item<double>(), 0.0, 4.0 / std::sqrt(n));
    EXPECT_NEAR(z.var().item<double>(), 1.0, 4.0 * std::sqrt(2.0 / n));
  }
  EXPECT_NEAR((z1 * z2).mean().item<double>(), 0.0, 4.0 / std::sqrt(n));
  EXPECT_NEAR((z1 * z3).mean().item<double>(), std::sqrt(2.0 / 8.0), 4.0 / std::sqrt(n));
}

TEST(BrownianTree, BadArgumentsAreErrors) {
  EXPECT_THROW(BrownianTree({}, {1}, 0, 1), Error);
  EXPECT_THROW(BrownianTree({1}, {1}, 1, 1), Error);
  EXPECT_THROW(BrownianTree({1}, {1}, 0, std::nan("")), Error);
  EXPECT_THROW(BrownianTree({1}, {1}, 0, 1, 0.0), Error);
  const BrownianTree t({1}, {1}, 0, 1);
  EXPECT_THROW(t.normalized(0.5, 0.5, kBrownianF64), Error);
}

}  // namespace
}  // namespace diffuse
