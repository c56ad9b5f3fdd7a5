// SPDX-License-Identifier: Apache-2.0
// Datasets for training: Fashion-MNIST (idx files), image folders (PNG/JPEG/BMP via stb_image),
// the usual 2-D toy sets and draws from a GaussianMixture. Everything loads into memory as a
// Dataset (training/dataset.h): images float [N, C, H, W] in [-1, 1], labels int64 [N].
//
// References:
//   idx format: Y. LeCun et al., "THE MNIST DATABASE of handwritten digits" (file format section):
//     magic = 0x00 0x00 <type> <ndims>, then ndims big-endian uint32 sizes, then the data
//     (type 0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E
//     float64; multi-byte values big-endian).
//   Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf, arXiv:1708.07747 (2017): 60000 train / 10000
//   test
//     28x28 grey images, 10 classes; class names from the zalandoresearch/fashion-mnist README.
//   Toy sets: moons and circles as scikit-learn's make_moons / make_circles (random positions along
//     the curves; noise 0.1 and 0.08, circle factor 0.5), swiss_roll as scikit-learn's
//     make_swiss_roll projected on (x, z) with noise 1.0, checkerboard and eight_gaussians as in
//     FFJORD's toy data (Grathwohl et al. 2019, rtqichen/ffjord lib/toy_data.py: centres at radius
//     4, std 0.5), each then centred and divided by a fixed isotropic scale measured on 4e6 draws,
//     so that the per-coordinate variance is about 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here
#include <diffuse/tensor.h>
#include <diffuse/training/dataset.h>

namespace diffuse {

class GaussianMixture;

namespace detail {

/// The whole (decompressed) content of a file. zlib's gzread reads gzip files and passes plain
/// files through unchanged, so one path serves "x.gz" and "x". Errors name the file.
std::vector<unsigned char> read_maybe_gzipped(const std::string& path);

bool ends_with_ci(const std::string& s, const std::string& suffix);

/// Largest image decoded (pixels): 2^24, e.g. 4096 x 4096 (its float tensor alone is 200 MB).
constexpr int64_t kMaxImagePixels = int64_t{1} << 24;

/// Decodes an image file held in memory with stb_image into interleaved 8-bit pixels (the caller
/// frees them with stbi_image_free). Before decoding: the header's size must be at most
/// kMaxImagePixels, and in a PNG every chunk must lie inside the data. stb_image trusts both:
/// a 100-byte PNG whose IDAT length field says 1 GB, or whose header says 65535 x 65535, made it
/// allocate a gigabyte (found by tests/fuzz/fuzz_images). Errors name `name`.
unsigned char* stb_decode(const unsigned char* data, size_t size, int channels,
                          const std::string& name, int* w, int* h);

/// The bytes of the file at `path`. Errors name it.
std::vector<unsigned char> read_file_bytes(const std::string& path);

}  // namespace detail

/// Parses the bytes of an idx file (the MNIST format; see the header comment; already
/// decompressed) held in memory. `name` is the file name put in error messages. Returns a CPU
/// tensor of the stored type with the stored dimensions (a copy; `data` may be released after).
/// Throws diffuse::Error naming `name` for a bad magic number or type code, a truncated header,
/// a size over 2^40 elements, or a byte count that differs from what the header announces.
Tensor parse_idx(const unsigned char* data, size_t size, const std::string& name);

/// Reads an idx file (the MNIST format; see the header comment), gzip-compressed or raw.
/// Returns a CPU tensor of the stored type (uint8 for the idx1/idx3 ubyte files) with the stored
/// dimensions, e.g. [60000, 28, 28] images or [60000] labels.
/// Throws diffuse::Error naming the file when it is missing, not gzip-readable, has a bad magic
/// number or type code, or holds a different number of bytes than its header announces.
Tensor read_idx(const std::string& path);

/// The ten Fashion-MNIST class names, index = label.
const std::vector<std::string>& fashion_mnist_class_names();

/// Where load_fashion_mnist looks by default: $DIFFUSE_FASHION_MNIST_DIR if set and non-empty,
/// else /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist).
std::string fashion_mnist_default_dir();

/// Loads a Fashion-MNIST split from `dir` (empty = fashion_mnist_default_dir()): the files
/// {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (or the same names without .gz).
/// split: "train" (60000 examples) or "test" (10000). limit: keep the first `limit` examples
/// (default -1 = all; otherwise >= 1).
/// Returns data float [N, 1, 28, 28] = pixel / 127.5 - 1 (in [-1, 1]), labels int64 [N] in 0..9,
/// num_classes 10, name "fashion_mnist/<split>". Errors (diffuse::Error) name the file: missing,
/// corrupt, not [N, 28, 28] / [N], image and label counts that disagree, labels outside 0..9.
Dataset load_fashion_mnist(const std::string& split, const std::string& dir = "",
                           int64_t limit = -1);

/// Decodes an image file held in memory (PNG, JPEG, BMP, anything stb_image reads) as float
/// [channels, H, W] in [-1, 1], as read_image does for a path. `name` is the file name put in
/// error messages. channels: 1, 3 or 4. Images over 2^24 pixels and PNG chunks running past the
/// end of the data are errors.
Tensor decode_image(const unsigned char* data, size_t size, const std::string& name,
                    int channels = 3);

/// Reads one image file (PNG, JPEG, BMP, anything stb_image reads) as float [channels, H, W] in
/// [-1, 1] (pixel / 127.5 - 1). channels: 1 (grey; colour images are converted by stb's luma
/// weights), 3 (RGB; grey is replicated) or 4 (RGBA). Images over 2^24 pixels and PNG chunks
/// running past the end of the file are errors. Errors name the file and stb's reason.
Tensor read_image(const std::string& path, int channels = 3);

/// How load_image_folder reads a folder of images.
struct ImageFolderOptions {
  /// Output side length. 0 (default) keeps the images' own size, which must then be the same for
  /// all images; > 0 (up to 4096) centre-crops each image to a square (the shorter side) and
  /// resizes that square to size x size with stb_image_resize (stbir_resize_uint8: Mitchell filter
  /// when downsampling, Catmull-Rom when upsampling).
  int64_t size = 0;
  /// 1 (grey) or 3 (RGB, default).
  int64_t channels = 3;
  /// Keep at most this many images (after sorting; default -1 = all, otherwise >= 1).
  int64_t limit = -1;
};

namespace detail {

bool is_image_file(const std::filesystem::path& p);

/// Sorted image files directly inside `dir`.
std::vector<std::string> list_images(const std::filesystem::path& dir);

/// Centre-crop to a square and resize to size x size (uint8 HWC in, uint8 HWC out).
std::vector<unsigned char> crop_resize(const unsigned char* px, int w, int h, int c, int size,
                                       const std::string& path);

}  // namespace detail

/// The class names load_image_folder assigns to ids 0, 1, ...: the sorted names of the immediate
/// subfolders of `dir` that hold at least one image; empty when the images lie directly in `dir`.
std::vector<std::string> image_folder_classes(const std::string& dir);

/// Loads every image of a folder into memory. Layout: either images directly in `dir`
/// (unlabelled: labels undefined, num_classes 0) or one subfolder per class (class id = index of
/// the subfolder name in sorted order, see image_folder_classes; files directly in `dir` are then
/// an error, as are deeper levels, which are ignored). Files are read in sorted path order;
/// extensions .png .jpg .jpeg .bmp (any case). Returns data float [N, channels, S, S'] in [-1, 1],
/// name = dir. Errors (diffuse::Error) name the folder or file: missing or empty folder,
/// unreadable image, differing sizes when options.size == 0, bad options.
Dataset load_image_folder(const std::string& dir, const ImageFolderOptions& options = {});

/// The names make_toy_2d accepts.
const std::vector<std::string>& toy_2d_names();

/// n >= 1 float32 points [n, 2] from a 2-D toy distribution (see the header comment), drawn with
/// `gen` (a CPU generator; the same generator state gives the same points), centred and scaled
/// isotropically (the shape is kept) so that the per-coordinate variances average to about 1
/// (moons: about 1.5 and 0.5):
///   "moons"           two interleaved half circles, noise std 0.1; labels = moon (2 classes)
///   "swiss_roll"      t = 1.5 pi (1 + 2u), (t cos t, t sin t) + N(0, 1); unlabelled
///   "circles"         radii 1 and 0.5, noise std 0.08; labels = circle (0 outer, 1 inner)
///   "checkerboard"    uniform on the 8 dark squares of a 4x4 board; unlabelled
///   "eight_gaussians" 8 Gaussians (std 0.5) on a circle of radius 4; labels = component (8
///   classes)
/// Unknown names are an error that lists the valid ones.
Dataset make_toy_2d(const std::string& name, int64_t n, at::Generator gen);

/// n >= 1 draws from a GaussianMixture (float32 [n, D]) with the component index as the label
/// (num_classes = number of components), drawn with `gen` (a CPU generator).
Dataset mixture_dataset(const GaussianMixture& mixture, int64_t n, at::Generator gen);

}  // namespace diffuse
