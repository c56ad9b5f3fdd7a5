// SPDX-License-Identifier: Apache-2.0
// The caching CPU allocator: buffers are reused, nothing leaks, results are bit-identical, and it
// is safe from many threads and across enabling / disabling.
#include <diffuse/cpu_allocator.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.h"

namespace diffuse {
namespace {

TEST(CachingCpuAllocator, ReusesFreedBuffersAndReleasesThem) {
  ASSERT_FALSE(caching_cpu_allocator_enabled());
  {
    CachingCpuAllocatorGuard guard;
    EXPECT_TRUE(caching_cpu_allocator_enabled());
    const int64_t in_use0 = caching_cpu_allocator_stats().in_use_bytes;
    { const Tensor a = at::empty({1 << 18}, at::kFloat); }  // 1 MiB
    const CachingCpuAllocatorStats after_free = caching_cpu_allocator_stats();
    EXPECT_EQ(after_free.in_use_bytes, in_use0);
    EXPECT_GE(after_free.cached_bytes, int64_t{1} << 20);
    const int64_t hits = after_free.hits;
    {
      const Tensor b = at::empty({1 << 18}, at::kFloat);  // the same size: from the cache
      EXPECT_EQ(caching_cpu_allocator_stats().hits, hits + 1);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr()) % 64, 0u);
    }
    // A loop of the same few sizes stops allocating after its first round.
    for (int round = 0; round < 3; ++round) {
      const CachingCpuAllocatorStats before = caching_cpu_allocator_stats();
      Tensor x = at::ones({64, 1024}, at::kDouble);
      for (int i = 0; i < 5; ++i) x = x * 1.5 + 1.0;
      const CachingCpuAllocatorStats s = caching_cpu_allocator_stats();
      if (round > 0) {
        EXPECT_EQ(s.hits - before.hits, s.allocations - before.allocations) << round;
      }
    }
    empty_cpu_cache();
    EXPECT_EQ(caching_cpu_allocator_stats().cached_bytes, 0);
    EXPECT_EQ(caching_cpu_allocator_stats().cached_blocks, 0);
  }
  EXPECT_FALSE(caching_cpu_allocator_enabled());
  EXPECT_EQ(caching_cpu_allocator_stats().cached_bytes, 0);
}

TEST(CachingCpuAllocator, TensorsOutliveItAndTheCacheIsBounded) {
  Tensor kept;
  {
    CachingCpuAllocatorGuard guard(/*max_cached_bytes=*/0);
    kept = at::arange(100000, at::kFloat);
    { const Tensor t = at::empty({1 << 16}, at::kFloat); }
    EXPECT_EQ(caching_cpu_allocator_stats().cached_bytes, 0);  // a cap of 0 caches nothing
  }
  EXPECT_FALSE(caching_cpu_allocator_enabled());
  // Allocated by the pool, freed after it was switched off: back to malloc.
  const int64_t in_use = caching_cpu_allocator_stats().in_use_bytes;
  EXPECT_GT(in_use, 0);
  EXPECT_EQ(kept[99999].item<float>(), 99999.0f);
  kept = Tensor();
  EXPECT_LT(caching_cpu_allocator_stats().in_use_bytes, in_use);
  EXPECT_EQ(caching_cpu_allocator_stats().cached_bytes, 0);
  EXPECT_ERROR_NAMING(enable_caching_cpu_allocator(-1), "max_cached_bytes must be >= 0");
  EXPECT_FALSE(caching_cpu_allocator_enabled());
}

TEST(CachingCpuAllocator, SamplingIsBitIdentical) {
  auto schedule = make_schedule("discrete");
  const Denoiser d([](const Tensor& x, const Tensor& t, const Conditioning&) {
    return x.tanh() * 0.4 + t.view({-1, 1, 1, 1}) * 1e-4;
  });
  const Tensor noise = randn({4, 4, 32, 32}, 3, at::kFloat);
  for (const char* name : {"ddim", "dpmpp_3m", "euler_a", "ddpm"}) {
    SCOPED_TRACE(name);
    SampleOptions o;
    o.num_steps = 12;
    o.seed = 5;
    const Tensor plain = sample(*make_sampler(name), d, *schedule, noise, o);
    Tensor pooled;
    {
      CachingCpuAllocatorGuard guard;
      pooled = sample(*make_sampler(name), d, *schedule, noise, o);
      pooled = sample(*make_sampler(name), d, *schedule, noise, o);  // from a warm cache
    }
    EXPECT_TRUE(at::equal(plain, pooled));
  }
}

TEST(CachingCpuAllocator, ManyThreadsAllocateAndFreeConcurrently) {
  CachingCpuAllocatorGuard guard;
  const int64_t in_use0 = caching_cpu_allocator_stats().in_use_bytes;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &wrong] {
      for (int i = 0; i < 300; ++i) {
        const int64_t n = 1000 + ((i * 7919 + t * 104729) % 200000);
        const Tensor a = at::full({n}, static_cast<double>(t + 1), at::kDouble);
        const Tensor b = a * 2.0 + 1.0;
        if (b.sum().item<double>() != static_cast<double>(n) * (2.0 * (t + 1) + 1.0)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(caching_cpu_allocator_stats().in_use_bytes, in_use0);
}

}  // namespace
}  // namespace diffuse
