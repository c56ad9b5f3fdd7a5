// SPDX-License-Identifier: Apache-2.0
// Line plots (declared in <diffuse/training/plot.h>): the rasteriser, its 5x7 bitmap font, the
// layout and the PNG output.
#include <diffuse/training/plot.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/image.h>

namespace diffuse {

namespace detail {

/// A 5x7 bitmap font for printable ASCII (lowercase letters are drawn as capitals): each glyph is
/// 7 rows of 5 characters, '#' = ink.
const char* plot_glyph(char ch) {
  if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  switch (ch) {
    // clang-format off
    case ' ': return "                                   ";
    case '0': return " ### #   ##  ### # ###  ##   # ### ";
    case '1': return "  #   ##    #    #    #    #   ### ";
    case '2': return " ### #   #    #   #   #   #   #####";
    case '3': return "#####   #   #     #     ##   # ### ";
    case '4': return "   #   ##  # # #  # #####   #    # ";
    case '5': return "######    ####     #    ##   # ### ";
    case '6': return "  ##  #   #    #### #   ##   # ### ";
    case '7': return "#####    #   #   #   #    #    #   ";
    case '8': return " ### #   ##   # ### #   ##   # ### ";
    case '9': return " ### #   ##   # ####    #   #  ##  ";
    case 'A': return " ### #   ##   #######   ##   ##   #";
    case 'B': return "#### #   ##   ##### #   ##   ##### ";
    case 'C': return " ### #   ##    #    #    #   # ### ";
    case 'D': return "#### #   ##   ##   ##   ##   ##### ";
    case 'E': return "######    #    #### #    #    #####";
    case 'F': return "######    #    #### #    #    #    ";
    case 'G': return " ### #   ##    # ####   ##   # ####";
    case 'H': return "#   ##   ##   #######   ##   ##   #";
    case 'I': return " ###   #    #    #    #    #   ### ";
    case 'J': return "  ###   #    #    #    # #  #  ##  ";
    case 'K': return "#   ##  # # #  ##   # #  #  # #   #";
    case 'L': return "#    #    #    #    #    #    #####";
    case 'M': return "#   ### ### # ##   ##   ##   ##   #";
    case 'N': return "#   ##   ###  ## # ##  ###   ##   #";
    case 'O': return " ### #   ##   ##   ##   ##   # ### ";
    case 'P': return "#### #   ##   ##### #    #    #    ";
    case 'Q': return " ### #   ##   ##   ## # ##  #  ## #";
    case 'R': return "#### #   ##   ##### # #  #  # #   #";
    case 'S': return " #####    #     ###     #    ##### ";
    case 'T': return "#####  #    #    #    #    #    #  ";
    case 'U': return "#   ##   ##   ##   ##   ##   # ### ";
    case 'V': return "#   ##   ##   ##   ##   # # #   #  ";
    case 'W': return "#   ##   ##   ## # ## # ## # # # # ";
    case 'X': return "#   ##   # # #   #   # # #   ##   #";
    case 'Y': return "#   ##   # # #   #    #    #    #  ";
    case 'Z': return "#####    #   #   #   #   #    #####";
    case '.': return "                          ##   ##  ";
    case ',': return "                     ##   ##   #   ";
    case ':': return "      ##   ##        ##   ##       ";
    case ';': return "      ##   ##        ##   ##   #   ";
    case '-': return "               #####               ";
    case '+': return "       #    #  #####  #    #       ";
    case '=': return "          #####     #####          ";
    case '_': return "                              #####";
    case '(': return "   #   #   #    #    #     #     # ";
    case ')': return " #     #     #    #    #   #   #   ";
    case '[': return " ###  #    #    #    #    #    ### ";
    case ']': return " ###    #    #    #    #    #  ### ";
    case '/': return "         #   #   #   #   #         ";
    case '*': return "       #  # # # ### # # #  #       ";
    case '%': return "##   ##  #   #   #   #   #  ##   ##";
    case '<': return "   #   #   #   #     #     #     # ";
    case '>': return " #     #     #     #   #   #   #   ";
    case '!': return "  #    #    #    #    #         #  ";
    case '\'': return "  #    #   #                       ";
    case '#': return " # # ##### # #  # # ##### # #      ";
    case '|': return "  #    #    #    #    #    #    #  ";
    case '^': return "  #   # # #   #                    ";
    case '~': return "           #   # # #   #           ";
    default:  return " ### #   #    #   #   #         #  ";  // '?'
      // clang-format on
  }
}

void Canvas::set(int x, int y, const unsigned char* c) {
  if (x < 0 || y < 0 || x >= w || y >= h) return;
  std::memcpy(&px[(static_cast<size_t>(y) * w + x) * 3], c, 3);
}

void Canvas::fill(int x0, int y0, int x1, int y1, const unsigned char* c) {  // inclusive corners
  for (int y = std::max(0, y0); y <= std::min(h - 1, y1); ++y)
    for (int x = std::max(0, x0); x <= std::min(w - 1, x1); ++x) set(x, y, c);
}

/// A line of the given thickness (pixel squares stamped along a DDA), clipped to [cx0, cx1] x
/// [cy0, cy1]. With a `dash` pattern (on/off lengths in pixels, e.g. {8, 4}) only the "on" parts
/// are drawn; `*dash_pos` (if given) is the distance already drawn along the polyline, so the
/// pattern runs on through its vertices.
void Canvas::line(double xa, double ya, double xb, double yb, const unsigned char* c, int thick,
                  int cx0, int cy0, int cx1, int cy1, const std::vector<int>& dash,
                  double* dash_pos) {
  const double len = std::max(std::abs(xb - xa), std::abs(yb - ya));
  const int steps = std::max(1, static_cast<int>(std::ceil(len)));
  int period = 0;
  for (int d : dash) period += d;
  const double start = dash_pos ? *dash_pos : 0.0;
  if (dash_pos) *dash_pos += std::hypot(xb - xa, yb - ya);
  for (int i = 0; i <= steps; ++i) {
    const double s = static_cast<double>(i) / steps;
    if (period > 0) {  // inside an "on" part of the pattern?
      int at = static_cast<int>(std::fmod(start + s * std::hypot(xb - xa, yb - ya), period));
      bool on = true;
      for (int d : dash) {
        if (at < d) break;
        at -= d;
        on = !on;
      }
      if (!on) continue;
    }
    const int x = static_cast<int>(std::lround(xa + s * (xb - xa))) - thick / 2;
    const int y = static_cast<int>(std::lround(ya + s * (yb - ya))) - thick / 2;
    for (int dy = 0; dy < thick; ++dy)
      for (int dx = 0; dx < thick; ++dx)
        if (x + dx >= cx0 && x + dx <= cx1 && y + dy >= cy0 && y + dy <= cy1)
          set(x + dx, y + dy, c);
  }
}

/// A marker of shape `shape` % 8 (filled square, ring, filled triangle, cross, diamond, plus,
/// down triangle, open square) about 9 pixels wide centred at (x, y), clipped as line().
void Canvas::marker(int x, int y, int shape, const unsigned char* c, int cx0, int cy0, int cx1,
                    int cy1) {
  for (int dy = -4; dy <= 4; ++dy)
    for (int dx = -4; dx <= 4; ++dx) {
      const int ax = std::abs(dx), ay = std::abs(dy), m = std::max(ax, ay);
      const double r = std::hypot(dx, dy);
      bool ink = false;
      switch (((shape % 8) + 8) % 8) {
        case 0:
          ink = m <= 3;
          break;
        case 1:
          ink = r >= 2.5 && r <= 4.2;
          break;
        case 2:
          ink = dy >= -3 && dy <= 3 && 2 * ax <= dy + 3;
          break;
        case 3:
          ink = m <= 4 && std::abs(ax - ay) <= 1 && ax + ay >= 1;
          break;
        case 4:
          ink = ax + ay >= 3 && ax + ay <= 4;
          break;
        case 5:
          ink = (ax <= 1 && ay <= 4) || (ay <= 1 && ax <= 4);
          break;
        case 6:
          ink = dy >= -3 && dy <= 3 && 2 * ax <= 3 - dy;
          break;
        default:
          ink = m >= 3 && m <= 4;
          break;
      }
      if (ink && x + dx >= cx0 && x + dx <= cx1 && y + dy >= cy0 && y + dy <= cy1)
        set(x + dx, y + dy, c);
    }
}

/// Text with its top-left corner at (x, y).
void Canvas::text(int x, int y, const std::string& s, const unsigned char* c, int scale) {
  for (size_t i = 0; i < s.size(); ++i) {
    const char* g = plot_glyph(s[i]);
    for (int r = 0; r < 7; ++r)
      for (int q = 0; q < 5; ++q)
        if (g[r * 5 + q] == '#')
          fill(x + (static_cast<int>(i) * 6 + q) * scale, y + r * scale,
               x + (static_cast<int>(i) * 6 + q + 1) * scale - 1, y + (r + 1) * scale - 1, c);
  }
}

/// Tick positions: multiples of a 1/2/5 x 10^k step covering [lo, hi] with about `target` ticks.
std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  const double step = (r < 1.5 ? 1.0 : r < 3.0 ? 2.0 : r < 7.0 ? 5.0 : 10.0) * mag;
  std::vector<double> out;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step; k += 1.0)
    out.push_back(std::abs(k) < 0.5 ? 0.0 : k * step);
  return out;
}

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace detail

namespace detail {

/// The line style of curve i: colour i % 10, marker shape i % 8 and dash pattern i % 4 (solid,
/// dashed, dotted, dash-dot), so curves that lie exactly on top of each other stay tellable apart
/// (render_plot also orders and widens them).
const unsigned char* plot_colour(size_t i) {
  static const unsigned char palette[10][3] = {
      {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return palette[i % 10];
}
const std::vector<int>& plot_dash(size_t i) {
  static const std::vector<int> dashes[4] = {{}, {9, 5}, {2, 4}, {9, 3, 2, 3}};
  return dashes[i % 4];
}

/// Renders plot_curves_png's image. `draw_legend` = false leaves the legend box empty (same
/// layout; for tests that check what lies under it).
Canvas render_plot(const std::string& path, const std::vector<std::string>& names,
                   const std::vector<std::vector<double>>& xs,
                   const std::vector<std::vector<double>>& ys, const PlotOptions& o,
                   PlotLayout* layout_out, bool draw_legend) {
  check(names.size() == xs.size() && xs.size() == ys.size(), "plot_curves_png('", path,
        "'): ", names.size(), " names, ", xs.size(), " x series and ", ys.size(),
        " y series; they must agree");
  for (size_t i = 0; i < xs.size(); ++i)
    check(xs[i].size() == ys[i].size(), "plot_curves_png('", path, "'): curve '", names[i],
          "' has ", xs[i].size(), " x values and ", ys[i].size(), " y values");
  check(o.width >= 160 && o.width <= 8192 && o.height >= 160 && o.height <= 8192,
        "plot_curves_png('", path, "'): width and height must be in [160, 8192], got ", o.width,
        " x ", o.height);

  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!o.log_y || y > 0);
  };
  auto ty = [&](double y) { return o.log_y ? std::log10(y) : y; };
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  for (size_t i = 0; i < xs.size(); ++i)
    for (size_t j = 0; j < xs[i].size(); ++j)
      if (usable(xs[i][j], ys[i][j])) {
        xlo = std::min(xlo, xs[i][j]);
        xhi = std::max(xhi, xs[i][j]);
        ylo = std::min(ylo, ty(ys[i][j]));
        yhi = std::max(yhi, ty(ys[i][j]));
      }
  if (!(xlo <= xhi)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  if (xhi - xlo <= 1e-12 * std::max(1.0, std::abs(xlo))) xlo -= 0.5, xhi += 0.5;
  if (yhi - ylo <= 1e-12 * std::max(1.0, std::abs(ylo))) {
    const double d = o.log_y ? 0.5 : std::max(0.5, 0.1 * std::abs(ylo));
    ylo -= d, yhi += d;
  }
  {
    const double pad = 0.05 * (yhi - ylo);
    ylo -= pad, yhi += pad;
  }

  // y ticks (positions in transformed space, labels in data space).
  std::vector<double> ytick_pos;
  std::vector<std::string> ytick_lab;
  if (o.log_y && std::floor(yhi) - std::ceil(ylo) >= 1.0) {  // decades; also 2x and 5x when few
    const double span = std::floor(yhi) - std::ceil(ylo);
    const double every = std::max(1.0, std::ceil(span / 8.0));
    for (double k = std::floor(ylo); k <= yhi; k += every)
      for (double m : {1.0, 2.0, 5.0}) {
        const double pos = k + std::log10(m);
        if ((m == 1.0 || span <= 2.0) && pos >= ylo && pos <= yhi) {
          ytick_pos.push_back(pos);
          ytick_lab.push_back(tick_label(std::pow(10.0, pos)));
        }
      }
  } else if (o.log_y) {
    for (double v : nice_ticks(std::pow(10.0, ylo), std::pow(10.0, yhi), 5))
      if (v > 0) {
        ytick_pos.push_back(std::log10(v));
        ytick_lab.push_back(tick_label(v));
      }
  } else {
    for (double v : nice_ticks(ylo, yhi, 6)) {
      ytick_pos.push_back(v);
      ytick_lab.push_back(tick_label(v));
    }
  }
  const std::vector<double> xticks = nice_ticks(xlo, xhi, 6);

  int label_w = 0;
  for (const auto& s : ytick_lab) label_w = std::max(label_w, Canvas::text_width(s, 1));
  int lw = 0;  // legend box size
  for (const auto& s : names) lw = std::max(lw, Canvas::text_width(s, 1));
  const int bw = lw + 38, bh = static_cast<int>(names.size()) * 12 + 6;
  const unsigned char ink[3] = {40, 40, 40}, grid[3] = {225, 225, 225}, white[3] = {255, 255, 255};

  // Draws axes and curves with the frame's right edge at `right`.
  PlotLayout L;
  L.left = label_w + 14;
  L.top = o.title.empty() ? 14 : 34;
  L.bottom = o.height - 26;
  auto draw = [&](int right) {
    L.right = right;
    const int left = L.left, top = L.top, bottom = L.bottom;
    auto px = [&](double x) { return left + (x - xlo) / (xhi - xlo) * (right - left); };
    auto py = [&](double y) { return bottom - (y - ylo) / (yhi - ylo) * (bottom - top); };
    Canvas cv(o.width, o.height);
    for (size_t k = 0; k < ytick_pos.size(); ++k) {
      const int y = static_cast<int>(std::lround(py(ytick_pos[k])));
      if (y < top || y > bottom) continue;
      cv.fill(left, y, right, y, grid);
      cv.fill(left - 4, y, left, y, ink);
      cv.text(left - 6 - Canvas::text_width(ytick_lab[k], 1), y - 3, ytick_lab[k], ink);
    }
    for (double v : xticks) {
      const int x = static_cast<int>(std::lround(px(v)));
      if (x < left || x > right) continue;
      cv.fill(x, top, x, bottom, grid);
      cv.fill(x, bottom, x, bottom + 4, ink);
      const std::string s = tick_label(v);
      cv.text(x - Canvas::text_width(s, 1) / 2, bottom + 8, s, ink);
    }
    cv.fill(left, top, right, top, ink);
    cv.fill(left, bottom, right, bottom, ink);
    cv.fill(left, top, left, bottom, ink);
    cv.fill(right, top, right, bottom, ink);
    if (!o.title.empty()) {  // double size if it fits the width, else single
      const int scale = Canvas::text_width(o.title, 2) <= o.width - 8 ? 2 : 1;
      cv.text((o.width - Canvas::text_width(o.title, scale)) / 2, scale == 2 ? 8 : 12, o.title, ink,
              scale);
    }
    const int cx0 = left + 1, cy0 = top + 1, cx1 = right - 1, cy1 = bottom - 1;
    // Curves that coincide stay visible: solid lines are drawn first, then dash-dot, dashed and
    // dotted ones over them (the earlier show through the gaps), and a curve with the same dash
    // pattern and exactly the same points as later ones is drawn wider, so it frames them.
    std::vector<size_t> order(xs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto dash_rank = [](size_t i) { return std::array<int, 4>{0, 2, 3, 1}[i % 4]; };
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t p, size_t q) { return dash_rank(p) < dash_rank(q); });
    for (size_t i : order) {
      const unsigned char* c = plot_colour(i);
      int same = 0;
      for (size_t j = i + 4; j < xs.size(); j += 4) same += xs[j] == xs[i] && ys[j] == ys[i];
      const int thick = 2 + 2 * std::min(same, 2);
      bool have_prev = false;
      double qx = 0, qy = 0, dash_pos = 0;
      std::vector<std::pair<int, int>> points;
      for (size_t j = 0; j < xs[i].size(); ++j) {
        if (!usable(xs[i][j], ys[i][j])) {
          have_prev = false;
          continue;
        }
        const double cx = px(xs[i][j]), cy = py(ty(ys[i][j]));
        if (have_prev)
          cv.line(qx, qy, cx, cy, c, thick, cx0, cy0, cx1, cy1, plot_dash(i), &dash_pos);
        else
          cv.line(cx, cy, cx, cy, c, thick, cx0, cy0, cx1, cy1);  // isolated points stay visible
        points.emplace_back(static_cast<int>(std::lround(cx)), static_cast<int>(std::lround(cy)));
        qx = cx, qy = cy, have_prev = true;
      }
      // Markers on at most ~12 points per curve, shifted per curve so that coinciding curves show
      // theirs at different points.
      const size_t every = std::max<size_t>(1, (points.size() + 11) / 12);
      for (size_t j = i % every; j < points.size(); j += every)
        cv.marker(points[j].first, points[j].second, static_cast<int>(i), c, cx0, cy0, cx1, cy1);
    }
    return cv;
  };
  auto is_curve = [&](const Canvas& cv, int x, int y) {
    const unsigned char* p = &cv.px[(static_cast<size_t>(y) * cv.w + x) * 3];
    return !(std::memcmp(p, white, 3) == 0 || std::memcmp(p, grid, 3) == 0 ||
             std::memcmp(p, ink, 3) == 0);
  };
  auto curve_pixels = [&](const Canvas& cv, int x0, int y0, int x1, int y1) {
    int64_t n = 0;
    for (int y = std::max(0, y0); y <= std::min(cv.h - 1, y1); ++y)
      for (int x = std::max(0, x0); x <= std::min(cv.w - 1, x1); ++x) n += is_curve(cv, x, y);
    return n;
  };

  Canvas cv = draw(o.width - 16);
  if (!names.empty()) {
    // The legend goes into the first corner of the data area (top right, top left, bottom right,
    // bottom left) whose box, with a 3-pixel margin, has no curve pixel; if none has, to the right
    // of the frame (the data area narrows), if it fits, else into the least covered corner.
    const int inner_w = L.right - L.left, inner_h = L.bottom - L.top;
    int best = -1;
    int64_t best_n = std::numeric_limits<int64_t>::max();
    std::pair<int, int> corners[4] = {{L.right - 6 - bw, L.top + 6},
                                      {L.left + 6, L.top + 6},
                                      {L.right - 6 - bw, L.bottom - 6 - bh},
                                      {L.left + 6, L.bottom - 6 - bh}};
    if (bw + 12 <= inner_w && bh + 12 <= inner_h) {
      for (int k = 0; k < 4; ++k) {
        const int64_t n = curve_pixels(cv, corners[k].first - 3, corners[k].second - 3,
                                       corners[k].first + bw + 3, corners[k].second + bh + 3);
        if (n < best_n) best = k, best_n = n;
        if (n == 0) break;
      }
    }
    const int outside_right =
        o.width - 10 - bw - 8;  // the frame's right edge with the legend outside
    if (best_n > 0 && outside_right - L.left >= o.width / 2 && bh <= L.bottom - L.top) {
      cv = draw(outside_right);
      L.legend_outside = true;
      L.legend_x0 = o.width - 10 - bw;
      L.legend_y0 = L.top;
    } else if (best >= 0) {
      L.legend_x0 = corners[best].first;
      L.legend_y0 = corners[best].second;
    } else {
      L.legend_x0 = corners[0].first;
      L.legend_y0 = corners[0].second;
    }
    L.legend_x1 = L.legend_x0 + bw;
    L.legend_y1 = L.legend_y0 + bh;
    if (draw_legend) {
      const int bx = L.legend_x0, by = L.legend_y0;
      cv.fill(bx, by, bx + bw, by + bh, white);
      cv.fill(bx, by, bx + bw, by, ink);
      cv.fill(bx, by + bh, bx + bw, by + bh, ink);
      cv.fill(bx, by, bx, by + bh, ink);
      cv.fill(bx + bw, by, bx + bw, by + bh, ink);
      for (size_t i = 0; i < names.size(); ++i) {  // every curve: its line style and marker
        const int y = by + 5 + static_cast<int>(i) * 12;
        cv.line(bx + 4, y + 3, bx + 27, y + 3, plot_colour(i), 2, bx + 1, by + 1, bx + bw - 1,
                by + bh - 1, plot_dash(i));
        cv.marker(bx + 15, y + 3, static_cast<int>(i), plot_colour(i), bx + 1, by + 1, bx + bw - 1,
                  by + bh - 1);
        cv.text(bx + 32, y, names[i], ink);
      }
    }
  }
  if (layout_out) *layout_out = L;
  return cv;
}

}  // namespace detail

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
                     const std::vector<std::vector<double>>& ys, const PlotOptions& o,
                     PlotLayout* layout) {
  const detail::Canvas cv = detail::render_plot(path, names, xs, ys, o, layout);
  const std::vector<unsigned char> png = detail::encode_png(cv.px.data(), cv.w, cv.h, 3);
  write_bytes_atomic(path, png.data(), png.size());
}

}  // namespace diffuse
