// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/corrections/schedule_optimisation.h>.
#include <diffuse/samplers/corrections/schedule_optimisation.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include <diffuse/detail/aten.h>
#include <diffuse/noise.h>
#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

const std::vector<std::pair<std::string, ScheduleInit>>& schedule_init_names() {
  static const std::vector<std::pair<std::string, ScheduleInit>> names = {
      {"karras", ScheduleInit::karras}, {"exponential", ScheduleInit::exponential}};
  return names;
}

ScheduleInit parse_schedule_init(const std::string& name) {
  return parse_enum(name, schedule_init_names(), "ScheduleOptimisationOptions.init");
}

std::string to_string(ScheduleInit init) { return enum_name(init, schedule_init_names()); }

const std::vector<std::pair<std::string, KlubQuadrature>>& klub_quadrature_names() {
  static const std::vector<std::pair<std::string, KlubQuadrature>> names = {
      {"importance", KlubQuadrature::importance}, {"log_t", KlubQuadrature::log_t}};
  return names;
}

KlubQuadrature parse_klub_quadrature(const std::string& name) {
  return parse_enum(name, klub_quadrature_names(), "ScheduleOptimisationOptions.estimator");
}

std::string to_string(KlubQuadrature quadrature) {
  return enum_name(quadrature, klub_quadrature_names());
}

namespace {

/// Golden-section minimum of f on [lo, hi] (log sigma), `iters` bracket reductions.
template <class F>
double golden_section(F&& f, double lo, double hi, int64_t iters, double& fbest) {
  const double r = 0.5 * (std::sqrt(5.0) - 1.0);
  double c = hi - r * (hi - lo), d = lo + r * (hi - lo);
  double fc = f(c), fd = f(d);
  for (int64_t i = 0; i < iters; ++i) {
    if (fc < fd) {
      hi = d;
      d = c;
      fd = fc;
      c = hi - r * (hi - lo);
      fc = f(c);
    } else {
      lo = c;
      c = d;
      fc = fd;
      d = lo + r * (hi - lo);
      fd = f(d);
    }
  }
  if (fc < fd) {
    fbest = fc;
    return c;
  }
  fbest = fd;
  return d;
}

}  // namespace

VeDenoiserFn ve_denoiser(std::function<Tensor(const Tensor& x_ve, double sigma_ve)> f) {
  check(static_cast<bool>(f), "ve_denoiser: empty function");
  return [f](const Tensor& x, const Tensor& sigma) {
    const Tensor sc = sigma.to(at::kDouble).cpu().contiguous();
    const double* sp = sc.data_ptr<double>();
    const int64_t b = sc.numel();
    std::vector<Tensor> parts;
    for (int64_t i = 0; i < b;) {
      int64_t j = i + 1;
      while (j < b && sp[j] == sp[i]) ++j;
      parts.push_back(f(x.narrow(0, i, j - i), sp[i]));
      i = j;
    }
    return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
  };
}

VeDenoiserFn ve_denoiser(const Denoiser& denoiser, std::shared_ptr<const NoiseSchedule> schedule,
                         Conditioning cond) {
  check(schedule != nullptr, "ve_denoiser: schedule is null");
  return ve_denoiser([denoiser, schedule, cond](const Tensor& x_ve, double sigma) {
    const TimePoint p = schedule->at_sigma_ve(sigma);
    return denoiser(x_ve * p.alpha, p, cond).x0;
  });
}

KlubEstimator::KlubEstimator(VeDenoiserFn denoiser, const Tensor& x0,
                             const ScheduleOptimisationOptions& o)
    : denoiser_(std::move(denoiser)), options_(o) {
  check(static_cast<bool>(denoiser_), "KlubEstimator: empty denoiser");
  check(x0.defined() && x0.dim() >= 1 && x0.size(0) >= 1,
        "KlubEstimator: x0 needs a batch dimension");
  check_enum(o.estimator(), klub_quadrature_names(), "ScheduleOptimisationOptions.estimator");
  check(o.nodes() >= 1, "ScheduleOptimisationOptions.nodes must be >= 1, got ", o.nodes());
  check(std::isfinite(o.sigma_data()) && o.sigma_data() >= 0,
        "ScheduleOptimisationOptions.sigma_data must be >= 0, got ", o.sigma_data());
  x0_ = x0.to(at::kDouble);
  n_ = x0_.size(0);
  dim_ = x0_.numel() / n_;
  sigma_data_ = o.sigma_data();
  if (sigma_data_ == 0.0) {
    const Tensor c = x0_ - x0_.mean(0, /*keepdim=*/true);
    sigma_data_ = std::sqrt(c.pow(2).mean().item<double>());
    check(sigma_data_ > 0, "KlubEstimator: x0 has zero spread; set sigma_data");
  }
  at::Generator gen = detail::cpu_generator(o.seed());
  std::vector<int64_t> shape{o.nodes()};
  for (int64_t d : x0_.sizes()) shape.push_back(d);
  auto f64 = at::TensorOptions().dtype(at::kDouble);
  noise_ = at::randn(shape, gen, f64).to(x0_.device());
  noise_b_ = at::randn(shape, gen, f64).to(x0_.device());
}

double KlubEstimator::interval(double a, double b) const {
  check(a > 0 && b > a && std::isfinite(b), "KlubEstimator: needs 0 < a < b < inf, got a=", a,
        " b=", b);
  const int64_t m = options_.nodes();
  std::vector<double> t(m), w(m);
  const double s2 = sigma_data_ * sigma_data_;
  const bool imp = options_.estimator() == KlubQuadrature::importance;
  const double z = imp ? gaussian_interval(a, b, sigma_data_, 1) : 0.0;
  for (int64_t j = 0; j < m; ++j) {
    const double u = (static_cast<double>(j) + 0.5) / static_cast<double>(m);
    if (imp) {
      t[j] = inverse_cdf(a, b, u);
      const double beta = (b - t[j]) * (b + t[j]) / ((t[j] * t[j] + s2) * (b * b + s2));
      w[j] = z / (static_cast<double>(m) * s2 * s2 * beta);
    } else {
      t[j] = a * std::pow(b / a, u);
      w[j] = std::log(b / a) / (static_cast<double>(m) * t[j] * t[j]);
    }
  }
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  std::vector<int64_t> bshape(static_cast<size_t>(x0_.dim() + 1), 1);
  bshape[0] = m;
  const Tensor tt = at::tensor(t, f64).to(x0_.device()).reshape(bshape);
  const Tensor xt = x0_.unsqueeze(0) + tt * noise_;                 // [M, N, ...]
  const Tensor xb = xt + at::sqrt((b - tt) * (b + tt)) * noise_b_;  // [M, N, ...]
  std::vector<double> sig(static_cast<size_t>(2 * m * n_));
  for (int64_t j = 0; j < m; ++j)
    for (int64_t i = 0; i < n_; ++i) {
      sig[j * n_ + i] = t[j];
      sig[(m + j) * n_ + i] = b;
    }
  std::vector<int64_t> flat{m * n_};
  for (int64_t k = 1; k < x0_.dim(); ++k) flat.push_back(x0_.size(k));
  const Tensor x = at::cat({xt.reshape(flat), xb.reshape(flat)}, 0);
  const Tensor d = denoiser_(x, at::tensor(sig, f64)).to(at::kDouble);
  check(d.sizes() == x.sizes(), "KlubEstimator: the denoiser returned shape ", d.sizes(),
        " for input ", x.sizes());
  const Tensor diff = (d.narrow(0, 0, m * n_) - d.narrow(0, m * n_, m * n_)).reshape({m, n_, -1});
  const Tensor per_node = diff.pow(2).sum(-1).mean(1).cpu().contiguous();  // [M]
  const double* pn = per_node.data_ptr<double>();
  double k = 0.0;
  for (int64_t j = 0; j < m; ++j) k += w[j] * pn[j];
  check_numerics(std::isfinite(k), "KlubEstimator: non-finite KLUB on [", a, ", ", b, "]");
  return k;
}

double KlubEstimator::total(std::vector<double> sigmas) const {
  std::sort(sigmas.begin(), sigmas.end());
  double k = 0.0;
  for (size_t i = 1; i < sigmas.size(); ++i) k += interval(sigmas[i - 1], sigmas[i]);
  return k;
}

double KlubEstimator::gaussian_interval(double a, double b, double s, int64_t d) {
  // r - 1 - log r with r = A / B, A = 1 + s^2/a^2, B = 1 + s^2/b^2, computed without
  // cancellation.
  const double qa = (s / a) * (s / a), qb = (s / b) * (s / b);
  const double x = (qa - qb) / (1.0 + qb);  // r - 1
  const double v = x < 1e-4 ? x * x * (0.5 - x / 3.0 + x * x / 4.0) : x - std::log1p(x);
  return 0.5 * static_cast<double>(d) * v;
}

double KlubEstimator::inverse_cdf(double a, double b, double u) const {
  const double s = sigma_data_;
  const double total = gaussian_partial(a, b, b, s);
  double lo = std::log(a), hi = std::log(b);
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (gaussian_partial(a, std::exp(mid), b, s) < u * total)
      lo = mid;
    else
      hi = mid;
  }
  return std::exp(0.5 * (lo + hi));
}

double KlubEstimator::gaussian_partial(double a, double t, double b, double s) {
  auto h = [&](double tau) {
    const double q = (s / tau) * (s / tau);
    const double l = q < 1e-3 ? -q * q * (0.5 - q / 3.0 + q * q / 4.0) : std::log1p(q) - q;
    return 0.5 * (l + q * s * s / (b * b + s * s));
  };
  return h(t) - h(a);
}

std::vector<double> ScheduleOptimisationResult::sigmas_for_steps(int64_t steps) const {
  check(!levels.empty(), "ScheduleOptimisationResult is empty");
  for (const auto& l : levels)
    if (static_cast<int64_t>(l.size()) == steps + 1) return ays_sigmas_comfyui(l, steps);
  return ays_sigmas_comfyui(levels.front(), steps);
}

ScheduleOptimisationResult optimise_schedule(const VeDenoiserFn& denoiser, const Tensor& x0,
                                             const ScheduleOptimisationOptions& o) {
  check(o.num_steps() >= 2, "ScheduleOptimisationOptions.num_steps must be >= 2, got ",
        o.num_steps());
  check(o.sigma_min() > 0 && o.sigma_max() > o.sigma_min() && std::isfinite(o.sigma_max()),
        "ScheduleOptimisationOptions needs 0 < sigma_min < sigma_max < inf, got sigma_min=",
        o.sigma_min(), " sigma_max=", o.sigma_max());
  check_enum(o.init(), schedule_init_names(), "ScheduleOptimisationOptions.init");
  check(o.rho() > 0, "ScheduleOptimisationOptions.rho must be > 0, got ", o.rho());
  check(o.max_sweeps() >= 0, "ScheduleOptimisationOptions.max_sweeps must be >= 0, got ",
        o.max_sweeps());
  check(o.tol() >= 0, "ScheduleOptimisationOptions.tol must be >= 0, got ", o.tol());
  check(o.search_iters() >= 1, "ScheduleOptimisationOptions.search_iters must be >= 1, got ",
        o.search_iters());
  check(o.refine() >= 0 && o.refine() <= 6,
        "ScheduleOptimisationOptions.refine must be in [0, 6], got ", o.refine());
  const auto started = std::chrono::steady_clock::now();
  KlubEstimator est(denoiser, x0, o);
  const int64_t n = o.num_steps();
  // Ascending t_0 = sigma_min .. t_n = sigma_max.
  std::vector<double> t(static_cast<size_t>(n + 1));
  for (int64_t i = 0; i <= n; ++i) {
    const double u = static_cast<double>(i) / static_cast<double>(n);
    if (o.init() == ScheduleInit::karras) {
      const double a = std::pow(o.sigma_min(), 1.0 / o.rho()),
                   b = std::pow(o.sigma_max(), 1.0 / o.rho());
      t[i] = std::pow(a + u * (b - a), o.rho());
    } else {
      t[i] = std::exp(std::log(o.sigma_min()) +
                      u * (std::log(o.sigma_max()) - std::log(o.sigma_min())));
    }
  }
  t.front() = o.sigma_min();
  t.back() = o.sigma_max();
  std::vector<double> k(static_cast<size_t>(n));  // k[i] = K(t_i, t_{i+1})
  for (int64_t i = 0; i < n; ++i) k[i] = est.interval(t[i], t[i + 1]);
  auto sum = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s;
  };
  // Progress report (observes only): it fills an AysIteration from the current state.
  auto report = [&](AysIteration::Kind kind, int64_t level, int64_t sweep, int64_t max_sweeps,
                    int64_t point, int64_t points, int64_t index, double sigma,
                    const std::vector<double>& kv, double klub_start) {
    if (!o.on_iteration()) return;
    AysIteration it;
    it.kind = kind;
    it.level = level;
    it.sweep = sweep;
    it.max_sweeps = max_sweeps;
    it.point = point;
    it.points = points;
    it.index = index;
    it.sigma = sigma;
    it.klub = sum(kv);
    it.klub_start = klub_start < 0 ? it.klub : klub_start;
    it.elapsed_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    o.on_iteration()(it);
  };
  using Kind = AysIteration::Kind;
  ScheduleOptimisationResult res;
  res.klub_history.push_back(sum(k));
  report(Kind::kInitial, 0, -1, o.max_sweeps(), -1, 0, -1, 0.0, k, -1.0);
  // Moves t[i] (neighbours fixed) to the golden-section minimum of K(t[i-1], .) + K(., t[i+1]).
  auto move_point = [&](std::vector<double>& tv, std::vector<double>& kv, size_t i) {
    const double lo = std::log(tv[i - 1]), hi = std::log(tv[i + 1]);
    const double margin = 1e-6 * (hi - lo);
    auto f = [&](double y) {
      const double s = std::exp(y);
      return est.interval(tv[i - 1], s) + est.interval(s, tv[i + 1]);
    };
    double fbest = 0.0;
    const double y = golden_section(f, lo + margin, hi - margin, o.search_iters(), fbest);
    if (fbest < kv[i - 1] + kv[i]) {
      tv[i] = std::exp(y);
      kv[i - 1] = est.interval(tv[i - 1], tv[i]);
      kv[i] = est.interval(tv[i], tv[i + 1]);
    }
  };
  for (int64_t sweep = 0; sweep < o.max_sweeps(); ++sweep) {
    const double before = sum(k);
    // Alternate the direction (symmetric Gauss-Seidel): moves propagate both ways along the chain.
    for (int64_t j = 1; j < n; ++j) {
      const auto i = static_cast<size_t>(sweep % 2 == 0 ? j : n - j);
      move_point(t, k, i);
      report(Kind::kPoint, 0, sweep, o.max_sweeps(), j - 1, n - 1, static_cast<int64_t>(i), t[i], k,
             before);
    }
    const double after = sum(k);
    res.klub_history.push_back(after);
    res.sweeps = sweep + 1;
    report(Kind::kSweep, 0, sweep, o.max_sweeps(), -1, n - 1, -1, 0.0, k, before);
    if (before - after < o.tol() * before) break;
  }
  auto descending = [](std::vector<double> v) {
    std::reverse(v.begin(), v.end());
    return v;
  };
  res.levels.push_back(descending(t));
  res.klub.push_back(sum(k));
  report(Kind::kLevel, 0, -1, o.max_sweeps(), -1, 0, -1, 0.0, k, -1.0);
  for (int64_t level = 0; level < o.refine(); ++level) {
    std::vector<double> t2, k2;
    for (size_t i = 0; i + 1 < t.size(); ++i) {
      t2.push_back(t[i]);
      t2.push_back(std::sqrt(t[i] * t[i + 1]));
    }
    t2.push_back(t.back());
    for (size_t i = 0; i + 1 < t2.size(); ++i) k2.push_back(est.interval(t2[i], t2[i + 1]));
    const double start = sum(k2);
    const auto new_points = static_cast<int64_t>(t2.size() / 2);
    for (size_t i = 1; i + 1 < t2.size(); i += 2) {  // only the new points
      move_point(t2, k2, i);
      report(Kind::kPoint, level + 1, 0, 1, static_cast<int64_t>(i / 2), new_points,
             static_cast<int64_t>(i), t2[i], k2, start);
    }
    t = std::move(t2);
    k = std::move(k2);
    res.levels.push_back(descending(t));
    res.klub.push_back(sum(k));
    report(Kind::kLevel, level + 1, -1, 1, -1, 0, -1, 0.0, k, start);
  }
  res.sigmas = res.levels.back();
  return res;
}

std::vector<double> gaussian_klub_optimal_sigmas(double sigma_min, double sigma_max, int64_t n,
                                                 double s) {
  check(n >= 1 && sigma_min > 0 && sigma_max > sigma_min && s > 0,
        "gaussian_klub_optimal_sigmas: needs n >= 1, 0 < sigma_min < sigma_max, s > 0");
  auto g = [s](double x) { return std::log(x) - 0.5 * std::log(x * x + s * s); };
  std::vector<double> out;
  for (double y : detail::np_linspace(g(sigma_max), g(sigma_min), n + 1)) {
    const double e2 = std::exp(2 * y);  // sigma^2 / (sigma^2 + s^2)
    out.push_back(s * std::sqrt(e2 / (-std::expm1(2 * y))));
  }
  out.front() = sigma_max;
  out.back() = sigma_min;
  return out;
}

std::vector<double> kl_optimal_sigmas(double sigma_min, double sigma_max, int64_t n) {
  check(n >= 1 && sigma_min > 0 && sigma_max > sigma_min,
        "kl_optimal_sigmas: needs n >= 1, 0 < sigma_min < sigma_max");
  std::vector<double> out;
  for (int64_t i = 0; i <= n; ++i) {
    const double u = static_cast<double>(i) / static_cast<double>(n);
    out.push_back(std::tan((1 - u) * std::atan(sigma_max) + u * std::atan(sigma_min)));
  }
  return out;
}

ScheduleOptimisation::ScheduleOptimisation(ScheduleOptimisationCorrectionOptions o)
    : options(std::move(o)) {
  if (!options.sigmas().empty()) check_ays_sigmas(options.sigmas(), "schedule_optimisation");
  check(options.final() == FinalPoint::kZero || options.final() == FinalPoint::kMin,
        "schedule_optimisation: final must be kZero or kMin, got ",
        static_cast<int>(options.final()));
}

std::unique_ptr<Correction> ScheduleOptimisation::from_config(const Config& c) {
  ConfigReader r(c, "schedule_optimisation");
  ScheduleOptimisationCorrectionOptions o;
  o.sigmas(r.get_doubles("sigmas"));
  o.final(r.get_enum("final", o.final(), final_point_names()));
  o.round_t(r.get_bool("round_t", o.round_t()));
  r.finish();
  return std::make_unique<ScheduleOptimisation>(o);
}

Config ScheduleOptimisation::to_config() const {
  Config c{{"final", enum_name(options.final(), final_point_names())},
           {"round_t", detail::bool_str(options.round_t())}};
  if (!options.sigmas().empty()) {
    std::string v;
    for (double s : options.sigmas()) v += (v.empty() ? "" : ";") + format_double(s);
    c["sigmas"] = v;
  }
  return c;
}

std::unique_ptr<Correction> ScheduleOptimisation::clone() const {
  return std::make_unique<ScheduleOptimisation>(*this);
}

void ScheduleOptimisation::on_grid(TimeGrid& grid, const NoiseSchedule& s) {
  if (options.sigmas().empty()) return;
  const auto n = static_cast<int64_t>(grid.size()) - 1;
  std::vector<double> sg = static_cast<int64_t>(options.sigmas().size()) == n + 1
                               ? options.sigmas()
                               : ays_loglinear_interp(options.sigmas(), n + 1);
  if (options.final() == FinalPoint::kZero) sg.back() = 0.0;
  grid = detail::grid_from_sigmas(s, sg, options.round_t());
}

DIFFUSE_REGISTER_CORRECTION(
    ScheduleOptimisation, "schedule_optimisation",
    "Align Your Steps: replace the grid by an optimised sigma list (see optimise_schedule)");

}  // namespace diffuse
