// SPDX-License-Identifier: Apache-2.0
// PNG output (declared in <diffuse/training/image.h>): encoding with stb_image_write, tEXt chunks,
// image grids.
#include <diffuse/training/image.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include <stb/stb_image_write.h>
#include <zlib.h>

#include <diffuse/config.h>
#include <diffuse/training/atomic_file.h>

namespace diffuse {

namespace detail {

/// Encodes interleaved 8-bit pixels (height x width x channels, channels 1..4) as PNG bytes.
std::vector<unsigned char> encode_png(const unsigned char* pixels, int width, int height,
                                      int channels) {
  std::vector<unsigned char> out;
  auto sink = [](void* ctx, void* data, int size) {
    auto* v = static_cast<std::vector<unsigned char>*>(ctx);
    const auto* p = static_cast<const unsigned char*>(data);
    v->insert(v->end(), p, p + size);
  };
  const int ok =
      stbi_write_png_to_func(sink, &out, width, height, channels, pixels, width * channels);
  check(ok != 0 && !out.empty(), "PNG encoding failed for a ", width, "x", height, "x", channels,
        " image");
  return out;
}

/// [C, H, W] or [H, W] floating image in [-1, 1] -> uint8 [H, W, C] contiguous on the CPU.
/// C must be 1 (grey), 3 (RGB) or 4 (RGBA). Non-finite values are an error.
Tensor image_to_u8_hwc(const Tensor& image, const std::string& path) {
  check(image.defined(), "save_png('", path, "'): image is undefined");
  check(at::isFloatingType(image.scalar_type()), "save_png('", path,
        "'): image must be floating point in [-1, 1], got ", image.scalar_type());
  Tensor x = image.detach().to(at::kCPU, at::kFloat);
  if (x.dim() == 2) x = x.unsqueeze(0);
  check(x.dim() == 3 && (x.size(0) == 1 || x.size(0) == 3 || x.size(0) == 4) && x.size(1) > 0 &&
            x.size(2) > 0,
        "save_png('", path, "'): image must be [C, H, W] with C in {1, 3, 4} or [H, W], got ",
        image.sizes());
  check(x.size(1) <= (1 << 16) && x.size(2) <= (1 << 16), "save_png('", path,
        "'): image too large: ", image.sizes());
  check_numerics(at::isfinite(x).all().item<bool>(), "save_png('", path,
                 "'): image has non-finite values");
  return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(at::kByte).permute({1, 2, 0}).contiguous();
}

size_t walk_png_chunks(const unsigned char* b, size_t size, const std::string& where,
                       const std::function<void(const PngChunk&)>& visit, bool* saw_iend) {
  size_t pos = 8;
  bool end = false;
  while (!end && pos + 12 <= size) {
    const uint32_t len = be32(b + pos);
    check_io(len <= size - pos - 12, where, "PNG chunk at byte ", pos, " (length ", len,
             ") runs past the end of the file");
    const PngChunk chunk{b + pos + 4, b + pos + 8, len};
    visit(chunk);
    end = std::memcmp(chunk.type, "IEND", 4) == 0;
    pos += 12 + size_t{len};
  }
  if (saw_iend != nullptr) *saw_iend = end;
  return pos;
}

}  // namespace detail

/// Returns `png` (a complete PNG stream) with a tEXt chunk keyword/text inserted right after the
/// IHDR chunk. Errors (diffuse::Error) for a malformed stream or an invalid keyword / text.
std::vector<unsigned char> add_png_text(const std::vector<unsigned char>& png,
                                        const std::string& keyword, const std::string& text) {
  static const unsigned char kSig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  check(png.size() >= 33 && std::memcmp(png.data(), kSig, 8) == 0 &&
            std::memcmp(png.data() + 12, "IHDR", 4) == 0,
        "add_png_text: not a PNG stream");
  check(!keyword.empty() && keyword.size() <= 79,
        "add_png_text: keyword must be 1-79 characters, got '", keyword, "'");
  for (unsigned char ch : keyword)
    check(ch >= 32 && ch != 127, "add_png_text: keyword '", keyword,
          "' has a non-printable character");
  check(text.find('\0') == std::string::npos, "add_png_text: text for '", keyword,
        "' contains NUL");
  std::vector<unsigned char> data(keyword.begin(), keyword.end());
  data.push_back(0);
  data.insert(data.end(), text.begin(), text.end());
  check(data.size() < (1u << 31), "add_png_text: text for '", keyword, "' is too long");
  std::vector<unsigned char> chunk;
  auto put32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) chunk.push_back(static_cast<unsigned char>(v >> s));
  };
  put32(static_cast<uint32_t>(data.size()));
  const size_t type_at = chunk.size();
  chunk.insert(chunk.end(), {'t', 'E', 'X', 't'});
  chunk.insert(chunk.end(), data.begin(), data.end());
  const uLong crc = ::crc32(::crc32(0L, Z_NULL, 0), chunk.data() + type_at,
                            static_cast<uInt>(chunk.size() - type_at));
  put32(static_cast<uint32_t>(crc));
  const size_t ihdr_end = 8 + 4 + 4 + 13 + 4;  // signature, length, type, IHDR data, CRC
  std::vector<unsigned char> out(png.size() + chunk.size());
  std::memcpy(out.data(), png.data(), ihdr_end);
  std::memcpy(out.data() + ihdr_end, chunk.data(), chunk.size());
  std::memcpy(out.data() + ihdr_end + chunk.size(), png.data() + ihdr_end, png.size() - ihdr_end);
  return out;
}

/// The tEXt chunks (keyword -> text) of a PNG stream held in memory; bounds-checked, CRCs
/// verified, parsing stops at IEND. `name` is the file name put in error messages.
std::map<std::string, std::string> png_text_chunks(const unsigned char* b, size_t size,
                                                   const std::string& name) {
  const std::string& path = name;
  static const unsigned char kSig[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  check_io(size >= 8 && std::memcmp(b, kSig, 8) == 0, "'", path, "' is not a PNG file");
  std::map<std::string, std::string> out;
  detail::walk_png_chunks(b, size, "'" + path + "': ", [&](const detail::PngChunk& c) {
    const std::string type(reinterpret_cast<const char*>(c.type), 4);
    const unsigned char* data = c.data;
    const uint32_t len = c.length;
    const uLong crc = ::crc32(::crc32(0L, Z_NULL, 0), c.type, static_cast<uInt>(len + 4));
    check_io(static_cast<uint32_t>(crc) == detail::be32(data + len), "'", path,
             "': CRC mismatch in PNG chunk '", type, "'");
    if (type == "tEXt") {
      const auto* nul = static_cast<const unsigned char*>(std::memchr(data, 0, len));
      check_io(nul != nullptr, "'", path, "': tEXt chunk without a keyword separator");
      out[std::string(reinterpret_cast<const char*>(data), static_cast<size_t>(nul - data))] =
          std::string(reinterpret_cast<const char*>(nul + 1),
                      static_cast<size_t>(data + len - nul - 1));
    }
  });
  return out;
}

/// The tEXt chunks (keyword -> text) of a PNG file; bounds-checked, CRCs verified. Errors name the
/// file.
std::map<std::string, std::string> read_png_text(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  check_io(f != nullptr, "cannot open PNG '", path, "': ", std::strerror(errno));
  std::vector<unsigned char> b;
  unsigned char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) b.insert(b.end(), buf, buf + n);
  std::fclose(f);
  return png_text_chunks(b.data(), b.size(), path);
}

/// Writes one image as PNG. image: [C, H, W] (C = 1 grey, 3 RGB, 4 RGBA) or [H, W], floating
/// point, values in [-1, 1] (clamped; -1 -> 0, 1 -> 255). Any device and float dtype.
/// Atomic (temp file + rename); throws diffuse::Error naming `path` on failure.
/// `text` holds PNG tEXt chunks (keyword -> text) written before the image data, e.g. the settings
/// that produced the image (A1111 writes "parameters"; the diffuse CLI writes "diffuse"). Keywords
/// are 1-79 printable Latin-1 characters; text must not contain NUL.
void save_png(const std::string& path, const Tensor& image,
              const std::map<std::string, std::string>& text) {
  const Tensor hwc = detail::image_to_u8_hwc(image, path);
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1)),
            c = static_cast<int>(hwc.size(2));
  std::vector<unsigned char> png = detail::encode_png(hwc.data_ptr<uint8_t>(), w, h, c);
  for (const auto& [key, value] : text) png = add_png_text(png, key, value);
  write_bytes_atomic(path, png.data(), png.size());
}

/// Tiles images [N, C, H, W] (values in [-1, 1]) into one image [C, rows * (H + padding) + padding,
/// nrow * (W + padding) + padding] with nrow images per row and rows = ceil(N / nrow), as
/// torchvision's make_grid. The padding and unused cells hold pad_value.
/// nrow >= 1 (default none; clipped to N), padding >= 0 (default 2), pad_value default 1 (white).
Tensor make_image_grid(const Tensor& images, int64_t nrow, int64_t padding, double pad_value) {
  check(images.defined() && images.dim() == 4 && images.size(0) > 0,
        "make_image_grid: images must be [N, C, H, W] with N > 0, got ",
        images.defined() ? c10::str(images.sizes()) : std::string("undefined"));
  check(nrow >= 1, "make_image_grid: nrow must be >= 1, got ", nrow);
  check(padding >= 0, "make_image_grid: padding must be >= 0, got ", padding);
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = image_grid_columns(n, nrow), rows = (n + cols - 1) / cols;
  Tensor grid = at::full({c, rows * (h + padding) + padding, cols * (w + padding) + padding},
                         pad_value, images.options());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / cols, q = i % cols;
    grid.narrow(1, r * (h + padding) + padding, h)
        .narrow(2, q * (w + padding) + padding, w)
        .copy_(images[i]);
  }
  return grid;
}

void save_jpeg(const std::string& path, const Tensor& image, int quality) {
  check(quality >= 1 && quality <= 100, "save_jpeg('", path,
        "'): quality must be in [1, 100], got ", quality);
  const Tensor hwc = detail::image_to_u8_hwc(image, path);
  const int h = static_cast<int>(hwc.size(0)), w = static_cast<int>(hwc.size(1)),
            c = static_cast<int>(hwc.size(2));
  check(c == 1 || c == 3, "save_jpeg('", path, "'): JPEG holds grey or RGB images, got ", c,
        " channels");
  std::vector<unsigned char> out;
  auto sink = [](void* ctx, void* data, int size) {
    auto* v = static_cast<std::vector<unsigned char>*>(ctx);
    const auto* p = static_cast<const unsigned char*>(data);
    v->insert(v->end(), p, p + size);
  };
  const int ok = stbi_write_jpg_to_func(sink, &out, w, h, c, hwc.data_ptr<uint8_t>(), quality);
  check(ok != 0 && !out.empty(), "save_jpeg('", path, "'): JPEG encoding failed");
  write_bytes_atomic(path, out.data(), out.size());
}

void save_image(const std::string& path, const Tensor& image,
                const std::map<std::string, std::string>& text) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (ext == ".jpg" || ext == ".jpeg") return save_jpeg(path, image);
  check(ext == ".png", "save_image('", path, "'): name it *.png, *.jpg or *.jpeg");
  save_png(path, image, text);
}

/// make_image_grid(images, nrow) written with save_png (atomic; errors name `path`).
void save_image_grid(const std::string& path, const Tensor& images, int64_t nrow) {
  save_png(path, make_image_grid(images, nrow));
}

}  // namespace diffuse
