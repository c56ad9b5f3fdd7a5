// SPDX-License-Identifier: Apache-2.0
// Line plots as PNG (loss curves, evaluation curves): plot_curves_png. The rasteriser and its 5x7
// bitmap font are our own; PNG encoding is <diffuse/training/image.h>'s. Like every writer of the
// training engine, it goes through write_bytes_atomic (training/atomic_file.h): a reader never sees
// a half-written file, and on any failure a diffuse::Error naming the target path is thrown.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here

namespace diffuse {

/// Appearance of plot_curves_png.
struct PlotOptions {
  /// Drawn centred above the plot (at double size if it fits the width); empty = no title.
  /// Characters outside printable ASCII show as '?'.
  std::string title;
  /// Logarithmic y axis (base 10); points with y <= 0 are skipped. Default false.
  bool log_y = false;
  /// Image size in pixels. Defaults 640 x 400; each in [160, 8192].
  int width = 640, height = 400;
};

/// Where plot_curves_png put things (pixels, inclusive): the data area inside the frame and the
/// legend box (legend_x0 < 0: no legend).
struct PlotLayout {
  int left = 0, top = 0, right = 0, bottom = 0;
  int legend_x0 = -1, legend_y0 = -1, legend_x1 = -1, legend_y1 = -1;
  /// The legend sits right of the frame (no corner inside it was free of curves).
  bool legend_outside = false;
};

/// Writes a line plot of curves i = 0..names.size()-1 (points (xs[i][j], ys[i][j]), joined in the
/// given order) as a PNG of o.width x o.height pixels: framed axes with grid lines and tick labels,
/// one style per curve (colour i % 10, marker i % 8, dash pattern i % 4: curves that coincide stay
/// visible), a legend with every name and its style in the first corner of the data area that no
/// curve crosses (else right of the frame), the optional title, optional log10 y axis. Non-finite
/// points (and y <= 0 with log_y) are skipped and break the line. Curves may be empty. Atomic (temp
/// file + rename); throws diffuse::Error naming `path` on failure or on inconsistent input (names,
/// xs, ys of different lengths; xs[i], ys[i] of different lengths). `layout` (optional) receives
/// where the data area and the legend are.
void plot_curves_png(const std::string& path, const std::vector<std::string>& names,
                     const std::vector<std::vector<double>>& xs,
                     const std::vector<std::vector<double>>& ys, const PlotOptions& o = {},
                     PlotLayout* layout = nullptr);

namespace detail {

/// A 5x7 bitmap font for printable ASCII (lowercase letters are drawn as capitals): each glyph is
/// 7 rows of 5 characters, '#' = ink.
const char* plot_glyph(char ch);

/// An RGB canvas with the few drawing primitives the plots need.
struct Canvas {
  int w, h;
  std::vector<unsigned char> px;  // h * w * 3
  Canvas(int width, int height)
      : w(width), h(height), px(static_cast<size_t>(width) * height * 3, 255) {}

  void set(int x, int y, const unsigned char* c);
  void fill(int x0, int y0, int x1, int y1, const unsigned char* c);  // inclusive corners
  /// A line of the given thickness (pixel squares stamped along a DDA), clipped to [cx0, cx1] x
  /// [cy0, cy1]. With a `dash` pattern (on/off lengths in pixels, e.g. {8, 4}) only the "on" parts
  /// are drawn; `*dash_pos` (if given) is the distance already drawn along the polyline, so the
  /// pattern runs on through its vertices.
  void line(double xa, double ya, double xb, double yb, const unsigned char* c, int thick, int cx0,
            int cy0, int cx1, int cy1, const std::vector<int>& dash = {},
            double* dash_pos = nullptr);
  /// A marker of shape `shape` % 8 (filled square, ring, filled triangle, cross, diamond, plus,
  /// down triangle, open square) about 9 pixels wide centred at (x, y), clipped as line().
  void marker(int x, int y, int shape, const unsigned char* c, int cx0, int cy0, int cx1, int cy1);
  static int text_width(const std::string& s, int scale) {
    return static_cast<int>(s.size()) * 6 * scale - scale;
  }
  static int text_height(int scale) { return 7 * scale; }
  /// Text with its top-left corner at (x, y).
  void text(int x, int y, const std::string& s, const unsigned char* c, int scale = 1);
};

/// Tick positions: multiples of a 1/2/5 x 10^k step covering [lo, hi] with about `target` ticks.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

std::string tick_label(double v);

/// The line style of curve i: colour i % 10, marker shape i % 8 and dash pattern i % 4 (solid,
/// dashed, dotted, dash-dot), so curves that lie exactly on top of each other stay tellable apart
/// (render_plot also orders and widens them).
const unsigned char* plot_colour(size_t i);
const std::vector<int>& plot_dash(size_t i);

/// Renders plot_curves_png's image. `draw_legend` = false leaves the legend box empty (same
/// layout; for tests that check what lies under it).
Canvas render_plot(const std::string& path, const std::vector<std::string>& names,
                   const std::vector<std::vector<double>>& xs,
                   const std::vector<std::vector<double>>& ys, const PlotOptions& o,
                   PlotLayout* layout_out = nullptr, bool draw_legend = true);

}  // namespace detail
}  // namespace diffuse
