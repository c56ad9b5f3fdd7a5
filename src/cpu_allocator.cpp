// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/cpu_allocator.h>.
#include <diffuse/cpu_allocator.h>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include <diffuse/config.h>

namespace diffuse {

namespace {

constexpr size_t kAlignment = 64;  // LibTorch's c10::gAlignment

/// The size class of a request: 4 classes per power of two above 256 bytes (at most 25% slack),
/// multiples of 64 below.
size_t size_class(size_t n) {
  if (n <= 256) return (n + 63) / 64 * 64;
  size_t p = 1;
  while (p <= n / 2) p <<= 1;  // the largest power of two <= n
  const size_t step = p / 4;
  return (n + step - 1) / step * step;
}

void* aligned_malloc(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, kAlignment, bytes) != 0 || p == nullptr) throw std::bad_alloc();
  return p;
}

/// The process-wide pool. Never destroyed: tensors freed during static destruction still find it.
class Pool {
 public:
  void* take(size_t n) {
    const size_t k = size_class(n);
    // One critical section on a hit; a miss mallocs outside the lock, then registers the block.
    void* p = nullptr;
    int64_t in_use = 0, reserved = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++allocations_;
      auto it = free_.find(k);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= static_cast<int64_t>(k);
        --cached_blocks_;
        ++hits_;
        in_use = register_live(p, k, n);
        reserved = in_use_ + cached_bytes_;
      }
    }
    if (p == nullptr) {
      p = aligned_malloc(k);
      std::lock_guard<std::mutex> lock(mutex_);
      in_use = register_live(p, k, n);
      reserved = in_use_ + cached_bytes_;
    }
    report(p, static_cast<int64_t>(n), in_use, reserved);
    return p;
  }

  void give_back(void* p) {
    if (p == nullptr) return;
    bool cached = false;
    int64_t requested = 0, in_use = 0, reserved = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = live_.find(p);
      if (it != live_.end()) {
        const size_t k = it->second.klass;
        requested = static_cast<int64_t>(it->second.requested);
        live_.erase(it);
        in_use_ -= static_cast<int64_t>(k);
        if (enabled_ && cached_bytes_ + static_cast<int64_t>(k) <= max_cached_) {
          free_[k].push_back(p);
          cached_bytes_ += static_cast<int64_t>(k);
          ++cached_blocks_;
          cached = true;
        }
        in_use = in_use_;
        reserved = in_use_ + cached_bytes_;
      }
    }
    if (requested > 0) report(p, -requested, in_use, reserved);
    if (!cached) std::free(p);
  }

  void set_enabled(bool on, int64_t max_cached) {
    std::lock_guard<std::mutex> lock(mutex_);
    enabled_ = on;
    if (on) {
      max_cached_ = max_cached;
      allocations_ = hits_ = 0;
    }
  }
  bool enabled() {
    std::lock_guard<std::mutex> lock(mutex_);
    return enabled_;
  }

  void empty() {
    std::vector<void*> release;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [k, blocks] : free_) {
        release.insert(release.end(), blocks.begin(), blocks.end());
        blocks.clear();
      }
      free_.clear();
      cached_bytes_ = 0;
      cached_blocks_ = 0;
    }
    for (void* p : release) std::free(p);
  }

  CachingCpuAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    CachingCpuAllocatorStats s;
    s.allocations = allocations_;
    s.hits = hits_;
    s.in_use_bytes = in_use_;
    s.cached_bytes = cached_bytes_;
    s.cached_blocks = cached_blocks_;
    return s;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  struct Block {
    size_t klass, requested;
  };
  /// Records a block handed out (mutex_ held); returns the bytes now in use.
  int64_t register_live(void* p, size_t k, size_t n) {
    live_.emplace(p, Block{k, n});
    in_use_ += static_cast<int64_t>(k);
    return in_use_;
  }
  /// Tell LibTorch's memory profiler (and the benches' peak-memory hooks), as its own CPU
  /// allocator does: the requested size, negative for a free.
  static void report(void* p, int64_t bytes, int64_t in_use, int64_t reserved) {
    if (!c10::memoryProfilingEnabled()) return;
    c10::reportMemoryUsageToProfiler(p, bytes, static_cast<size_t>(in_use),
                                     static_cast<size_t>(reserved),
                                     c10::Device(c10::DeviceType::CPU));
  }
  std::unordered_map<void*, Block> live_;
  bool enabled_ = false;
  int64_t max_cached_ = 0, cached_bytes_ = 0, cached_blocks_ = 0, in_use_ = 0;
  int64_t allocations_ = 0, hits_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // intentionally leaked (see Pool)
  return *p;
}

void delete_pooled(void* p) { pool().give_back(p); }

// The allocator LibTorch calls. LibTorch < 2.3 declares allocate() const and has no copy_data();
// later versions declare allocate() non-const and copy_data() pure virtual. Both allocate()
// overloads and copy_data() are defined without `override`, so each version's virtuals are
// implemented by the matching one (and none says `override`, which clang would want everywhere
// once one does).
class CachingCpuAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) const { return make(n); }
  c10::DataPtr allocate(size_t n) { return make(n); }
  c10::DeleterFnPtr raw_deleter() const { return &delete_pooled; }
  void copy_data(void* dest, const void* src, std::size_t count) const {
    if (count > 0) std::memcpy(dest, src, count);
  }

 private:
  static c10::DataPtr make(size_t n) {
    if (n == 0) return {nullptr, nullptr, &delete_pooled, c10::Device(c10::DeviceType::CPU)};
    void* p = pool().take(n);
    return {p, p, &delete_pooled, c10::Device(c10::DeviceType::CPU)};
  }
};

CachingCpuAllocator& allocator() {
  static CachingCpuAllocator* a = new CachingCpuAllocator();  // static lifetime, as LibTorch asks
  return *a;
}

std::mutex& switch_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

void enable_caching_cpu_allocator(int64_t max_cached_bytes) {
  check(max_cached_bytes >= 0, "enable_caching_cpu_allocator: max_cached_bytes must be >= 0, got ",
        max_cached_bytes);
  std::lock_guard<std::mutex> lock(switch_mutex());
  pool().set_enabled(true, max_cached_bytes);
  // Priority above LibTorch's default registration (0), so nothing it registers later replaces it.
  c10::SetCPUAllocator(&allocator(), /*priority=*/1);
}

void disable_caching_cpu_allocator() {
  std::lock_guard<std::mutex> lock(switch_mutex());
  if (c10::GetCPUAllocator() == &allocator())
    c10::SetCPUAllocator(c10::GetDefaultCPUAllocator(), /*priority=*/1);
  pool().set_enabled(false, 0);
  pool().empty();
}

bool caching_cpu_allocator_enabled() { return c10::GetCPUAllocator() == &allocator(); }

void empty_cpu_cache() { pool().empty(); }

CachingCpuAllocatorStats caching_cpu_allocator_stats() { return pool().stats(); }

CachingCpuAllocatorGuard::CachingCpuAllocatorGuard(int64_t max_cached_bytes)
    : was_enabled_(caching_cpu_allocator_enabled()) {
  if (!was_enabled_) enable_caching_cpu_allocator(max_cached_bytes);
}

CachingCpuAllocatorGuard::~CachingCpuAllocatorGuard() {
  if (!was_enabled_) disable_caching_cpu_allocator();
}

}  // namespace diffuse
