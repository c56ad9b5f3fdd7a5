// SPDX-License-Identifier: Apache-2.0
// PNG output for training: single images (with tEXt chunks) and image grids. Line plots (loss
// curves) are <diffuse/training/plot.h>.
//
// Images are tensors in the model's range [-1, 1] (mapped to 0..255 by round((x + 1) / 2 * 255)
// after clamping). PNG encoding is stb_image_write (libstb.so).
//
// Every writer here goes through write_bytes_atomic (training/atomic_file.h): a reader never sees a
// half-written file, and on any failure a diffuse::Error naming the target path is thrown.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here
#include <diffuse/tensor.h>

namespace diffuse {

namespace detail {

/// Encodes interleaved 8-bit pixels (height x width x channels, channels 1..4) as PNG bytes.
std::vector<unsigned char> encode_png(const unsigned char* pixels, int width, int height,
                                      int channels);

/// [C, H, W] or [H, W] floating image in [-1, 1] -> uint8 [H, W, C] contiguous on the CPU.
/// C must be 1 (grey), 3 (RGB) or 4 (RGBA). Non-finite values are an error (NumericalError).
Tensor image_to_u8_hwc(const Tensor& image, const std::string& path);

/// A big-endian 32-bit word (PNG chunk headers, idx dimensions).
inline uint32_t be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

/// One chunk of a PNG stream: its 4-byte type, its data and their length.
struct PngChunk {
  const unsigned char* type;
  const unsigned char* data;
  uint32_t length;
};

/// Walks the chunks of a PNG stream held in memory (`b` starts with the 8-byte signature, which is
/// not checked here) up to and including IEND, calling `visit` for each (its CRC unchecked). A
/// chunk longer than what is left is an IOError "<where>PNG chunk at byte N (length L) runs past
/// the end of the file". Returns the offset after the last chunk walked; *saw_iend (if given) says
/// whether the walk ended at IEND.
size_t walk_png_chunks(const unsigned char* b, size_t size, const std::string& where,
                       const std::function<void(const PngChunk&)>& visit, bool* saw_iend = nullptr);

}  // namespace detail

/// Returns `png` (a complete PNG stream) with a tEXt chunk keyword/text inserted right after the
/// IHDR chunk. Errors (diffuse::Error) for a malformed stream or an invalid keyword / text.
std::vector<unsigned char> add_png_text(const std::vector<unsigned char>& png,
                                        const std::string& keyword, const std::string& text);

/// The tEXt chunks (keyword -> text) of a PNG stream held in memory; bounds-checked, CRCs
/// verified, parsing stops at IEND. `name` is the file name put in error messages (IOError).
std::map<std::string, std::string> png_text_chunks(const unsigned char* b, size_t size,
                                                   const std::string& name);

/// The tEXt chunks (keyword -> text) of a PNG file; bounds-checked, CRCs verified. Errors name the
/// file (IOError).
std::map<std::string, std::string> read_png_text(const std::string& path);

/// Writes one image as PNG. image: [C, H, W] (C = 1 grey, 3 RGB, 4 RGBA) or [H, W], floating
/// point, values in [-1, 1] (clamped; -1 -> 0, 1 -> 255). Any device and float dtype.
/// Atomic (temp file + rename); throws diffuse::Error naming `path` on failure.
/// `text` holds PNG tEXt chunks (keyword -> text) written before the image data, e.g. the settings
/// that produced the image (A1111 writes "parameters"; the diffuse CLI writes "diffuse"). Keywords
/// are 1-79 printable Latin-1 characters; text must not contain NUL.
void save_png(const std::string& path, const Tensor& image,
              const std::map<std::string, std::string>& text = {});

/// Writes one image as baseline JPEG (stb_image_write, `quality` 1..100, default 95): [C, H, W]
/// with C = 1 or 3, or [H, W], values in [-1, 1] as save_png. Atomic; errors name `path`.
void save_jpeg(const std::string& path, const Tensor& image, int quality = 95);

/// save_png or save_jpeg by the extension of `path` (.png, .jpg, .jpeg, any case; others are an
/// error). `text` goes into PNG tEXt chunks (JPEG files carry none).
void save_image(const std::string& path, const Tensor& image,
                const std::map<std::string, std::string>& text = {});

/// Images per row of make_image_grid(images of n, nrow): nrow clipped to n (a 4-image grid with
/// nrow 10 has 4 per row). Use it to report a grid's shape.
inline int64_t image_grid_columns(int64_t n, int64_t nrow) {
  return std::max<int64_t>(1, std::min(nrow, n));
}

/// Tiles images [N, C, H, W] (values in [-1, 1]) into one image [C, rows * (H + padding) + padding,
/// nrow * (W + padding) + padding] with nrow images per row and rows = ceil(N / nrow), as
/// torchvision's make_grid. The padding and unused cells hold pad_value.
/// nrow >= 1 (default none; clipped to N), padding >= 0 (default 2), pad_value default 1 (white).
Tensor make_image_grid(const Tensor& images, int64_t nrow, int64_t padding = 2,
                       double pad_value = 1.0);

/// make_image_grid(images, nrow) written with save_png (atomic; errors name `path`).
void save_image_grid(const std::string& path, const Tensor& images, int64_t nrow);

}  // namespace diffuse
