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

/// A PNG chunk: length, type, data, CRC.
void append_chunk(std::vector<unsigned char>& png, const char* type,
                  const std::vector<unsigned char>& data) {
  const auto n = static_cast<uint32_t>(data.size());
  for (int i = 3; i >= 0; --i) png.push_back(static_cast<unsigned char>(n >> (8 * i)));
  const size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  const uLong crc = ::crc32(::crc32(0L, Z_NULL, 0), png.data() + start, 4 + n);
  for (int i = 3; i >= 0; --i) png.push_back(static_cast<unsigned char>(crc >> (8 * i)));
}

/// A 1x1 8-bit grey PNG whose IDAT holds `idat`.
std::vector<unsigned char> grey_1x1_png(const std::vector<unsigned char>& idat) {
  std::vector<unsigned char> png = {137, 80, 78, 71, 13, 10, 26, 10};
  append_chunk(png, "IHDR", {0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0});
  append_chunk(png, "IDAT", idat);
  append_chunk(png, "IEND", {});
  return png;
}

std::vector<unsigned char> deflate(const std::vector<unsigned char>& raw) {
  uLongf n = ::compressBound(static_cast<uLong>(raw.size()));
  std::vector<unsigned char> out(n);
  EXPECT_EQ(::compress(out.data(), &n, raw.data(), static_cast<uLong>(raw.size())), Z_OK);
  out.resize(n);
  return out;
}

// Finding: a 42-byte 1x1 PNG whose IDAT chunk is cut off by the end of the file made stb_image
// allocate 2 GB (it reads zeros past the end and inflates without a limit). Now a cut-off chunk
// is an error, and the image data must inflate completely to no more than its header allows.
TEST(FuzzRegression, PngImageDataMustInflateToItsHeadersSize) {
  const std::string path = fuzz_fixture("png_1x1_idat_cut_off.png");
  EXPECT_ERROR_NAMING((void)read_image(path, 1),
                      path + "': PNG chunk at byte 33 is cut off by the end of the file");
  // A well-formed 1x1 image decodes: one filter byte, one pixel (128 -> 0.0039...).
  const std::vector<unsigned char> raw = {0, 128};
  const std::vector<unsigned char> ok = grey_1x1_png(deflate(raw));
  const Tensor img = decode_image(ok.data(), ok.size(), "ok.png", 1);
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_FLOAT_EQ(img.item<float>(), 128 / 127.5f - 1);
  // Its stream cut short inside the chunk; a stream of 1 MB for 2 bytes; a broken stream.
  std::vector<unsigned char> cut = deflate(raw);
  cut.resize(3);
  const std::vector<unsigned char> trunc = grey_1x1_png(cut);
  EXPECT_ERROR_NAMING((void)decode_image(trunc.data(), trunc.size(), "t.png", 1),
                      "'t.png': its PNG image data is truncated");
  const std::vector<unsigned char> bomb =
      grey_1x1_png(deflate(std::vector<unsigned char>(1 << 20)));
  EXPECT_ERROR_NAMING((void)decode_image(bomb.data(), bomb.size(), "b.png", 1),
                      "'b.png': its PNG image data inflates past 4100 bytes");
  const std::vector<unsigned char> broken = grey_1x1_png({0x78, 0x9c, 0xff, 0xff, 0xff});
  EXPECT_ERROR_NAMING((void)decode_image(broken.data(), broken.size(), "c.png", 1),
                      "'c.png': its PNG image data is corrupt (zlib: ");
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
