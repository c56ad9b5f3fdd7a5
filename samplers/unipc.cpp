// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/unipc.h>.
#include <diffuse/samplers/unipc.h>

#include <algorithm>
#include <array>
#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

const EnumNames<UniPCVariant>& unipc_variant_names() {
  static const EnumNames<UniPCVariant> names{{"bh1", UniPCVariant::bh1},
                                             {"bh2", UniPCVariant::bh2}};
  return names;
}

namespace {

constexpr int64_t kMaxUniPCOrder = 3;

/// Solves the k x k system sum_j a[i][j] c[j] = g[i] (k <= 3) by Gaussian elimination with
/// partial pivoting. The matrices here are Vandermonde in distinct r_k, so they are regular.
std::array<double, kMaxUniPCOrder> solve_small(
    std::array<std::array<double, kMaxUniPCOrder>, kMaxUniPCOrder> a,
    std::array<double, kMaxUniPCOrder> g, int64_t k) {
  for (int64_t col = 0; col < k; ++col) {
    int64_t piv = col;
    for (int64_t row = col + 1; row < k; ++row)
      if (std::abs(a[row][col]) > std::abs(a[piv][col])) piv = row;
    std::swap(a[col], a[piv]);
    std::swap(g[col], g[piv]);
    for (int64_t row = col + 1; row < k; ++row) {
      const double f = a[row][col] / a[col][col];
      for (int64_t j = col; j < k; ++j) a[row][j] -= f * a[col][j];
      g[row] -= f * g[col];
    }
  }
  std::array<double, kMaxUniPCOrder> c{};
  for (int64_t row = k - 1; row >= 0; --row) {
    double s = g[row];
    for (int64_t j = row + 1; j < k; ++j) s -= a[row][j] * c[j];
    c[row] = s / a[row][row];
  }
  return c;
}

/// One UniPC update from s0 to t: the first-order part plus sum_k coef[k] * D_k, with
/// D_k = (m_k - m0) / r_k for the older outputs and, for the corrector, D = m_t - m0 at r = 1.
struct UniPCStep {
  double base_x = 0, base_m0 = 0;  ///< x_t = base_x x + base_m0 m0 + scale * sum_k c_k D_k
  double scale = 0;                ///< -alpha_t (x0) or -sigma_t (eps)
  double hh = 0, bh = 0;           ///< hh = -h or h; B(h)
};

UniPCStep unipc_base(const TimePoint& s0, const TimePoint& t, bool predict_x0,
                     UniPCVariant variant) {
  const double h = t.log_snr() - s0.log_snr();
  UniPCStep u;
  if (predict_x0) {
    u.hh = -h;
    u.base_x = t.sigma / s0.sigma;
    u.base_m0 = -t.alpha * std::expm1(u.hh);
    u.scale = -t.alpha;
  } else {
    u.hh = h;
    // alpha_t / alpha_s0 x - sigma_t (e^h - 1) eps, with sigma_t e^h = alpha_t sigma_s0 / alpha_s0
    // (finite as sigma_t -> 0).
    u.base_x = t.alpha / s0.alpha;
    u.base_m0 = -(t.alpha * s0.sigma / s0.alpha) * (-std::expm1(-h));
    u.scale = -t.sigma;
  }
  u.bh = variant == UniPCVariant::bh1 ? u.hh : std::expm1(u.hh);
  return u;
}

/// The coefficients c_k (B(h) folded in) of a UniPC update with `k` unknowns at ratios r (the last
/// one 1 for the corrector): c solves R c = g, g_i = i! phi_i(hh), except for the one-unknown
/// cases the paper fixes at rho = 1/2 (fixed_half), where c = B(h) / 2.
std::array<double, kMaxUniPCOrder> unipc_coefficients(const UniPCStep& u,
                                                      const std::array<double, kMaxUniPCOrder>& r,
                                                      int64_t k, bool fixed_half) {
  if (fixed_half) return {0.5 * u.bh, 0.0, 0.0};
  std::array<std::array<double, kMaxUniPCOrder>, kMaxUniPCOrder> a{};
  std::array<double, kMaxUniPCOrder> g{};
  double phi = std::expm1(u.hh) / u.hh - 1.0;
  double factorial = 1;
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) a[i][j] = std::pow(r[j], static_cast<double>(i));
    g[i] = phi * factorial;
    factorial *= static_cast<double>(i + 2);
    phi = phi / u.hh - 1.0 / factorial;
  }
  return solve_small(a, g, k);
}

}  // namespace

UniPCSampler::UniPCSampler(UniPCOptions o) : options(std::move(o)) {
  check(options.order() >= 1 && options.order() <= kMaxUniPCOrder,
        "UniPCOptions.order must be 1, 2 or 3, got ", options.order());
  check_enum(options.variant(), unipc_variant_names(), "unipc: variant");
  for (int64_t i : options.disable_corrector())
    check(i >= 0, "UniPCOptions.disable_corrector holds step indices >= 0, got ", i);
}

std::unique_ptr<Sampler> UniPCSampler::from_config(const Config& c) {
  ConfigReader r(c, "unipc");
  UniPCOptions o;
  o.order(r.get_int("order", o.order()));
  o.variant(r.get_enum("variant", o.variant(), unipc_variant_names()));
  o.predict_x0(r.get_bool("predict_x0", o.predict_x0()));
  o.corrector(r.get_bool("corrector", o.corrector()));
  std::vector<int64_t> off;
  for (double v : r.get_doubles("disable_corrector")) {
    check(v >= 0 && v == std::floor(v) && v < 1e9,
          "unipc: disable_corrector holds step indices (integers >= 0), got ", format_double(v));
    off.push_back(static_cast<int64_t>(v));
  }
  o.disable_corrector(off);
  o.lower_order_final(r.get_bool("lower_order_final", o.lower_order_final()));
  r.finish();
  return std::make_unique<UniPCSampler>(o);
}

Config UniPCSampler::to_config() const {
  std::string off;
  for (int64_t i : options.disable_corrector()) off += (off.empty() ? "" : ";") + std::to_string(i);
  Config c{{"order", std::to_string(options.order())},
           {"variant", enum_name(options.variant(), unipc_variant_names())},
           {"predict_x0", options.predict_x0() ? "true" : "false"},
           {"corrector", options.corrector() ? "true" : "false"},
           {"lower_order_final", options.lower_order_final() ? "true" : "false"}};
  if (!off.empty()) c["disable_corrector"] = off;
  return c;
}

int64_t UniPCSampler::order_at(const StepContext& st, size_t available) const {
  int64_t order = options.order();
  if (options.lower_order_final()) order = std::min(order, st.num_steps - st.index);
  order = std::min(order, static_cast<int64_t>(available) + 1);
  if (st.next.is_clean()) order = 1;
  return std::max<int64_t>(order, 1);
}

StepResult UniPCSampler::step_impl(const ModelFn& model, const Tensor& x_in, const StepContext& st,
                                   const History& history, SampleContext&) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  const bool x0 = options.predict_x0();
  check(now.sigma > 0, "unipc: step ", st.index, " starts at sigma = 0 (t=", now.t, ")");
  check(x0 || now.alpha > 0, "unipc: predict_x0=false cannot step from alpha = 0 (zero terminal ",
        "SNR or pure noise; t=", now.t, "); use the data-prediction form (predict_x0=true)");
  Prediction p = model(x_in, now, st);
  auto out_of = [x0](const Prediction& q) -> const Tensor& { return x0 ? q.x0 : q.eps; };
  const size_t n = history.size();
  // Earlier outputs at alpha = 0 (lambda = -inf) carry no slope information: the orders use only
  // the newest ones with finite lambda.
  size_t finite = 0;
  while (finite < n && std::isfinite(history.times[n - 1 - finite].log_snr())) ++finite;

  // UniC: correct this step's start with the output just computed at it.
  Tensor x = x_in;
  const bool skip =
      std::find(options.disable_corrector().begin(), options.disable_corrector().end(),
                st.index - 1) != options.disable_corrector().end();
  if (options.corrector() && finite >= 1 && std::isfinite(now.log_snr()) && !skip) {
    StepContext prev = st;
    prev.index = st.index - 1;
    prev.now = history.times[n - 1];
    prev.next = now;
    const int64_t k = order_at(prev, finite - 1);  // the order of the step being corrected
    const TimePoint& s0 = history.times[n - 1];
    const Tensor& m0 = out_of(history.preds[n - 1]);
    const UniPCStep u = unipc_base(s0, now, x0, options.variant());
    const double h = now.log_snr() - s0.log_snr();
    std::array<double, kMaxUniPCOrder> r{};
    for (int64_t j = 1; j < k; ++j)
      r[j - 1] = (history.times[n - 1 - j].log_snr() - s0.log_snr()) / h;
    r[k - 1] = 1.0;
    const auto c = unipc_coefficients(u, r, k, k == 1);
    Tensor xc = lincomb(history.xs[n - 1], u.base_x, m0, u.base_m0);
    for (int64_t j = 1; j < k; ++j)
      add_scaled_(xc, diff_scaled(out_of(history.preds[n - 1 - j]), m0, 1.0),
                  u.scale * c[j - 1] / r[j - 1]);
    add_scaled_(xc, diff_scaled(out_of(p), m0, 1.0), u.scale * c[k - 1]);
    x = std::move(xc);
  }

  // UniP: the predictor from the (corrected) start.
  // The step onto sigma = 0 is first order: x0 form alpha x0, eps form (alpha / alpha_s0)(x -
  // sigma_s0 eps), the limits of the first-order update.
  const int64_t order = order_at(st, std::isfinite(now.log_snr()) ? finite : 0);
  const double h = next.log_snr() - now.log_snr();
  if (h == 0.0) return {x, p, x};  // zero-length final step (a Karras grid ending at sigma_min)
  const Tensor& m0 = out_of(p);
  const UniPCStep u = unipc_base(now, next, x0, options.variant());
  Tensor x_next = lincomb(x, u.base_x, m0, u.base_m0);
  if (order >= 2) {
    std::array<double, kMaxUniPCOrder> r{};
    for (int64_t j = 1; j < order; ++j)
      r[j - 1] = (history.times[n - j].log_snr() - now.log_snr()) / h;
    const auto c = unipc_coefficients(u, r, order - 1, order == 2);
    for (int64_t j = 1; j < order; ++j)
      add_scaled_(x_next, diff_scaled(out_of(history.preds[n - j]), m0, 1.0),
                  u.scale * c[j - 1] / r[j - 1]);
  }
  return {x_next, p, x};
}

DIFFUSE_REGISTER_SAMPLER(UniPCSampler, "unipc",
                         "UniPC multistep predictor-corrector (Zhao et al. 2023), bh1/bh2, order "
                         "1-3; diffusers' defaults (bh2, order 2)");
DIFFUSE_REGISTER_SAMPLER_ALIAS(unipc_diffusers, "uni_pc_multistep", "unipc", {},
                               "diffusers' UniPCMultistepScheduler defaults: unipc");
DIFFUSE_REGISTER_SAMPLER_ALIAS(unipc_comfy, "uni_pc", "unipc",
                               (Config{{"variant", "bh1"}, {"order", "3"}}),
                               "ComfyUI's uni_pc: unipc variant=bh1 order=3");
DIFFUSE_REGISTER_SAMPLER_ALIAS(unipc_comfy_bh2, "uni_pc_bh2", "unipc",
                               (Config{{"variant", "bh2"}, {"order", "3"}}),
                               "ComfyUI's uni_pc_bh2: unipc variant=bh2 order=3");
DIFFUSE_REGISTER_SAMPLER_ALIAS(unipc_a1111, "UniPC", "unipc", (Config{{"order", "3"}}),
                               "A1111's label for UniPC (its default order 3, bh2)");

}  // namespace diffuse
