// SPDX-License-Identifier: Apache-2.0
// A caching CPU allocator for LibTorch.
//
// LibTorch's CPU allocator is plain malloc: glibc hands buffers of 128 KiB and more back to the
// operating system when they are freed (mmap / trim thresholds), so a sampling loop that
// allocates the same few tensors every step page-faults them in again every step (a perf profile
// of DDIM at [16, 4, 64, 64]: a quarter of the time in kernel fault handling, and run times that
// depend on malloc's adaptive thresholds). This allocator keeps freed buffers in per-size free
// lists and hands them out again: a loop that allocates the same sizes each step stops touching
// the operating system after its first step. Results are bit-identical (only where memory comes
// from changes).
//
// It is process-wide (c10::SetCPUAllocator), thread-safe (one mutex around its free lists), and
// off by default in the library; the diffuse CLI turns it on. Every request is rounded up to a
// size class (multiples of 64 bytes up to 256, then 4 classes per power of two: at most 25%
// slack) and 64-byte aligned like LibTorch's. Freed buffers are cached up to
// `max_cached_bytes` (beyond it they go back to malloc); empty_cpu_cache() releases them all.
// Tensors allocated while it is on may outlive it: their memory returns to malloc when freed.
//
//   diffuse::CachingCpuAllocatorGuard pool;   // on for this scope
//   ... sample / train ...
#pragma once

#include <cstdint>

namespace diffuse {

struct CachingCpuAllocatorStats {
  int64_t allocations = 0;    ///< pooled requests served since enabling (hits + misses)
  int64_t hits = 0;           ///< served from the cache
  int64_t in_use_bytes = 0;   ///< pooled bytes held by live tensors
  int64_t cached_bytes = 0;   ///< bytes in the free lists
  int64_t cached_blocks = 0;  ///< buffers in the free lists
};

/// Installs the caching allocator as LibTorch's CPU allocator (if it is not already), caching at
/// most max_cached_bytes of freed buffers (default 4 GiB; >= 0). Not to be called while another
/// thread allocates tensors (LibTorch's SetCPUAllocator is not thread-safe).
void enable_caching_cpu_allocator(int64_t max_cached_bytes = int64_t{4} << 30);
/// Restores LibTorch's default CPU allocator and releases the cache. Live tensors keep their
/// memory; it goes back to malloc when they are freed.
void disable_caching_cpu_allocator();
bool caching_cpu_allocator_enabled();
/// Returns every cached buffer to malloc.
void empty_cpu_cache();
CachingCpuAllocatorStats caching_cpu_allocator_stats();

/// enable_caching_cpu_allocator for a scope; restores the previous state (on or off) at its end.
class CachingCpuAllocatorGuard {
 public:
  explicit CachingCpuAllocatorGuard(int64_t max_cached_bytes = int64_t{4} << 30);
  ~CachingCpuAllocatorGuard();
  CachingCpuAllocatorGuard(const CachingCpuAllocatorGuard&) = delete;
  CachingCpuAllocatorGuard& operator=(const CachingCpuAllocatorGuard&) = delete;

 private:
  bool was_enabled_;
};

}  // namespace diffuse
