// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/discrete.h>.
#include <diffuse/schedules/discrete.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>

namespace diffuse {

const std::vector<std::pair<std::string, TablePrecision>>& table_precision_names() {
  static const std::vector<std::pair<std::string, TablePrecision>> names{
      {"float64", TablePrecision::float64}, {"float32", TablePrecision::float32}};
  return names;
}

std::unique_ptr<NoiseSchedule> DiscreteSchedule::from_config(const Config& c) {
  ConfigReader r(c, "discrete schedule");
  DiscreteScheduleOptions o;
  o.num_train_timesteps(r.get_int("num_train_timesteps", o.num_train_timesteps()));
  o.beta_start(r.get_double("beta_start", o.beta_start()));
  o.beta_end(r.get_double("beta_end", o.beta_end()));
  o.beta_schedule(r.get_enum("beta_schedule", o.beta_schedule(), beta_schedule_names()));
  o.trained_betas(r.get_doubles("trained_betas"));
  o.rescale_betas_zero_snr(r.get_bool("rescale_betas_zero_snr", o.rescale_betas_zero_snr()));
  o.terminal_alphas_cumprod(r.get_double("terminal_alphas_cumprod", o.terminal_alphas_cumprod()));
  o.precision(r.get_enum("precision", o.precision(), table_precision_names()));
  r.finish();
  return std::make_unique<DiscreteSchedule>(o);
}

Config DiscreteSchedule::to_config() const {
  Config c{{"num_train_timesteps", std::to_string(options.num_train_timesteps())},
           {"beta_start", format_double(options.beta_start())},
           {"beta_end", format_double(options.beta_end())},
           {"beta_schedule", to_string(options.beta_schedule())},
           {"rescale_betas_zero_snr", options.rescale_betas_zero_snr() ? "true" : "false"},
           {"terminal_alphas_cumprod", format_double(options.terminal_alphas_cumprod())},
           {"precision", enum_name(options.precision(), table_precision_names())}};
  if (!options.trained_betas().empty()) {
    std::string v;
    for (double b : options.trained_betas()) v += (v.empty() ? "" : ";") + format_double(b);
    c["trained_betas"] = v;
  }
  return c;
}

TimePoint DiscreteSchedule::at(double t) const {
  check(std::isfinite(t) && t >= 0 && t <= t_max(), "discrete schedule: t=", t, " is outside [0, ",
        t_max(), "]");
  const double fl = std::floor(t);
  const auto i = static_cast<int64_t>(fl);
  if (fl == t) return point_at_index(i, t);
  // diffusers: np.interp(t, arange(T), sigmas), linear in sigma_ve.
  const double w = t - fl;
  const double s0 = sigmas_[i], s1 = sigmas_[i + 1];
  if (!std::isfinite(s1)) {  // zero terminal SNR: interpolate alphas_cumprod instead
    const double ac = (1 - w) * ac_[i] + w * ac_[i + 1];
    return TimePoint{t, std::sqrt(ac), std::sqrt(1 - ac)};
  }
  return from_sigma_ve(t, (1 - w) * s0 + w * s1);
}

TimePoint DiscreteSchedule::at_log_snr(double lambda) const {
  check_numerics(!std::isnan(lambda), "discrete schedule: log-SNR is NaN");
  const double sigma = std::exp(-lambda);
  return from_sigma_ve(t_from_sigma_ve(sigma), sigma);
}

double DiscreteSchedule::t_from_sigma_ve(double sigma) const {
  if (!(sigma > 0)) return 0.0;
  const double ls = std::log(sigma);
  const int64_t n = static_cast<int64_t>(log_sigmas_.size());
  if (!std::isfinite(ls)) return ls > 0 ? t_max() : 0.0;
  // low = index of the last log_sigma <= ls, clipped to n-2.
  auto it = std::upper_bound(log_sigmas_.begin(), log_sigmas_.end(), ls);
  int64_t low = static_cast<int64_t>(it - log_sigmas_.begin()) - 1;
  low = std::clamp<int64_t>(low, 0, n - 2);
  const double lo = log_sigmas_[low], hi = log_sigmas_[low + 1];
  double w = std::isfinite(hi) ? (lo - ls) / (lo - hi) : 0.0;
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * low + w * (low + 1);
}

TimePoint DiscreteSchedule::from_sigma_ve(double t, double s) {
  if (std::isinf(s)) return TimePoint{t, 0.0, 1.0};
  const double a = 1.0 / std::sqrt(s * s + 1.0);  // diffusers' _sigma_to_alpha_sigma_t
  return TimePoint{t, a, s * a};
}

TimePoint DiscreteSchedule::point_at_index(int64_t i, double t) const {
  return TimePoint{t, std::sqrt(ac_[i]), std::sqrt(1.0 - ac_[i])};
}

void DiscreteSchedule::build() {
  const auto& o = options;
  check_enum(o.precision(), table_precision_names(), "discrete schedule: precision");
  const auto dtype = o.precision() == TablePrecision::float32 ? at::kFloat : at::kDouble;
  at::Tensor betas;
  if (!o.trained_betas().empty()) {
    for (size_t i = 0; i < o.trained_betas().size(); ++i) {
      const double b = o.trained_betas()[i];
      check(std::isfinite(b) && b > 0 && b <= 1, "trained_betas[", i, "]=", b,
            " is outside (0, 1]");
    }
    check(o.trained_betas().size() >= 2, "trained_betas needs at least 2 values, got ",
          o.trained_betas().size());
    betas = at::tensor(o.trained_betas(), at::TensorOptions().dtype(at::kDouble)).to(dtype);
  } else {
    betas = detail::make_betas(o.beta_schedule(), o.num_train_timesteps(), o.beta_start(),
                               o.beta_end(), dtype);
  }
  if (o.rescale_betas_zero_snr()) betas = detail::rescale_zero_terminal_snr(betas);
  at::Tensor ac = at::cumprod(1.0 - betas, 0);
  betas_ = detail::to_vector(betas);
  ac_ = detail::to_vector(ac);
  check(o.terminal_alphas_cumprod() >= 0 && o.terminal_alphas_cumprod() < 1,
        "terminal_alphas_cumprod must be in [0, 1), got ", o.terminal_alphas_cumprod());
  if (o.terminal_alphas_cumprod() > 0 && ac_.back() == 0.0)
    ac_.back() = o.terminal_alphas_cumprod();
  for (size_t i = 0; i < ac_.size(); ++i)
    check(ac_[i] >= 0 && ac_[i] < 1 && std::isfinite(ac_[i]), "alphas_cumprod[", i, "]=", ac_[i],
          " is outside [0, 1): check the betas");
  const size_t last = ac_.size() - 1;
  check(!(o.terminal_alphas_cumprod() > 0 && ac_[last] == o.terminal_alphas_cumprod() &&
          ac_[last] > ac_[last - 1]),
        "terminal_alphas_cumprod=", o.terminal_alphas_cumprod(), " is above alphas_cumprod[",
        last - 1, "]=", ac_[last - 1],
        ": the last timestep would be less noisy than the one before it");
  for (size_t i = 1; i < ac_.size(); ++i)
    check(ac_[i] <= ac_[i - 1], "alphas_cumprod must not increase; index ", i, " has ", ac_[i],
          " > ", ac_[i - 1]);
  sigmas_.resize(ac_.size());
  log_sigmas_.resize(ac_.size());
  for (size_t i = 0; i < ac_.size(); ++i) {
    sigmas_[i] =
        ac_[i] > 0 ? std::sqrt((1.0 - ac_[i]) / ac_[i]) : std::numeric_limits<double>::infinity();
    log_sigmas_[i] = std::log(sigmas_[i]);
  }
  std::vector<double> a(ac_.size()), s(ac_.size());
  for (size_t i = 0; i < ac_.size(); ++i) {
    a[i] = std::sqrt(ac_[i]);
    s[i] = std::sqrt(1.0 - ac_[i]);
  }
  alpha_table_ = at::tensor(a, at::TensorOptions().dtype(at::kDouble));
  sigma_table_ = at::tensor(s, at::TensorOptions().dtype(at::kDouble));
}

Tensor DiscreteSchedule::lookup(const Tensor& table, const Tensor& t) const {
  check(t.defined(), "discrete schedule: t is undefined");
  Tensor idx = t.round().to(at::kLong).cpu();
  const int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
  check(lo >= 0 && hi < static_cast<int64_t>(ac_.size()), "discrete schedule: t outside [0, ",
        t_max(), "]: got range [", lo, ", ", hi, "]");
  Tensor out = table.index_select(0, idx.reshape({-1})).reshape(t.sizes());
  const auto dtype = at::isFloatingType(t.scalar_type()) ? t.scalar_type() : at::kFloat;
  return out.to(t.device(), dtype);
}

DIFFUSE_REGISTER(
    ::diffuse::NoiseSchedule, DiscreteSchedule, "discrete",
    "discrete DDPM betas: linear, scaled_linear, squaredcos_cap_v2 or trained; zero-SNR rescale");

}  // namespace diffuse
