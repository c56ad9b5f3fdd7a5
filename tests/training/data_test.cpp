// SPDX-License-Identifier: Apache-2.0
// training/data.h: idx files written here byte by byte (raw and gzip) read back exactly; every
// broken file gives a diffuse::Error naming it; the real Fashion-MNIST (when installed) has the
// published sizes and class balance; image folders round-trip through save_png; toy sets and
// mixture draws have the documented shapes, labels, scale and determinism.
#include <diffuse/config.h>
#include <diffuse/gaussian_mixture.h>
#include <diffuse/noise.h>  // detail::cpu_generator
#include <diffuse/training/data.h>
#include <diffuse/training/image.h>

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>

#include "temp_dir.h"

namespace diffuse {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

/// idx header bytes: 0 0 type ndims, then big-endian dims.
std::vector<unsigned char> idx_header(unsigned char type, const std::vector<uint32_t>& dims) {
  std::vector<unsigned char> b = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (uint32_t d : dims) {
    b.push_back(static_cast<unsigned char>(d >> 24));
    b.push_back(static_cast<unsigned char>(d >> 16));
    b.push_back(static_cast<unsigned char>(d >> 8));
    b.push_back(static_cast<unsigned char>(d));
  }
  return b;
}

void write_raw(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

std::vector<unsigned char> ubyte_file(const std::vector<uint32_t>& dims, int seed) {
  std::vector<unsigned char> b = idx_header(0x08, dims);
  size_t n = 1;
  for (uint32_t d : dims) n *= d;
  for (size_t i = 0; i < n; ++i)
    b.push_back(static_cast<unsigned char>((i * 37 + static_cast<size_t>(seed)) % 256));
  return b;
}

template <class F>
void ExpectErrorNaming(F&& f, const std::string& needle, const std::string& also = "") {
  try {
    f();
    ADD_FAILURE() << "expected a diffuse::Error naming " << needle;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    if (!also.empty()) {
      EXPECT_NE(what.find(also), std::string::npos) << what;
    }
  }
}

TEST(ReadIdx, RawAndGzipRoundTripByteExactly) {
  TempDir dir("idx");
  const std::vector<unsigned char> bytes = ubyte_file({2, 3, 4}, 5);
  write_raw(dir / "a-idx3-ubyte", bytes);
  write_gz(dir / "a-idx3-ubyte.gz", bytes);
  for (const std::string name : {"a-idx3-ubyte", "a-idx3-ubyte.gz"}) {
    const Tensor t = read_idx(dir / name);
    ASSERT_EQ(t.scalar_type(), at::kByte) << name;
    ASSERT_EQ(t.sizes(), at::IntArrayRef({2, 3, 4})) << name;
    const uint8_t* p = t.data_ptr<uint8_t>();
    for (int64_t i = 0; i < 24; ++i)
      ASSERT_EQ(p[i], bytes[16 + static_cast<size_t>(i)]) << name << " element " << i;
  }
  // idx1 labels.
  write_gz(dir / "l-idx1-ubyte.gz", ubyte_file({7}, 1));
  EXPECT_EQ(read_idx(dir / "l-idx1-ubyte.gz").sizes(), at::IntArrayRef({7}));
}

TEST(ReadIdx, MultiByteTypesAreBigEndian) {
  TempDir dir("idx_int");
  std::vector<unsigned char> b = idx_header(0x0C, {2});
  for (unsigned char c : {0x00, 0x00, 0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFE})
    b.push_back(c);  // 258, -2
  write_raw(dir / "i.idx", b);
  const Tensor t = read_idx(dir / "i.idx");
  ASSERT_EQ(t.scalar_type(), at::kInt);
  EXPECT_EQ(t[0].item<int32_t>(), 258);
  EXPECT_EQ(t[1].item<int32_t>(), -2);
}

TEST(ReadIdx, BrokenFilesAreErrorsNamingTheFile) {
  TempDir dir("idx_bad");
  const std::vector<unsigned char> good = ubyte_file({3, 28, 28}, 0);
  ExpectErrorNaming([&] { read_idx(dir / "missing-idx3-ubyte.gz"); }, "missing-idx3-ubyte.gz",
                    "no such file");

  std::vector<unsigned char> cut(good.begin(), good.end() - 10);
  write_raw(dir / "cut-raw", cut);
  ExpectErrorNaming([&] { read_idx(dir / "cut-raw"); }, "cut-raw", "truncated");
  write_raw(dir / "cut-header", std::vector<unsigned char>(good.begin(), good.begin() + 9));
  ExpectErrorNaming([&] { read_idx(dir / "cut-header"); }, "cut-header", "truncated");

  // A gzip stream cut in the middle: zlib reports it, or the payload comes out short.
  write_gz(dir / "full.gz", good);
  std::ifstream in(dir / "full.gz", std::ios::binary);
  std::vector<char> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(gz.size(), 40u);
  write_raw(dir / "cut.gz",
            std::vector<unsigned char>(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2)));
  ExpectErrorNaming([&] { read_idx(dir / "cut.gz"); }, "cut.gz");

  std::vector<unsigned char> magic = good;
  magic[0] = 0x1F;
  write_raw(dir / "magic0", magic);
  ExpectErrorNaming([&] { read_idx(dir / "magic0"); }, "magic0", "magic");
  magic = good;
  magic[2] = 0x42;  // no such type code
  write_raw(dir / "magic-type", magic);
  ExpectErrorNaming([&] { read_idx(dir / "magic-type"); }, "magic-type", "magic");

  std::vector<unsigned char> longer = good;
  longer.push_back(7);
  write_raw(dir / "trailing", longer);
  ExpectErrorNaming([&] { read_idx(dir / "trailing"); }, "trailing", "exactly");
}

/// A miniature Fashion-MNIST directory: n images of 28x28, m labels.
void write_mini_fashion(const TempDir& dir, const std::string& prefix, uint32_t n, uint32_t m) {
  write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), ubyte_file({n, 28, 28}, 3));
  std::vector<unsigned char> labels = idx_header(0x08, {m});
  for (uint32_t i = 0; i < m; ++i) labels.push_back(static_cast<unsigned char>(i % 10));
  write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), labels);
}

TEST(FashionMnist, LoadsAMiniatureDirectoryWithScalingAndLimit) {
  TempDir dir("fm_mini");
  write_mini_fashion(dir, "t10k", 12, 12);
  const Dataset ds = load_fashion_mnist("test", dir.path.string());
  ds.validate();
  ASSERT_EQ(ds.data.sizes(), at::IntArrayRef({12, 1, 28, 28}));
  EXPECT_EQ(ds.data.scalar_type(), at::kFloat);
  EXPECT_EQ(ds.labels.scalar_type(), at::kLong);
  EXPECT_EQ(ds.num_classes, 10);
  EXPECT_EQ(ds.name, "fashion_mnist/test");
  // Pixel i of the file is (i * 37 + 3) % 256, mapped to p / 127.5 - 1.
  for (int64_t i : {0, 1, 100, 783, 784, 5000}) {
    const double p = static_cast<double>((i * 37 + 3) % 256);
    EXPECT_NEAR(ds.data.reshape({-1})[i].item<double>(), p / 127.5 - 1.0, 1e-6) << i;
  }
  EXPECT_EQ(ds.labels[11].item<int64_t>(), 1);
  const Dataset few = load_fashion_mnist("test", dir.path.string(), 5);
  EXPECT_EQ(few.size(), 5);
  EXPECT_TRUE(few.data.equal(ds.data.narrow(0, 0, 5)));
}

TEST(FashionMnist, BrokenDirectoriesAreErrorsNamingTheFile) {
  TempDir dir("fm_bad");
  ExpectErrorNaming([&] { load_fashion_mnist("train", dir.path.string()); },
                    "train-images-idx3-ubyte.gz", "no such file");
  write_mini_fashion(dir, "train", 5, 4);
  ExpectErrorNaming([&] { load_fashion_mnist("train", dir.path.string()); },
                    "train-labels-idx1-ubyte.gz", "disagree");
  write_mini_fashion(dir, "t10k", 4, 4);
  write_gz(dir / "t10k-images-idx3-ubyte.gz", ubyte_file({4, 27, 28}, 0));  // wrong image size
  ExpectErrorNaming([&] { load_fashion_mnist("test", dir.path.string()); },
                    "t10k-images-idx3-ubyte.gz", "28");
  ExpectErrorNaming([&] { load_fashion_mnist("validation", dir.path.string()); }, "validation");
}

TEST(FashionMnist, RealDataHasThePublishedSizesAndBalance) {
  const std::string dir = fashion_mnist_default_dir();
  if (!fs::exists(fs::path(dir) / "train-images-idx3-ubyte.gz") &&
      !fs::exists(fs::path(dir) / "train-images-idx3-ubyte"))
    GTEST_SKIP() << "Fashion-MNIST not installed in " << dir
                 << " (Debian package dataset-fashion-mnist)";
  const Dataset train = load_fashion_mnist("train"), test = load_fashion_mnist("test");
  train.validate();
  test.validate();
  ASSERT_EQ(train.data.sizes(), at::IntArrayRef({60000, 1, 28, 28}));
  ASSERT_EQ(test.data.sizes(), at::IntArrayRef({10000, 1, 28, 28}));
  EXPECT_EQ(train.data.min().item<float>(), -1.0f);
  EXPECT_EQ(train.data.max().item<float>(), 1.0f);
  EXPECT_EQ(train.num_classes, 10);
  const Tensor train_counts = at::bincount(train.labels), test_counts = at::bincount(test.labels);
  EXPECT_TRUE(train_counts.equal(at::full({10}, 6000, at::kLong))) << train_counts;
  EXPECT_TRUE(test_counts.equal(at::full({10}, 1000, at::kLong))) << test_counts;
  EXPECT_EQ(fashion_mnist_class_names().size(), 10u);
  EXPECT_EQ(fashion_mnist_class_names()[9], "Ankle boot");
}

/// A deterministic [C, H, W] image with values on the 8-bit grid k / 127.5 - 1.
Tensor grid_image(int64_t c, int64_t h, int64_t w, int64_t seed) {
  return at::remainder(at::arange(c * h * w, at::kLong) * 31 + seed, 256)
      .to(at::kFloat)
      .div(127.5)
      .sub(1.0)
      .reshape({c, h, w});
}

TEST(ImageFolder, ClassSubfoldersRoundTripThroughSavePng) {
  TempDir dir("folder");
  fs::create_directories(dir.path / "zebra");
  fs::create_directories(dir.path / "apple");
  fs::create_directories(dir.path / "empty_class");
  save_png(dir / "zebra/0.png", grid_image(3, 6, 5, 1));
  save_png(dir / "zebra/1.png", grid_image(3, 6, 5, 2));
  save_png(dir / "apple/x.png", grid_image(3, 6, 5, 3));
  EXPECT_EQ(image_folder_classes(dir.path.string()), (std::vector<std::string>{"apple", "zebra"}));
  const Dataset ds = load_image_folder(dir.path.string());
  ds.validate();
  ASSERT_EQ(ds.data.sizes(), at::IntArrayRef({3, 3, 6, 5}));
  EXPECT_EQ(ds.num_classes, 2);
  EXPECT_TRUE(ds.labels.equal(at::tensor({0, 1, 1}, at::kLong))) << ds.labels;
  // Exact pixel round trip: apple/x.png first, then zebra/0.png, zebra/1.png.
  EXPECT_TRUE(at::allclose(ds.data[0], grid_image(3, 6, 5, 3), 0, 1e-6));
  EXPECT_TRUE(at::allclose(ds.data[2], grid_image(3, 6, 5, 2), 0, 1e-6));

  // Grey: RGB is converted by luma; a grey image reads back unchanged.
  ImageFolderOptions grey;
  grey.channels = 1;
  TempDir flat("folder_flat");
  save_png(flat / "a.png", grid_image(1, 6, 5, 4));
  save_png(flat / "b.PNG", grid_image(1, 6, 5, 5));
  const Dataset g = load_image_folder(flat.path.string(), grey);
  EXPECT_FALSE(g.labels.defined());
  EXPECT_EQ(g.num_classes, 0);
  ASSERT_EQ(g.data.sizes(), at::IntArrayRef({2, 1, 6, 5}));
  EXPECT_TRUE(at::allclose(g.data[1], grid_image(1, 6, 5, 5), 0, 1e-6));
}

TEST(ImageFolder, ResizeCentreCropsToASquare) {
  TempDir dir("folder_resize");
  // 12 wide, 8 high: left and right 2 columns are cropped away; the centre 8x8 is constant 0.6.
  Tensor img = at::full({1, 8, 12}, 0.6);
  img.narrow(2, 0, 2).fill_(-1.0);
  img.narrow(2, 10, 2).fill_(-1.0);
  save_png(dir / "wide.png", img);
  save_png(dir / "tall.png", at::full({1, 20, 4}, -0.2));
  ImageFolderOptions o;
  o.size = 4;
  o.channels = 1;
  const Dataset ds = load_image_folder(dir.path.string(), o);
  ASSERT_EQ(ds.data.sizes(), at::IntArrayRef({2, 1, 4, 4}));
  // Sorted: tall.png, wide.png. Constant images stay constant (within one 8-bit step).
  EXPECT_NEAR(ds.data[0].min().item<double>(), -0.2, 1.0 / 127.5);
  EXPECT_NEAR(ds.data[0].max().item<double>(), -0.2, 1.0 / 127.5);
  EXPECT_NEAR(ds.data[1].min().item<double>(), 0.6, 1.0 / 127.5);
  EXPECT_NEAR(ds.data[1].max().item<double>(), 0.6, 1.0 / 127.5);
}

TEST(ImageFolder, BadFoldersAreErrorsNamingThem) {
  TempDir dir("folder_bad");
  ExpectErrorNaming([&] { load_image_folder(dir / "nope"); }, "nope", "does not exist");
  ExpectErrorNaming([&] { load_image_folder(dir.path.string()); }, dir.path.string(), "no images");
  save_png(dir / "a.png", at::zeros({1, 4, 4}));
  save_png(dir / "b.png", at::zeros({1, 5, 4}));
  ExpectErrorNaming([&] { load_image_folder(dir.path.string()); }, "b.png", "size");
  fs::remove(dir.path / "b.png");
  write_raw(dir / "c.png", {1, 2, 3, 4, 5});
  ExpectErrorNaming([&] { load_image_folder(dir.path.string()); }, "c.png", "cannot read image");
  ImageFolderOptions bad;
  bad.channels = 2;
  ExpectErrorNaming([&] { load_image_folder(dir.path.string(), bad); }, "channels");
}

TEST(Toy2d, ShapesLabelsScaleAndDeterminism) {
  for (const std::string& name : toy_2d_names()) {
    const Dataset a = make_toy_2d(name, 20000, detail::cpu_generator(3));
    const Dataset b = make_toy_2d(name, 20000, detail::cpu_generator(3));
    const Dataset c = make_toy_2d(name, 20000, detail::cpu_generator(4));
    a.validate();
    ASSERT_EQ(a.data.sizes(), at::IntArrayRef({20000, 2})) << name;
    EXPECT_EQ(a.data.scalar_type(), at::kFloat) << name;
    EXPECT_TRUE(a.data.equal(b.data)) << name;
    EXPECT_FALSE(a.data.equal(c.data)) << name;
    // Isotropic scaling keeps the shape: the per-coordinate variances average to 1 (moons: 1.5,
    // 0.5).
    const Tensor mean = a.data.mean(0), var = a.data.var(0);
    EXPECT_LT(mean.abs().max().item<double>(), 0.08) << name << " mean " << mean;
    EXPECT_NEAR(var.mean().item<double>(), 1.0, 0.05) << name << " var " << var;
    EXPECT_GT(var.min().item<double>(), 0.45) << name << " var " << var;
    EXPECT_EQ(a.name, name);
  }
  const Dataset moons = make_toy_2d("moons", 1000, detail::cpu_generator(0));
  EXPECT_EQ(moons.num_classes, 2);
  const Dataset g8 = make_toy_2d("eight_gaussians", 4000, detail::cpu_generator(0));
  EXPECT_EQ(g8.num_classes, 8);
  EXPECT_EQ(at::bincount(g8.labels).min().item<int64_t>() > 400, true);
  // Points of one Gaussian sit around its centre 4 (cos, sin)(k pi / 4) / sqrt(8.25).
  const Tensor k2 = g8.data.index_select(0, g8.labels.eq(2).nonzero().squeeze(1)).mean(0);
  EXPECT_NEAR(k2[0].item<double>(), 0.0, 0.05);
  EXPECT_NEAR(k2[1].item<double>(), 4.0 / std::sqrt(8.25), 0.05);
  EXPECT_FALSE(make_toy_2d("checkerboard", 10, detail::cpu_generator(0)).labels.defined());
  ExpectErrorNaming([&] { make_toy_2d("spiral", 10, detail::cpu_generator(0)); }, "spiral",
                    "moons");
  ExpectErrorNaming([&] { make_toy_2d("moons", 0, detail::cpu_generator(0)); }, "n must be");
}

TEST(Toy2d, CheckerboardOccupiesOnlyDarkSquares) {
  // Unscaled, the board is [-4, 4]^2 in 2x2 squares; a point's square (i, j) has i + j even.
  const Dataset ds = make_toy_2d("checkerboard", 5000, detail::cpu_generator(1));
  const Tensor raw = ds.data.to(at::kDouble) * (8.0 / std::sqrt(12.0));
  const Tensor cells = at::floor(raw / 2.0).to(at::kLong);
  EXPECT_TRUE(at::remainder(cells.sum(1), 2).eq(0).all().item<bool>());
  EXPECT_LE(raw.abs().max().item<double>(), 4.0 + 1e-5);
}

TEST(MixtureDataset, DrawsWithComponentLabels) {
  const GaussianMixture gm = GaussianMixture::preset("mixture_2d");
  const Dataset a = mixture_dataset(gm, 3000, detail::cpu_generator(9));
  const Dataset b = mixture_dataset(gm, 3000, detail::cpu_generator(9));
  a.validate();
  EXPECT_EQ(a.data.sizes(), at::IntArrayRef({3000, 2}));
  EXPECT_EQ(a.data.scalar_type(), at::kFloat);
  EXPECT_EQ(a.num_classes, gm.num_components());
  EXPECT_TRUE(a.data.equal(b.data));
  EXPECT_TRUE(a.labels.equal(b.labels));
  EXPECT_LT((a.data.to(at::kDouble).mean(0) - gm.mean()).abs().max().item<double>(), 0.15);
}

}  // namespace
}  // namespace diffuse
