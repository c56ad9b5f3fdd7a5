// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the data-file readers. The input is tried as an idx file (parse_idx), as a
// PNG's text chunks (png_text_chunks), as an image for stb_image (decode_image, 1 and 3
// channels), and, when it starts with the gzip magic, as a gzip-compressed idx file (read_idx).
#include <cstdio>
#include <string>

#include <diffuse/training/data.h>
#include <diffuse/training/image.h>

#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace diffuse;
  fuzz::clean("parse_idx", [&] { (void)parse_idx(data, size, "fuzz.idx"); });
  fuzz::clean("png_text_chunks", [&] { (void)png_text_chunks(data, size, "fuzz.png"); });
  fuzz::clean("decode_image(1)", [&] { (void)decode_image(data, size, "fuzz.png", 1); });
  fuzz::clean("decode_image(3)", [&] { (void)decode_image(data, size, "fuzz.png", 3); });
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    static const std::string path = fuzz::temp_path(".idx.gz");
    fuzz::write_bytes(path, data, size);
    fuzz::clean("read_idx(gz)", [&] { (void)read_idx(path); });
    std::remove(path.c_str());
  }
  return 0;
}
