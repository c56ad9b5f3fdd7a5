// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/detail/grid.h>.
#include <diffuse/schedules/detail/grid.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <diffuse/config.h>
#include <diffuse/registry.h>

namespace diffuse::detail {

std::vector<double> np_linspace(double start, double stop, int64_t num) {
  std::vector<double> y(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num == 1) {
    y[0] = start;
    return y;
  }
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) y[i] = static_cast<double>(i) * step + start;
  if (num > 1) y[num - 1] = stop;
  return y;
}

double np_round(double v) { return std::nearbyint(v); }

void check_steps(const std::string& who, int64_t n) {
  check(n >= 1, who, ": num_steps must be >= 1, got ", n);
  check(n <= kMaxNumSteps, who, ": num_steps=", n, " is more than the ", kMaxNumSteps,
        " steps a grid may have");
}

void check_discrete(const std::string& who, const NoiseSchedule& s) {
  check(s.num_train_timesteps() > 0, who, " spacing needs a discrete schedule, got '", s.name(),
        "'");
}

TimeGrid grid_from_times(const NoiseSchedule& s, const std::vector<double>& ts,
                         FinalPoint final_kind) {
  TimeGrid g;
  g.reserve(ts.size() + 1);
  for (double t : ts) g.push_back(s.at(t));
  g.push_back(final_point(s, final_kind));
  return g;
}

TimePoint log_sigma_point(const NoiseSchedule& s, double t, bool round_t) {
  const double fl = std::floor(t);
  TimePoint p;
  if (fl == t) {
    p = s.at(t);
  } else {
    const TimePoint a = s.at(fl), b = s.at(fl + 1);
    const double sa = a.sigma_ve(), sb = b.sigma_ve();
    if (!std::isfinite(sa) || !std::isfinite(sb) || !(sa > 0) || !(sb > 0)) {
      p = s.at(t);
    } else {
      const double w = t - fl;
      p = s.at_sigma_ve(std::exp((1 - w) * std::log(sa) + w * std::log(sb)));
      p.t = t;
    }
  }
  if (round_t) p.t = np_round(p.t);
  return p;
}

int64_t kept_train_steps(const NoiseSchedule& s, double lambda_min, const char* who) {
  check(!std::isnan(lambda_min), who, ": lambda_min must not be NaN");
  const int64_t T = s.num_train_timesteps();
  if (lambda_min == -std::numeric_limits<double>::infinity()) return T;
  check(T > 0, who, ": lambda_min=", format_double(lambda_min), " needs a discrete schedule, got '",
        s.name(), "'");
  int64_t clipped = 0;  // lambda falls with t: the clipped ones are the last
  for (int64_t t = 0; t < T; ++t)
    if (s.at(static_cast<double>(t)).log_snr() < lambda_min) ++clipped;
  check(clipped < T, who, ": lambda_min=", format_double(lambda_min),
        " clips every training timestep (the largest half log-SNR is ", s.at(0.0).log_snr(), ")");
  return T - clipped;
}

void check_time_rounding(const char* who, bool round_t, bool trunc_t) {
  check(!(round_t && trunc_t), who, ": round_t and trunc_t exclude each other");
}

void check_sigma_spacing_options(const char* who, double sigma_min, double sigma_max, bool round_t,
                                 bool trunc_t) {
  check(sigma_min >= 0 && sigma_max >= 0, who,
        ": sigma_min/sigma_max must be >= 0 (0: the schedule's own), got sigma_min=", sigma_min,
        " sigma_max=", sigma_max);
  check_time_rounding(who, round_t, trunc_t);
}

TimeGrid sigma_ramp_grid(const NoiseSchedule& s, const std::vector<double>& sigmas, bool round_t,
                         bool trunc_t, FinalPoint final_kind) {
  TimeGrid g = grid_from_sigmas(s, sigmas, round_t, trunc_t);
  g.push_back(final_kind == FinalPoint::kMin ? g.back() : s.clean_point());
  return g;
}

TimeGrid grid_from_sigmas(const NoiseSchedule& s, const std::vector<double>& sigmas, bool round_t,
                          bool trunc_t) {
  check_time_rounding("grid_from_sigmas", round_t, trunc_t);
  TimeGrid g;
  g.reserve(sigmas.size());
  for (double sg : sigmas) {
    if (sg == 0.0) {
      g.push_back(s.clean_point());
      continue;
    }
    TimePoint p = s.at_sigma_ve(sg);
    if (round_t && s.num_train_timesteps() > 0) p.t = np_round(p.t);
    if (trunc_t && s.num_train_timesteps() > 0) p.t = std::trunc(p.t);
    g.push_back(p);
  }
  return g;
}

std::vector<double> karras_ramp(double lo, double hi, double rho, int64_t n) {
  const double min_inv = std::pow(lo, 1.0 / rho), max_inv = std::pow(hi, 1.0 / rho);
  std::vector<double> out;
  out.reserve(static_cast<size_t>(n));
  for (double r : np_linspace(0.0, 1.0, n))
    out.push_back(std::pow(max_inv + r * (min_inv - max_inv), rho));
  return out;
}

std::vector<double> exponential_ramp(double lo, double hi, int64_t n) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(n));
  for (double l : np_linspace(std::log(hi), std::log(lo), n)) out.push_back(std::exp(l));
  return out;
}

double regularized_incomplete_beta(double x, double a, double b) {
  check(a > 0 && b > 0 && std::isfinite(a) && std::isfinite(b),
        "regularized_incomplete_beta: needs finite a, b > 0, got a=", a, " b=", b);
  check(x >= 0 && x <= 1, "regularized_incomplete_beta: x must be in [0, 1], got ", x);
  if (x == 0.0 || x == 1.0) return x;
  // The fraction converges fast for x < (a + 1) / (a + b + 2); the other side by symmetry.
  if (x > (a + 1.0) / (a + b + 2.0)) return 1.0 - regularized_incomplete_beta(1.0 - x, b, a);
  const double log_front = a * std::log(x) + b * std::log1p(-x) -
                           (std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b)) - std::log(a);
  // 1 + d1 / (1 + d2 / (1 + ...)), d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)),
  // d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
  constexpr double tiny = 1e-300;
  double f = 1.0, c = 1.0, d = 0.0;
  for (int j = 1; j <= 10000; ++j) {
    const int m = j / 2;
    const double num = j % 2 == 1 ? -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
                                  : m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
    d = 1.0 + num * d;
    if (std::abs(d) < tiny) d = tiny;
    c = 1.0 + num / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = c * d;
    f *= delta;
    if (std::abs(delta - 1.0) < 1e-16) break;
  }
  return std::exp(log_front) / f;
}

double beta_ppf(double p, double a, double b) {
  check(p >= 0 && p <= 1, "beta_ppf: p must be in [0, 1], got ", p);
  if (p == 0.0 || p == 1.0) return p;
  double lo = 0.0, hi = 1.0;
  while (true) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) return mid;
    (regularized_incomplete_beta(mid, a, b) < p ? lo : hi) = mid;
  }
}

std::vector<double> beta_ramp(double lo, double hi, double a, double b, int64_t n) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(n));
  for (double r : np_linspace(0.0, 1.0, n)) out.push_back(lo + beta_ppf(1.0 - r, a, b) * (hi - lo));
  return out;
}

void sigma_range(const NoiseSchedule& s, double& lo, double& hi, const char* who) {
  if (lo == 0.0) lo = s.at(s.t_min()).sigma_ve();
  if (hi == 0.0) hi = s.at(s.t_max()).sigma_ve();
  check(lo > 0 && std::isfinite(hi) && hi > lo, who,
        ": needs 0 < sigma_min < sigma_max < inf, got sigma_min=", lo, " sigma_max=", hi,
        " (for zero terminal SNR set terminal_alphas_cumprod or sigma_max)");
}

const std::vector<std::string>& sigma_range_sources() {
  static const std::vector<std::string> names{"schedule", "linspace", "leading", "trailing"};
  return names;
}

void check_sigma_range_source(const char* who, const std::string& range, int64_t steps_offset) {
  const auto& names = sigma_range_sources();
  check(std::find(names.begin(), names.end(), range) != names.end(), who, ": range must be one of ",
        join(names, ", "), ", got '", range, "'");
  check(steps_offset >= 0, who, ": range_steps_offset must be >= 0, got ", steps_offset);
  check(steps_offset == 0 || range == "leading", who, ": range_steps_offset=", steps_offset,
        " applies to range=leading only (range=", range, ")");
}

void sigma_range_from(const NoiseSchedule& s, const std::string& range, int64_t steps_offset,
                      int64_t n, double& lo, double& hi, const char* who) {
  if (range != "schedule" && (lo == 0.0 || hi == 0.0)) {
    Config c;
    if (range == "leading") c["steps_offset"] = std::to_string(steps_offset);
    const TimeGrid g = Registry<TimestepSpacing>::get().make(range, c)->grid(s, n);
    if (hi == 0.0) hi = g.front().sigma_ve();
    if (lo == 0.0 && n > 1) {
      lo = g[static_cast<size_t>(n) - 1].sigma_ve();
    } else if (lo == 0.0) {
      // One step: the ramp is sigma_max alone and any sigma_min below it will do.
      lo = s.at(s.t_min()).sigma_ve();
      if (!(lo < hi)) lo = 0.5 * hi;
    }
  }
  sigma_range(s, lo, hi, who);
}

}  // namespace diffuse::detail
