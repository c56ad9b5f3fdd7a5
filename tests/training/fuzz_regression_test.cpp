// SPDX-License-Identifier: Apache-2.0
// Inputs found by the libFuzzer targets (tests/fuzz) that broke a reader, kept as fixtures
// (tests/training/fixtures/fuzz/): each now gives the documented result or a one-line
// diffuse::Error naming the input. Also the in-memory entry points the fuzzers use (parse_idx,
// png_text_chunks, decode_image) agree with the path-based readers on the same bytes.
#include <diffuse/training/data.h>
#include <diffuse/training/image.h>
#include <diffuse/training/safetensors.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <zlib.h>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "temp_dir.h"
#include "test_util.h"

namespace diffuse {
namespace {

using testing::fixture_path;

std::vector<unsigned char> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string fuzz_fixture(const std::string& name) { return fixture_path("fuzz/" + name); }

// Finding: an idx file announcing zero elements ([0, 28, 28]) passed a null data pointer to
// memcpy (UBSan: nonnull argument). It is a valid, empty file.
TEST(FuzzRegression, IdxWithZeroElementsIsAnEmptyTensor) {
  const std::string path = fuzz_fixture("idx_zero_images.idx3");
  const Tensor t = read_idx(path);
  EXPECT_EQ(t.scalar_type(), at::kByte);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{0, 28, 28}));
  const std::vector<unsigned char> b = file_bytes(path);
  EXPECT_EQ(parse_idx(b.data(), b.size(), path).sizes(), t.sizes());
}

// Finding: a 2x2 PNG whose IDAT length field had one bit flipped (0x40000016: 1 GB) made
// stb_image allocate 1 GB before reading it. Now every PNG chunk must lie inside the file, and
// images over 2^24 pixels are refused before decoding.
TEST(FuzzRegression, PngChunkLongerThanTheFileIsAnError) {
  const std::string path = fuzz_fixture("png_idat_length_1gb.png");
  EXPECT_ERROR_NAMING((void)read_image(path), path + "': PNG chunk at byte 98 (length 1073741846)");
  const std::vector<unsigned char> b = file_bytes(path);
  EXPECT_ERROR_NAMING((void)decode_image(b.data(), b.size(), "x.png", 1), "runs past the end");
  // The same bytes with the length restored decode to the 2x2 RGB image.
  std::vector<unsigned char> fixed = b;
  fixed[98] = 0;
  const Tensor img = decode_image(fixed.data(), fixed.size(), "fixed.png", 3);
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{3, 2, 2}));
  // A header announcing 10000 x 10000 (with a valid CRC; stb_image itself refuses only images
  // over 2^30 bytes) is refused before any allocation.
  std::vector<unsigned char> big = fixed;
  for (int i : {16, 20}) {
    const unsigned char side[4] = {0, 0, 0x27, 0x10};  // 10000
    std::copy(side, side + 4, big.begin() + i);
  }
  const uLong crc = ::crc32(::crc32(0L, Z_NULL, 0), big.data() + 12, 17);
  for (int i = 0; i < 4; ++i) big[29 + i] = static_cast<unsigned char>(crc >> (24 - 8 * i));
  EXPECT_ERROR_NAMING((void)decode_image(big.data(), big.size(), "big.png", 3),
                      "'big.png': 10000x10000 is larger than the limit of 16777216 pixels");
  // Finding: a 23-byte TGA header announcing 2304 x 28129 grey pixels (65 M, under the first
  // limit of 2^26) was decoded and converted to float: 3 GB resident. Hence 2^24.
  const std::string tga = fuzz_fixture("tga_2304x28129.tga");
  EXPECT_ERROR_NAMING((void)read_image(tga, 1), tga + "': 2304x28129 is larger than the limit");
}

// Finding (in LibTorch, not fixed here): a model file whose pickled string announces 1.7 GB makes
// LibTorch's unpickler reserve that much before it notices the data ends. load_model still turns
// it into a one-line error naming the file; the transient allocation is documented.
TEST(FuzzRegression, PickleWithHugeStringLengthIsAnError) {
  const std::string path = fuzz_fixture("pickle_string_length_1700mb.pt");
  EXPECT_ERROR_NAMING((void)load_model(path), "model file '" + path + "'");
}

/// A safetensors file: the 8-byte little-endian header length, then the header text.
std::string safetensors_with_header(const std::string& header) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header;
}

// Finding: a header nested 60000 levels deep (under a tensor name, in __metadata__ or as a
// shape) overflowed the stack while the error message quoted it (nlohmann::json::dump recurses).
// The input is generated here (120 kB of brackets) rather than stored.
TEST(FuzzRegression, DeeplyNestedSafetensorsHeaderIsAnError) {
  const std::string deep = std::string(60000, '[') + std::string(60000, ']');
  for (const std::string& header :
       {"{\"t\":" + deep + "}", "{\"__metadata__\":{\"a\":" + deep + "}}",
        "{\"t\":{\"dtype\":\"F32\",\"shape\":" + deep + ",\"data_offsets\":[0,0]}}"}) {
    const std::string bytes = safetensors_with_header(header);
    EXPECT_ERROR_NAMING((void)parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                bytes.size(), "deep.safetensors"),
                        "deep.safetensors: the header nests arrays/objects");
    EXPECT_ERROR_NAMING((void)parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                bytes.size(), "deep.safetensors"),
                        "levels deep (limit 64;");
  }
  // Brackets inside strings do not count, and the deepest legal header (64 levels) still parses
  // up to the format checks.
  const std::string in_string =
      safetensors_with_header("{\"__metadata__\":{\"k\":\"" + std::string(100, '[') + "\"}}");
  EXPECT_EQ(
      parse_safetensors(reinterpret_cast<const uint8_t*>(in_string.data()), in_string.size(), "s")
          .metadata.at("k"),
      std::string(100, '['));
  const std::string at_limit =
      safetensors_with_header("{\"t\":" + std::string(63, '[') + std::string(63, ']') + "}");
  EXPECT_ERROR_NAMING((void)parse_safetensors(reinterpret_cast<const uint8_t*>(at_limit.data()),
                                              at_limit.size(), "s"),
                      "tensor 't': the entry must be an object");
}

// Finding: a model card naming a gigantic DiT (hidden_size=4000000, or depth=100000000) in a
// small file made load_model allocate and initialise it (libFuzzer: timeout / out of memory). Now
// the card's DiT must fit in the file at 2 bytes a weight.
TEST(FuzzRegression, CardOfAModelLargerThanItsFileIsAnError) {
  for (const char* name : {"huge_dit.safetensors", "huge_depth.safetensors"}) {
    const std::string path = fuzz_fixture(name);
    EXPECT_ERROR_NAMING((void)load_model(path), path + ": the card's DiT");
    EXPECT_ERROR_NAMING((void)load_model(path), "the card does not describe this file");
  }
  // The same check for our model files with a card given by the caller, and the bound is not
  // too tight for a real model file.
  test::TempDir dir("fuzz_regression");
  const std::string file = dir / "tiny.pt";
  DiT dit(DiTOptions(4, 1).patch_size(2).hidden_size(8).depth(1).num_heads(2));
  ModelCard card;
  card.sample_shape = {1, 4, 4};
  save_model(file, dit, card);
  EXPECT_EQ(load_model(file).dit.value()->options.hidden_size(), 8);
  LoadModelOptions o;
  o.card =
      "sample_shape=1x4x4\nmodel=input_size=4,in_channels=1,patch_size=2,hidden_size=4000,depth="
      "1000,num_heads=1";
  EXPECT_ERROR_NAMING((void)load_model(file, o), "needs at least 320");
  // dit_min_weights is a lower bound of the real count.
  int64_t weights = 0;
  for (const auto& p : dit->named_parameters()) weights += p.value().numel();
  for (const auto& b : dit->named_buffers()) weights += b.value().numel();
  EXPECT_LE(detail::dit_min_weights(dit->options), static_cast<double>(weights));
}

}  // namespace
}  // namespace diffuse
