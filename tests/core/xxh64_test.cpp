// SPDX-License-Identifier: Apache-2.0
// XXH64, the checksum of model files in sample records: the digests of the xxHash library
// itself (tests/reference/xxh64_vectors.py), whatever the split into update() calls, and of a
// file read in chunks.
#include "test_util.h"

#include <diffuse/detail/xxh64.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

namespace diffuse {
namespace {

struct XxhVector {
  size_t size;
  uint64_t seed;
  uint64_t digest;
};

// /usr/bin/python3 tests/reference/xxh64_vectors.py (libxxhash 0.8.1, Debian 12's libxxhash0).
const XxhVector kVectors[] = {
    {0, 0ull, 0xef46db3751d8e999ull},
    {0, 2654435761ull, 0xac75fda2929b17efull},
    {0, 18446744073709551615ull, 0x298f4c84b24f5380ull},
    {1, 0ull, 0xa96c7f0ce858bbb7ull},
    {3, 0ull, 0xbed43740ee6332bbull},
    {4, 0ull, 0xfa212ae44b3bb23dull},
    {5, 0ull, 0xd339dcc9ac8e6776ull},
    {5, 2654435761ull, 0xdb92b23c2ba23485ull},
    {5, 18446744073709551615ull, 0xcd856d2e5f2c6a31ull},
    {7, 0ull, 0x2744460dd675d2c0ull},
    {8, 0ull, 0x994b676b71ce94ddull},
    {9, 0ull, 0x572b84c18b983af8ull},
    {15, 0ull, 0x09e6451ed2ff8b1dull},
    {16, 0ull, 0x94ad0095e72b24d5ull},
    {31, 0ull, 0x6711d55e306b5d8full},
    {32, 0ull, 0x07f7b8e3bc5d6e25ull},
    {33, 0ull, 0x09f85eeb4e1cbe9full},
    {33, 2654435761ull, 0x3d805e8712cb4890ull},
    {33, 18446744073709551615ull, 0x303c4a232c3bd093ull},
    {35, 0ull, 0x25cc31e4544bc8c9ull},
    {63, 0ull, 0xb7c9968c066cb6a5ull},
    {64, 0ull, 0x50d4159a0411632eull},
    {100, 0ull, 0x9ddada11d3dc2d8full},
    {1000, 0ull, 0x0bf0bdbcc82eb373ull},
    {1000, 2654435761ull, 0xb43e358553049780ull},
    {1000, 18446744073709551615ull, 0x2ebd51d295f7ea0bull},
    {4096, 0ull, 0xcf05adf75aca30cfull},
    {3145745, 0ull, 0xb59c3cca6ad54b17ull},
};

std::vector<unsigned char> xxh_pattern(size_t n) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((i * 131 + 7) % 256);
  return v;
}

TEST(Xxh64, DigestsOfTheReferenceLibrary) {
  for (const XxhVector& t : kVectors) {
    const std::vector<unsigned char> in = xxh_pattern(t.size);
    EXPECT_EQ(detail::xxh64(in.data(), in.size(), t.seed), t.digest)
        << t.size << " bytes, seed " << t.seed;
  }
}

TEST(Xxh64, AnySplitIntoUpdatesGivesTheSameDigest) {
  for (const XxhVector& t : kVectors) {
    if (t.size > 4096) continue;
    const std::vector<unsigned char> in = xxh_pattern(t.size);
    for (size_t piece : {size_t{1}, size_t{3}, size_t{7}, size_t{31}, size_t{32}, size_t{45}}) {
      detail::Xxh64 h(t.seed);
      for (size_t at = 0; at < in.size(); at += piece)
        h.update(in.data() + at, std::min(piece, in.size() - at));
      EXPECT_EQ(h.digest(), t.digest) << t.size << " bytes in pieces of " << piece;
    }
    // digest() does not end the stream.
    detail::Xxh64 h(t.seed);
    h.update(in.data(), in.size() / 2);
    (void)h.digest();
    h.update(in.data() + in.size() / 2, in.size() - in.size() / 2);
    EXPECT_EQ(h.digest(), t.digest) << t.size << " bytes, digest halfway";
  }
}

TEST(Xxh64, FileDigestIsTheDigestOfItsBytes) {
  const auto dir = ::testing::TempDir();
  const std::string path = (std::filesystem::path(dir) / "diffuse_xxh64_test.bin").string();
  const XxhVector& big = kVectors[std::size(kVectors) - 1];  // over three 1 MiB read chunks
  const std::vector<unsigned char> in = xxh_pattern(big.size);
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(in.data()), static_cast<std::streamsize>(in.size()));
  }
  EXPECT_EQ(detail::xxh64_file(path), big.digest);
  std::filesystem::remove(path);
  const std::string msg = testing::error_of([&] { (void)detail::xxh64_file(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
}

}  // namespace
}  // namespace diffuse
