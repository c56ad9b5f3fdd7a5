// SPDX-License-Identifier: Apache-2.0
// training/image.h: PNGs read back through stb_image with the exact 8-bit values; grids have
// torchvision's geometry; plots are valid PNGs of the requested size with the curve colours; and
// a failed write leaves neither the target nor a temporary file behind.
#include <diffuse/training/image.h>
#include <diffuse/training/plot.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <ATen/ATen.h>

#include <stb/stb_image.h>

#include <gtest/gtest.h>

#include "temp_dir.h"

namespace diffuse {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

struct Loaded {
  int w = 0, h = 0, c = 0;
  std::vector<unsigned char> px;
};

Loaded load(const std::string& path) {
  Loaded l;
  unsigned char* p = stbi_load(path.c_str(), &l.w, &l.h, &l.c, 0);
  if (p) {
    l.px.assign(p, p + static_cast<size_t>(l.w) * l.h * l.c);
    stbi_image_free(p);
  }
  return l;
}

TEST(SavePng, RoundTripsExactBytesThroughStbImage) {
  TempDir dir("png");
  // Bytes b in 0..255 are written as b / 127.5 - 1 and must come back as b.
  const Tensor bytes = at::remainder(at::arange(3 * 5 * 7, at::kLong) * 53 + 11, 256);
  save_png(dir / "rgb.png", bytes.to(at::kDouble).div(127.5).sub(1.0).reshape({3, 5, 7}));
  const Loaded l = load(dir / "rgb.png");
  ASSERT_EQ(l.w, 7);
  ASSERT_EQ(l.h, 5);
  ASSERT_EQ(l.c, 3);
  const Tensor hwc = bytes.reshape({3, 5, 7}).permute({1, 2, 0}).contiguous().reshape({-1});
  for (int64_t i = 0; i < hwc.numel(); ++i)
    ASSERT_EQ(l.px[static_cast<size_t>(i)], hwc[i].item<int64_t>()) << i;

  // [H, W] grey, and clamping: values beyond [-1, 1] saturate.
  Tensor grey = at::zeros({2, 3});
  grey[0][0] = -5.0;
  grey[0][1] = 5.0;
  grey[0][2] = 0.0;  // 127.5 rounds to 128
  save_png(dir / "grey.png", grey);
  const Loaded g = load(dir / "grey.png");
  ASSERT_EQ(g.c, 1);
  EXPECT_EQ(g.px[0], 0);
  EXPECT_EQ(g.px[1], 255);
  EXPECT_EQ(g.px[2], 128);
  EXPECT_EQ(dir.count(), 2u) << "no temporary files are left behind";
}

TEST(SaveJpeg, RgbRoundTripsCloselyAndSaveImagePicksTheFormat) {
  TempDir dir("jpeg");
  // A smooth RGB image (JPEG is lossy; smooth content survives quality 95 within a few levels).
  const Tensor y = at::linspace(-1, 1, 40).view({1, 40, 1});
  const Tensor x = at::linspace(-1, 1, 56).view({1, 1, 56});
  const Tensor img = at::cat({(y * 0.8).expand({1, 40, 56}), (x * 0.6).expand({1, 40, 56}),
                              (0.5 * at::sin(3 * x + 2 * y)).expand({1, 40, 56})},
                             0);
  save_image(dir / "a.JPG", img);
  const Loaded l = load(dir / "a.JPG");
  ASSERT_EQ(l.w, 56);
  ASSERT_EQ(l.h, 40);
  ASSERT_EQ(l.c, 3);
  const Tensor back = at::from_blob(const_cast<unsigned char*>(l.px.data()), {40, 56, 3}, at::kByte)
                          .to(at::kDouble)
                          .permute({2, 0, 1})
                          .div(127.5)
                          .sub(1.0);
  EXPECT_LT((back - img.to(at::kDouble)).abs().mean().item<double>(), 0.02);
  EXPECT_LT((back - img.to(at::kDouble)).abs().max().item<double>(), 0.15);
  save_image(dir / "b.png", img);
  EXPECT_EQ(load(dir / "b.png").c, 3);
  EXPECT_THROW(save_image(dir / "c.gif", img), Error);
  EXPECT_THROW(save_jpeg(dir / "d.jpg", at::zeros({4, 8, 8})), Error);  // RGBA: no JPEG
  EXPECT_EQ(dir.count(), 2u);
}

TEST(SavePng, FailuresNameThePathAndLeaveNoFile) {
  TempDir dir("png_fail");
  try {
    save_png(dir / "no_such_dir/x.png", at::zeros({1, 4, 4}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_dir/x.png"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir.count(), 0u);
  // A failed write keeps the previous file intact.
  save_png(dir / "keep.png", at::ones({1, 4, 4}));
  Tensor bad = at::zeros({1, 4, 4});
  bad[0][1][1] = std::nan("");
  try {
    save_png(dir / "keep.png", bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("keep.png"), std::string::npos) << e.what();
  }
  EXPECT_EQ(load(dir / "keep.png").px, std::vector<unsigned char>(16, 255));
  EXPECT_EQ(dir.count(), 1u);
  EXPECT_THROW(save_png(dir / "c2.png", at::zeros({2, 4, 4})), Error);  // 2 channels
  EXPECT_THROW(save_png(dir / "int.png", at::zeros({1, 4, 4}, at::kLong)), Error);
}

TEST(ImageGrid, HasTorchvisionGeometry) {
  // 5 images 1x2x3 with values i / 10, 3 per row, padding 2: [1, 2 * 4 + 2, 3 * 5 + 2].
  const Tensor images =
      (at::arange(5, at::kFloat) / 10).reshape({5, 1, 1, 1}).expand({5, 1, 2, 3}).contiguous();
  const Tensor g = make_image_grid(images, 3, 2, -1.0);
  ASSERT_EQ(g.sizes(), at::IntArrayRef({1, 10, 17}));
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t r = i / 3, c = i % 3;
    EXPECT_TRUE(g[0].narrow(0, 2 + 4 * r, 2)
                    .narrow(1, 2 + 5 * c, 3)
                    .eq(static_cast<float>(i) / 10)
                    .all()
                    .item<bool>())
        << i;
  }
  // Padding and the empty sixth cell hold pad_value; total count = all pixels minus 5 tiles.
  EXPECT_EQ(g.eq(-1.0).sum().item<int64_t>(), 10 * 17 - 5 * 6);
  EXPECT_EQ(make_image_grid(images, 10).sizes(), at::IntArrayRef({1, 6, 27}));  // nrow clipped to N
  EXPECT_EQ(make_image_grid(images, 1, 0).sizes(), at::IntArrayRef({1, 10, 3}));
  EXPECT_THROW(make_image_grid(images, 0), Error);
  EXPECT_THROW(make_image_grid(images[0], 2), Error);

  TempDir dir("grid");
  save_image_grid(dir / "g.png", images, 3);
  const Loaded l = load(dir / "g.png");
  EXPECT_EQ(l.w, 17);
  EXPECT_EQ(l.h, 10);
}

TEST(PlotCurves, WritesAPngOfTheRequestedSizeWithEachCurveColour) {
  TempDir dir("plot");
  std::vector<double> x, y1, y2;
  for (int i = 0; i < 200; ++i) {
    x.push_back(i);
    y1.push_back(1.0 / (1.0 + i));
    y2.push_back(i == 50 ? std::nan("") : 0.5 + 0.001 * i);
  }
  PlotOptions o;
  o.title = "loss";
  o.width = 320;
  o.height = 200;
  plot_curves_png(dir / "p.png", {"a", "b"}, {x, x}, {y1, y2}, o);
  Loaded l = load(dir / "p.png");
  ASSERT_EQ(l.w, 320);
  ASSERT_EQ(l.h, 200);
  ASSERT_EQ(l.c, 3);
  auto count_colour = [&](int r, int g, int b) {
    int64_t n = 0;
    for (size_t i = 0; i + 2 < l.px.size(); i += 3)
      n += l.px[i] == r && l.px[i + 1] == g && l.px[i + 2] == b;
    return n;
  };
  EXPECT_GT(count_colour(31, 119, 180), 200) << "first curve colour";
  EXPECT_GT(count_colour(255, 127, 14), 200) << "second curve colour";
  o.log_y = true;  // y <= 0 points are skipped, not an error
  y1[3] = -1.0;
  plot_curves_png(dir / "log.png", {"a", "b"}, {x, x}, {y1, y2}, o);
  l = load(dir / "log.png");
  EXPECT_EQ(l.w, 320);
  plot_curves_png(dir / "empty.png", {}, {}, {}, {});
  EXPECT_EQ(load(dir / "empty.png").w, 640);
  EXPECT_EQ(dir.count(), 3u);
  EXPECT_THROW(plot_curves_png(dir / "bad.png", {"a"}, {x}, {y1, y2}), Error);
  EXPECT_THROW(plot_curves_png(dir / "bad.png", {"a"}, {x}, {std::vector<double>(3, 1.0)}), Error);
  try {
    plot_curves_png(dir / "missing/dir/p.png", {"a"}, {x}, {y1});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing/dir/p.png"), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir.count(), 3u);
}

// Pixels of colour c inside [x0, x1] x [y0, y1] of a rendered plot.
int64_t count_in(const detail::Canvas& cv, const unsigned char* c, int x0, int y0, int x1, int y1) {
  int64_t n = 0;
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x)
      n += std::memcmp(&cv.px[(static_cast<size_t>(y) * cv.w + x) * 3], c, 3) == 0;
  return n;
}

// Curves exactly on top of each other (as FD vs steps of two samplers that agree) must all stay
// visible, and the legend lists each with its own style.
TEST(PlotCurves, CoincidingCurvesStayVisibleAndTheLegendListsAll) {
  const std::vector<double> x = {1, 2, 3, 4}, y = {40, 25, 18, 16};
  PlotLayout L;
  const detail::Canvas cv =
      detail::render_plot("p.png", {"ddim", "euler", "heun"}, {x, x, x}, {y, y, y}, {}, &L);
  ASSERT_GE(L.legend_x0, 0);
  for (size_t i = 0; i < 3; ++i) {
    const unsigned char* c = detail::plot_colour(i);
    // In the data area outside the legend: on every curve, at least its markers show.
    const int64_t in_data = count_in(cv, c, L.left + 1, L.top + 1, L.right - 1, L.bottom - 1) -
                            count_in(cv, c, L.legend_x0, L.legend_y0, L.legend_x1, L.legend_y1);
    EXPECT_GT(in_data, 40) << "curve " << i << " is hidden by the others";
    EXPECT_GT(count_in(cv, c, L.legend_x0, L.legend_y0, L.legend_x1, L.legend_y1), 10)
        << "legend entry " << i;
  }
  // Six identical straight curves: curves 0 and 4 share the solid pattern, 1 and 5 the dashed one.
  // Every curve shows in the data area (line or marker), and the first of two same-pattern curves
  // frames the later one, so its line shows in the middle half of the plot (away from the markers
  // at the two ends; the legend sits in a corner).
  const std::vector<std::vector<double>> x6(6, {0.0, 1.0}), y6(6, {1.0, 2.0});
  const detail::Canvas cv6 =
      detail::render_plot("p.png", {"a", "b", "c", "d", "e", "f"}, x6, y6, {}, &L);
  const int quarter = (L.right - L.left) / 4;
  ASSERT_TRUE(L.legend_x1 < L.left + quarter || L.legend_x0 > L.right - quarter);
  for (size_t i = 0; i < 6; ++i) {
    const unsigned char* c = detail::plot_colour(i);
    const int64_t in_data = count_in(cv6, c, L.left + 1, L.top + 1, L.right - 1, L.bottom - 1) -
                            count_in(cv6, c, L.legend_x0, L.legend_y0, L.legend_x1, L.legend_y1);
    EXPECT_GT(in_data, 10) << "curve " << i << " is hidden by the others";
  }
  for (size_t i : {0, 1}) {
    const int64_t middle = count_in(cv6, detail::plot_colour(i), L.left + quarter, L.top + 1,
                                    L.right - quarter, L.bottom - 1);
    EXPECT_GT(middle, 30) << "the line of curve " << i
                          << " is hidden by the later one of its pattern";
  }
}

// The legend goes into a corner that no curve crosses, else right of the data area: it never covers
// a curve (the same plot rendered without the legend has no curve pixel under its box).
TEST(PlotCurves, TheLegendCoversNoCurve) {
  auto curve_pixels_under_legend = [](const std::vector<std::vector<double>>& xs,
                                      const std::vector<std::vector<double>>& ys, PlotLayout& L) {
    PlotOptions o;
    o.title = "exposure bias";
    o.log_y = true;
    std::vector<std::string> names;
    for (size_t i = 0; i < xs.size(); ++i)
      names.push_back("sampler " + std::to_string(i) + " 10 steps");
    const detail::Canvas bare =
        detail::render_plot("p.png", names, xs, ys, o, &L, /*draw_legend=*/false);
    int64_t n = 0;
    for (size_t i = 0; i < xs.size(); ++i)
      n += count_in(bare, detail::plot_colour(i), L.legend_x0, L.legend_y0, L.legend_x1,
                    L.legend_y1);
    return n;
  };
  // A curve along the top (the old legend place) and one along the right half of the bottom: the
  // bottom-left corner is free.
  PlotLayout L;
  EXPECT_EQ(curve_pixels_under_legend({{0, 1}, {0.5, 1}}, {{1, 1}, {1e-3, 1e-3}}, L), 0);
  EXPECT_FALSE(L.legend_outside);
  EXPECT_LT(L.legend_x1, (L.left + L.right) / 2);
  EXPECT_GT(L.legend_y0, (L.top + L.bottom) / 2);
  // Curves along the top and the whole bottom: no corner is free, the legend goes outside.
  EXPECT_EQ(curve_pixels_under_legend({{0, 1}, {0, 1}}, {{1, 1}, {1e-3, 1e-3}}, L), 0);
  EXPECT_TRUE(L.legend_outside);
  EXPECT_GT(L.legend_x0, L.right);
  EXPECT_LT(L.legend_x1, 640);
  // Decreasing exposure-bias-like curves (high at the left, low at the right).
  std::vector<std::vector<double>> xs, ys;
  for (int c = 0; c < 4; ++c) {
    xs.emplace_back();
    ys.emplace_back();
    for (int j = 1; j <= 10; ++j) {
      xs.back().push_back(j / 10.0);
      ys.back().push_back(std::pow(10.0, -0.4 * j) * (1 + c));
    }
  }
  EXPECT_EQ(curve_pixels_under_legend(xs, ys, L), 0);
  // The file writer reports the same layout.
  TempDir dir("plot_legend");
  PlotLayout written;
  PlotOptions o;
  o.title = "exposure bias";
  o.log_y = true;
  plot_curves_png(
      dir / "eb.png",
      {"sampler 0 10 steps", "sampler 1 10 steps", "sampler 2 10 steps", "sampler 3 10 steps"}, xs,
      ys, o, &written);
  EXPECT_EQ(written.legend_x0, L.legend_x0);
  EXPECT_EQ(written.legend_y0, L.legend_y0);
}

TEST(ImageGrid, ColumnsAreNrowClippedToTheImageCount) {
  EXPECT_EQ(image_grid_columns(4, 10), 4);
  EXPECT_EQ(image_grid_columns(40, 10), 10);
  EXPECT_EQ(image_grid_columns(1, 8), 1);
  EXPECT_EQ(make_image_grid(at::zeros({4, 1, 2, 2}), 10).size(2),
            image_grid_columns(4, 10) * 4 + 2);
}

}  // namespace
}  // namespace diffuse
