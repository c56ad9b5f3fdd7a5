// SPDX-License-Identifier: Apache-2.0
#include <diffuse/detail/xxh64.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include <diffuse/config.h>

namespace diffuse::detail {

namespace {

constexpr uint64_t kXxhP1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t kXxhP2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t kXxhP3 = 0x165667B19E3779F9ull;
constexpr uint64_t kXxhP4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t kXxhP5 = 0x27D4EB2F165667C5ull;

inline uint64_t xxh_rotl(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

// Little-endian loads (the specification reads the input as little-endian words).
inline uint64_t xxh_load64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t xxh_load32(const unsigned char* p) {
  return static_cast<uint64_t>(p[0]) | static_cast<uint64_t>(p[1]) << 8 |
         static_cast<uint64_t>(p[2]) << 16 | static_cast<uint64_t>(p[3]) << 24;
}

inline uint64_t xxh_round(uint64_t acc, uint64_t lane) {
  acc += lane * kXxhP2;
  return xxh_rotl(acc, 31) * kXxhP1;
}

inline uint64_t xxh_merge(uint64_t acc, uint64_t lane) {
  acc ^= xxh_round(0, lane);
  return acc * kXxhP1 + kXxhP4;
}

// One 32-byte stripe into the four accumulators.
inline void xxh_stripe(uint64_t* acc, const unsigned char* p) {
  for (int i = 0; i < 4; ++i) acc[i] = xxh_round(acc[i], xxh_load64(p + 8 * i));
}

}  // namespace

Xxh64::Xxh64(uint64_t seed) : seed_(seed) {
  acc_[0] = seed + kXxhP1 + kXxhP2;
  acc_[1] = seed + kXxhP2;
  acc_[2] = seed;
  acc_[3] = seed - kXxhP1;
}

void Xxh64::update(const void* data, size_t size) {
  if (size == 0) return;  // data may be null then (memcpy may not be given null)
  auto p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (buffered_ > 0) {
    const size_t take = size < 32 - buffered_ ? size : 32 - buffered_;
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    size -= take;
    if (buffered_ < 32) return;
    xxh_stripe(acc_, buf_);
    buffered_ = 0;
  }
  for (; size >= 32; p += 32, size -= 32) xxh_stripe(acc_, p);
  if (size > 0) std::memcpy(buf_, p, size);
  buffered_ = size;
}

uint64_t Xxh64::digest() const {
  uint64_t h;
  if (total_ >= 32) {
    h = xxh_rotl(acc_[0], 1) + xxh_rotl(acc_[1], 7) + xxh_rotl(acc_[2], 12) + xxh_rotl(acc_[3], 18);
    for (uint64_t a : acc_) h = xxh_merge(h, a);
  } else {
    h = seed_ + kXxhP5;
  }
  h += total_;
  const unsigned char* p = buf_;
  size_t left = buffered_;
  for (; left >= 8; p += 8, left -= 8)
    h = xxh_rotl(h ^ xxh_round(0, xxh_load64(p)), 27) * kXxhP1 + kXxhP4;
  if (left >= 4) {
    h = xxh_rotl(h ^ (xxh_load32(p) * kXxhP1), 23) * kXxhP2 + kXxhP3;
    p += 4;
    left -= 4;
  }
  for (; left > 0; ++p, --left) h = xxh_rotl(h ^ (*p * kXxhP5), 11) * kXxhP1;
  h ^= h >> 33;
  h *= kXxhP2;
  h ^= h >> 29;
  h *= kXxhP3;
  h ^= h >> 32;
  return h;
}

uint64_t xxh64(const void* data, size_t size, uint64_t seed) {
  Xxh64 h(seed);
  h.update(data, size);
  return h.digest();
}

uint64_t xxh64_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  check_io(f != nullptr, path, ": cannot open for reading");
  Xxh64 h;
  constexpr size_t kChunk = size_t{1} << 20;
  std::unique_ptr<unsigned char[]> buf(new unsigned char[kChunk]);
  for (;;) {
    const size_t n = std::fread(buf.get(), 1, kChunk, f.get());
    h.update(buf.get(), n);
    if (n < kChunk) break;
  }
  check_io(!std::ferror(f.get()), path, ": read error");
  return h.digest();
}

}  // namespace diffuse::detail
