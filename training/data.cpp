// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/data.h>.
#include <diffuse/training/data.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <zlib.h>

#include <ATen/ATen.h>

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

#include <diffuse/config.h>
#include <diffuse/gaussian_mixture.h>
#include <diffuse/training/image.h>

namespace diffuse {

using detail::be32;

namespace detail {

std::vector<unsigned char> read_maybe_gzipped(const std::string& path) {
  std::error_code ec;
  check_io(std::filesystem::is_regular_file(path, ec), "cannot read '", path, "': no such file");
  gzFile f = gzopen(path.c_str(), "rb");
  check_io(f != nullptr, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<unsigned char> out;
  std::vector<unsigned char> buf(1 << 20);
  for (;;) {
    const int got = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (got < 0) {
      int code = 0;
      const std::string msg = gzerror(f, &code);
      gzclose(f);
      throw IOError("cannot read '" + path + "': corrupt or truncated gzip data (" + msg + ")");
    }
    if (got == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + got);
  }
  // A gzip stream cut short reads as EOF with Z_BUF_ERROR set.
  int code = Z_OK;
  const std::string msg = gzerror(f, &code);
  gzclose(f);
  check_io(code == Z_OK || code == Z_STREAM_END, "cannot read '", path,
           "': corrupt or truncated gzip data (", msg, ")");
  return out;
}

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) !=
        std::tolower(static_cast<unsigned char>(suffix[i])))
      return false;
  return true;
}

namespace {

/// What the inflate check needs of a PNG: its IDAT chunks and the bound on their inflated size
/// (0: no usable IHDR before them).
struct PngLayout {
  uint64_t cap = 0;
  std::vector<std::pair<const unsigned char*, uint32_t>> idat;
};

/// Walks a PNG's chunks: each must lie inside the data (stb_image reserves a chunk's announced
/// length before reading it) and none may be cut off by the end of the file (stb_image would read
/// zeros for the rest). Collects what check_png_data needs. The bound: the unfiltered size
/// height * (1 + row bytes), twice over plus 4 KiB (Adam7 interlacing adds a filter byte per row
/// of each pass).
PngLayout walk_png(const unsigned char* data, size_t size, const std::string& name) {
  PngLayout layout;
  bool end = false;
  const size_t pos = detail::walk_png_chunks(
      data, size, "cannot read image '" + name + "': ",
      [&](const detail::PngChunk& c) {
        if (std::memcmp(c.type, "IHDR", 4) == 0 && c.length >= 13 && layout.cap == 0) {
          const uint64_t width = be32(c.data), height = be32(c.data + 4);
          const uint64_t depth = c.data[8], color = c.data[9];
          const uint64_t samples = color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1;
          if (width > 0 && height > 0 && width <= (1u << 24) && height <= (1u << 24) && depth <= 16)
            layout.cap = 2 * height * (1 + (width * samples * depth + 7) / 8) + 4096;
        } else if (std::memcmp(c.type, "IDAT", 4) == 0) {
          layout.idat.emplace_back(c.data, c.length);
        }
      },
      &end);
  check_io(end || pos == size, "cannot read image '", name, "': PNG chunk at byte ", pos,
           " is cut off by the end of the file (", size - pos, " bytes left)");
  return layout;
}

/// A PNG's image data (its IDAT chunks: one zlib stream) must inflate completely, to no more than
/// layout.cap bytes. stb_image inflates without a limit and reads zeros past the end of a
/// truncated stream: a 42-byte 1x1 PNG made it allocate 2 GB (found by fuzz_images).
void check_png_data(const PngLayout& layout, const std::string& name) {
  const uint64_t cap = layout.cap;
  const auto& idat = layout.idat;
  if (cap == 0 || idat.empty()) return;  // stb_image names what is missing
  z_stream zs{};
  check_io(inflateInit(&zs) == Z_OK, "cannot read image '", name, "': zlib initialisation failed");
  unsigned char out[1 << 14];
  uint64_t total = 0;
  int ret = Z_OK;
  for (size_t i = 0; i < idat.size() && ret != Z_STREAM_END; ++i) {
    zs.next_in = const_cast<unsigned char*>(idat[i].first);
    zs.avail_in = idat[i].second;
    while (ret != Z_STREAM_END && total <= cap) {
      zs.next_out = out;
      zs.avail_out = sizeof(out);
      ret = inflate(&zs, Z_NO_FLUSH);
      total += sizeof(out) - zs.avail_out;
      if (ret == Z_BUF_ERROR || (ret == Z_OK && zs.avail_in == 0 && zs.avail_out != 0)) break;
      if (ret != Z_OK && ret != Z_STREAM_END) break;
    }
    if (total > cap || (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR)) break;
  }
  const std::string why = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  check_io(total <= cap, "cannot read image '", name, "': its PNG image data inflates past ", cap,
           " bytes, more than its header's size allows");
  check_io(
      ret == Z_STREAM_END, "cannot read image '", name, "': its PNG image data is ",
      ret == Z_OK || ret == Z_BUF_ERROR ? std::string("truncated") : "corrupt (zlib: " + why + ")");
}

}  // namespace

unsigned char* stb_decode(const unsigned char* data, size_t size, int channels,
                          const std::string& name, int* w, int* h) {
  check_io(size <= static_cast<size_t>(std::numeric_limits<int>::max()), "cannot read image '",
           name, "': ", size, " bytes is too large");
  static const unsigned char kPngSignature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  const bool png = size >= 8 && std::memcmp(data, kPngSignature, 8) == 0;
  const PngLayout layout = png ? walk_png(data, size, name) : PngLayout{};
  int in_file = 0;
  check_io(stbi_info_from_memory(data, static_cast<int>(size), w, h, &in_file) != 0,
           "cannot read image '", name,
           "': ", stbi_failure_reason() ? stbi_failure_reason() : "unknown format");
  check_io(*w > 0 && *h > 0 && static_cast<int64_t>(*w) * *h <= kMaxImagePixels,
           "cannot read image '", name, "': ", *w, "x", *h, " is larger than the limit of ",
           kMaxImagePixels, " pixels");
  if (png) check_png_data(layout, name);
  unsigned char* px = stbi_load_from_memory(data, static_cast<int>(size), w, h, &in_file, channels);
  check_io(px != nullptr, "cannot read image '", name,
           "': ", stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
  return px;
}

std::vector<unsigned char> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check_io(f.good(), "cannot open '", path, "': ", std::strerror(errno));
  std::vector<unsigned char> out((std::istreambuf_iterator<char>(f)),
                                 std::istreambuf_iterator<char>());
  check_io(!f.bad(), "cannot read '", path, "'");
  return out;
}

}  // namespace detail

Tensor parse_idx(const unsigned char* data, size_t size, const std::string& name) {
  const std::string& path = name;
  check_io(size >= 4, "idx file '", path, "' is truncated: ", size, " bytes, no complete header");
  check_io(data[0] == 0 && data[1] == 0, "idx file '", path,
           "' has a bad magic number (first bytes ", static_cast<int>(data[0]), " ",
           static_cast<int>(data[1]), ", expected 0 0)");
  at::ScalarType type;
  size_t elem = 1;
  switch (data[2]) {
    case 0x08:
      type = at::kByte, elem = 1;
      break;
    case 0x09:
      type = at::kChar, elem = 1;
      break;
    case 0x0B:
      type = at::kShort, elem = 2;
      break;
    case 0x0C:
      type = at::kInt, elem = 4;
      break;
    case 0x0D:
      type = at::kFloat, elem = 4;
      break;
    case 0x0E:
      type = at::kDouble, elem = 8;
      break;
    default:
      throw IOError("idx file '" + path + "' has a bad magic number (unknown type code " +
                    std::to_string(static_cast<int>(data[2])) + ")");
  }
  const int ndims = data[3];
  check_io(ndims >= 1, "idx file '", path, "' has a bad magic number (0 dimensions)");
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  check_io(size >= header, "idx file '", path, "' is truncated: ", size, " bytes, header needs ",
           header);
  std::vector<int64_t> dims(static_cast<size_t>(ndims));
  size_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    const unsigned char* p = &data[4 + 4 * static_cast<size_t>(d)];
    const uint32_t v = be32(p);
    dims[static_cast<size_t>(d)] = static_cast<int64_t>(v);
    check_io(v == 0 || count <= (size_t{1} << 40) / v, "idx file '", path,
             "' announces an absurd size");
    count *= v;
  }
  const size_t expected = header + count * elem;
  check_io(size >= expected, "idx file '", path, "' is truncated: ", size, " bytes, the header ",
           at::IntArrayRef(dims), " needs ", expected);
  check_io(size == expected, "idx file '", path, "' is corrupt: ", size, " bytes, the header ",
           at::IntArrayRef(dims), " needs exactly ", expected);
  Tensor out = at::empty(dims, at::TensorOptions().dtype(type));
  auto* dst = static_cast<unsigned char*>(out.data_ptr());
  const unsigned char* src = data + header;
  if (count == 0) return out;  // no storage: data_ptr() is null, which memcpy must not get
  if (elem == 1) {
    std::memcpy(dst, src, count);
  } else {  // big-endian on disk
    for (size_t i = 0; i < count; ++i)
      for (size_t b = 0; b < elem; ++b) dst[i * elem + b] = src[i * elem + (elem - 1 - b)];
  }
  return out;
}

Tensor read_idx(const std::string& path) {
  const std::vector<unsigned char> bytes = detail::read_maybe_gzipped(path);
  return parse_idx(bytes.data(), bytes.size(), path);
}

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

std::string fashion_mnist_default_dir() {
  const char* env = std::getenv("DIFFUSE_FASHION_MNIST_DIR");
  return env && *env ? std::string(env) : std::string("/usr/share/datasets/fashion-mnist");
}

Dataset load_fashion_mnist(const std::string& split, const std::string& dir, int64_t limit) {
  check(split == "train" || split == "test",
        "load_fashion_mnist: split must be 'train' or 'test', got '", split, "'");
  check(limit == -1 || limit >= 1, "load_fashion_mnist: limit must be -1 (all) or >= 1, got ",
        limit);
  const std::string root = dir.empty() ? fashion_mnist_default_dir() : dir;
  const std::string prefix = split == "train" ? "train" : "t10k";
  auto locate = [&](const std::string& stem) {
    const std::filesystem::path base = std::filesystem::path(root) / stem;
    std::error_code ec;
    if (!std::filesystem::exists(base.string() + ".gz", ec) && std::filesystem::exists(base, ec))
      return base.string();
    return base.string() + ".gz";  // the name the error reports when neither exists
  };
  const std::string image_path = locate(prefix + "-images-idx3-ubyte"),
                    label_path = locate(prefix + "-labels-idx1-ubyte");
  const Tensor images = read_idx(image_path), labels = read_idx(label_path);
  check_io(images.scalar_type() == at::kByte && images.dim() == 3 && images.size(1) == 28 &&
               images.size(2) == 28,
           "Fashion-MNIST image file '", image_path, "' must hold uint8 [N, 28, 28], got ",
           images.scalar_type(), " ", images.sizes());
  check_io(labels.scalar_type() == at::kByte && labels.dim() == 1, "Fashion-MNIST label file '",
           label_path, "' must hold uint8 [N], got ", labels.scalar_type(), " ", labels.sizes());
  check_io(images.size(0) == labels.size(0), "Fashion-MNIST files disagree: '", image_path,
           "' has ", images.size(0), " images but '", label_path, "' has ", labels.size(0),
           " labels");
  check_io(images.size(0) > 0, "Fashion-MNIST image file '", image_path, "' holds no images");
  check_io(labels.max().item<int64_t>() <= 9, "Fashion-MNIST label file '", label_path,
           "' has labels above 9 (max ", labels.max().item<int64_t>(), ")");
  const int64_t n = limit < 0 ? images.size(0) : std::min(limit, images.size(0));
  Dataset ds;
  ds.data = images.narrow(0, 0, n).to(at::kFloat).div(127.5).sub(1.0).unsqueeze(1).contiguous();
  ds.labels = labels.narrow(0, 0, n).to(at::kLong).contiguous();
  ds.num_classes = 10;
  ds.name = "fashion_mnist/" + split;
  return ds;
}

Tensor decode_image(const unsigned char* data, size_t size, const std::string& name, int channels) {
  check(channels == 1 || channels == 3 || channels == 4, "decode_image('", name,
        "'): channels must be 1, 3 or 4, got ", channels);
  int w = 0, h = 0;
  unsigned char* px = detail::stb_decode(data, size, channels, name, &w, &h);
  Tensor out = at::from_blob(px, {h, w, channels}, at::kByte)
                   .permute({2, 0, 1})
                   .to(at::kFloat)
                   .div(127.5)
                   .sub(1.0);
  stbi_image_free(px);
  return out.contiguous();
}

Tensor read_image(const std::string& path, int channels) {
  check(channels == 1 || channels == 3 || channels == 4, "read_image('", path,
        "'): channels must be 1, 3 or 4, got ", channels);
  const std::vector<unsigned char> bytes = detail::read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path, channels);
}

namespace detail {

bool is_image_file(const std::filesystem::path& p) {
  const std::string s = p.filename().string();
  return ends_with_ci(s, ".png") || ends_with_ci(s, ".jpg") || ends_with_ci(s, ".jpeg") ||
         ends_with_ci(s, ".bmp");
}

std::vector<std::string> list_images(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && is_image_file(e.path())) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<unsigned char> crop_resize(const unsigned char* px, int w, int h, int c, int size,
                                       const std::string& path) {
  const int side = std::min(w, h), x0 = (w - side) / 2, y0 = (h - side) / 2;
  std::vector<unsigned char> out(static_cast<size_t>(size) * size * c);
  const int ok = stbir_resize_uint8(px + (static_cast<size_t>(y0) * w + x0) * c, side, side, w * c,
                                    out.data(), size, size, size * c, c);
  check(ok != 0, "cannot resize image '", path, "'");
  return out;
}

}  // namespace detail

std::vector<std::string> image_folder_classes(const std::string& dir) {
  std::error_code ec;
  check_io(std::filesystem::is_directory(dir, ec), "image folder '", dir,
           "' does not exist or is not a directory");
  std::vector<std::string> classes;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_directory() && !detail::list_images(e.path()).empty())
      classes.push_back(e.path().filename().string());
  std::sort(classes.begin(), classes.end());
  return classes;
}

Dataset load_image_folder(const std::string& dir, const ImageFolderOptions& options) {
  check(options.channels == 1 || options.channels == 3, "load_image_folder('", dir,
        "'): channels must be 1 or 3, got ", options.channels);
  check(options.size >= 0 && options.size <= 4096, "load_image_folder('", dir,
        "'): size must be in [0, 4096], got ", options.size);
  check(options.limit == -1 || options.limit >= 1, "load_image_folder('", dir,
        "'): limit must be -1 (all) or >= 1, got ", options.limit);
  const std::vector<std::string> classes = image_folder_classes(dir);
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  const std::vector<std::string> top = detail::list_images(dir);
  if (classes.empty()) {
    files = top;
  } else {
    check(top.empty(), "image folder '", dir,
          "' has both class subfolders and images at the top level (e.g. '",
          top.empty() ? std::string() : top.front(), "'); use one layout");
    for (size_t k = 0; k < classes.size(); ++k)
      for (const auto& f : detail::list_images(std::filesystem::path(dir) / classes[k])) {
        files.push_back(f);
        labels.push_back(static_cast<int64_t>(k));
      }
  }
  check(!files.empty(), "image folder '", dir,
        "' holds no images (.png, .jpg, .jpeg, .bmp) directly or in subfolders");
  if (options.limit > 0 && static_cast<int64_t>(files.size()) > options.limit) {
    files.resize(static_cast<size_t>(options.limit));
    if (!labels.empty()) labels.resize(static_cast<size_t>(options.limit));
  }
  const int c = static_cast<int>(options.channels);
  std::vector<Tensor> images;
  images.reserve(files.size());
  int64_t h0 = -1, w0 = -1;
  for (const auto& f : files) {
    int w = 0, h = 0;
    const std::vector<unsigned char> bytes = detail::read_file_bytes(f);
    unsigned char* px = detail::stb_decode(bytes.data(), bytes.size(), c, f, &w, &h);
    Tensor img;
    try {
      if (options.size > 0) {
        std::vector<unsigned char> r =
            detail::crop_resize(px, w, h, c, static_cast<int>(options.size), f);
        img = at::from_blob(r.data(), {options.size, options.size, c}, at::kByte).clone();
      } else {
        img = at::from_blob(px, {h, w, c}, at::kByte).clone();
      }
    } catch (...) {
      stbi_image_free(px);
      throw;
    }
    stbi_image_free(px);
    if (h0 < 0) h0 = img.size(0), w0 = img.size(1);
    check(img.size(0) == h0 && img.size(1) == w0, "image '", f, "' is ", img.size(1), "x",
          img.size(0), " but '", files.front(), "' is ", w0, "x", h0,
          "; set ImageFolderOptions::size to resize");
    images.push_back(img);
  }
  Dataset ds;
  ds.data = at::stack(images).permute({0, 3, 1, 2}).to(at::kFloat).div(127.5).sub(1.0).contiguous();
  if (!labels.empty()) {
    ds.labels = at::tensor(labels, at::kLong);
    ds.num_classes = static_cast<int64_t>(classes.size());
  }
  ds.name = dir;
  return ds;
}

const std::vector<std::string>& toy_2d_names() {
  static const std::vector<std::string> names = {"moons", "swiss_roll", "circles", "checkerboard",
                                                 "eight_gaussians"};
  return names;
}

Dataset make_toy_2d(const std::string& name, int64_t n, at::Generator gen) {
  check(n >= 1, "make_toy_2d('", name, "'): n must be >= 1, got ", n);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const double pi = 3.14159265358979323846;
  Dataset ds;
  ds.name = name;
  Tensor x, y;
  double cx = 0, cy = 0, scale = 1;
  if (name == "moons") {
    const Tensor b = at::randint(0, 2, {n}, gen, at::kLong);
    const Tensor t = at::rand({n}, gen, f64) * pi;
    const Tensor inner = b.to(at::kDouble);
    x = at::cos(t) * (1 - 2 * inner) + inner;        // outer: cos t; inner: 1 - cos t
    y = at::sin(t) * (1 - 2 * inner) + 0.5 * inner;  // outer: sin t; inner: 0.5 - sin t
    const Tensor noise = at::randn({n, 2}, gen, f64) * 0.1;
    x = x + noise.select(1, 0), y = y + noise.select(1, 1);
    cx = 0.5, cy = 0.25, scale = 0.712;
    ds.labels = b, ds.num_classes = 2;
  } else if (name == "swiss_roll") {
    const Tensor t = 1.5 * pi * (1 + 2 * at::rand({n}, gen, f64));
    const Tensor noise = at::randn({n, 2}, gen, f64);
    x = t * at::cos(t) + noise.select(1, 0), y = t * at::sin(t) + noise.select(1, 1);
    cx = 2.0, cy = 0.21, scale = 6.86;
  } else if (name == "circles") {
    const Tensor b = at::randint(0, 2, {n}, gen, at::kLong);
    const Tensor a = at::rand({n}, gen, f64) * (2 * pi);
    const Tensor r = 1.0 - 0.5 * b.to(at::kDouble);
    const Tensor noise = at::randn({n, 2}, gen, f64) * 0.08;
    x = r * at::cos(a) + noise.select(1, 0), y = r * at::sin(a) + noise.select(1, 1);
    scale = std::sqrt((1.0 + 0.25) / 4 + 0.08 * 0.08);
    ds.labels = b, ds.num_classes = 2;
  } else if (name == "checkerboard") {
    x = at::rand({n}, gen, f64) * 4 - 2;
    y = at::rand({n}, gen, f64) - 2 * at::randint(0, 2, {n}, gen, f64) +
        at::remainder(at::floor(x), 2.0);
    x = x * 2, y = y * 2;
    scale = 8.0 / std::sqrt(12.0);
  } else if (name == "eight_gaussians") {
    const Tensor k = at::randint(0, 8, {n}, gen, at::kLong);
    const Tensor a = k.to(at::kDouble) * (2 * pi / 8);
    const Tensor noise = at::randn({n, 2}, gen, f64) * 0.5;
    x = 4 * at::cos(a) + noise.select(1, 0), y = 4 * at::sin(a) + noise.select(1, 1);
    scale = std::sqrt(8.0 + 0.25);
    ds.labels = k, ds.num_classes = 8;
  } else {
    std::string valid;
    for (const auto& s : toy_2d_names()) valid += (valid.empty() ? "" : ", ") + s;
    throw Error("make_toy_2d: unknown toy set '" + name + "' (valid: " + valid + ")");
  }
  ds.data = at::stack({(x - cx) / scale, (y - cy) / scale}, 1).to(at::kFloat).contiguous();
  return ds;
}

Dataset mixture_dataset(const GaussianMixture& mixture, int64_t n, at::Generator gen) {
  check(n >= 1, "mixture_dataset: n must be >= 1, got ", n);
  const GmmSamples s = mixture.sample(n, gen, at::kFloat);
  Dataset ds;
  ds.data = s.x0.contiguous();
  ds.labels = s.labels.to(at::kLong);
  ds.num_classes = mixture.num_components();
  ds.name = "gaussian_mixture";
  return ds;
}

}  // namespace diffuse
