// SPDX-License-Identifier: Apache-2.0
#pragma once

// XXH64 (Yann Collet's xxHash, 64-bit variant, as its specification doc/xxhash_spec.md states
// it): a fast non-cryptographic checksum. Used to identify the exact bytes of a model file in a
// sample record. Streaming: update() any number of times, digest() at any point.

#include <cstddef>
#include <cstdint>
#include <string>

namespace diffuse::detail {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t size);
  uint64_t digest() const;

 private:
  uint64_t acc_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buffered_ = 0;
};

/// XXH64 (seed 0) of `size` bytes.
uint64_t xxh64(const void* data, size_t size, uint64_t seed = 0);

/// XXH64 (seed 0) of a file's bytes; throws diffuse::IOError naming the path when it cannot be
/// read to the end.
uint64_t xxh64_file(const std::string& path);

}  // namespace diffuse::detail
