// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/detail/betas.h>.
#include <diffuse/schedules/detail/betas.h>

#include <algorithm>
#include <cmath>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>

namespace diffuse {

const std::vector<std::pair<std::string, BetaSchedule>>& beta_schedule_names() {
  static const std::vector<std::pair<std::string, BetaSchedule>> names{
      {"linear", BetaSchedule::linear},
      {"scaled_linear", BetaSchedule::scaled_linear},
      {"squaredcos_cap_v2", BetaSchedule::squaredcos_cap_v2}};
  return names;
}

BetaSchedule parse_beta_schedule(const std::string& name) {
  return parse_enum(name, beta_schedule_names(), "beta_schedule");
}

std::string to_string(BetaSchedule schedule) { return enum_name(schedule, beta_schedule_names()); }

}  // namespace diffuse

namespace diffuse::detail {

/// betas for `kind` with T steps (2 <= T <= kMaxTrainTimesteps), as a 1-D tensor of `dtype`.
at::Tensor make_betas(BetaSchedule kind, int64_t T, double beta_start, double beta_end,
                      at::ScalarType dtype) {
  // The tables hold a few doubles per timestep; an absurd T would allocate gigabytes first.
  check(T >= 2 && T <= kMaxTrainTimesteps, "num_train_timesteps must be in [2, ",
        kMaxTrainTimesteps, "], got ", T);
  check_enum(kind, beta_schedule_names(), "beta_schedule");
  const auto opt = at::TensorOptions().dtype(dtype);
  if (kind == BetaSchedule::linear) {
    check(beta_start > 0 && beta_end < 1 && beta_start <= beta_end,
          "linear betas need 0 < beta_start <= beta_end < 1, got beta_start=", beta_start,
          " beta_end=", beta_end);
    return at::linspace(beta_start, beta_end, T, opt);
  }
  if (kind == BetaSchedule::scaled_linear) {
    check(beta_start > 0 && beta_end < 1 && beta_start <= beta_end,
          "scaled_linear betas need 0 < beta_start <= beta_end < 1, got beta_start=", beta_start,
          " beta_end=", beta_end);
    return at::linspace(std::sqrt(beta_start), std::sqrt(beta_end), T, opt).pow(2);
  }
  {
    // BetaSchedule::squaredcos_cap_v2, the iDDPM cosine:
    // alpha_bar(t) = cos^2(((t + 0.008) / 1.008) * pi / 2), beta capped at 0.999.
    // Computed in double as the reference does, then cast.
    auto alpha_bar = [](double t) {
      const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2.0);
      return c * c;
    };
    std::vector<double> b(T);
    for (int64_t i = 0; i < T; ++i) {
      const double t1 = static_cast<double>(i) / T, t2 = static_cast<double>(i + 1) / T;
      b[i] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999);
    }
    return at::tensor(b, at::TensorOptions().dtype(at::kDouble)).to(dtype);
  }
}

/// Lin et al. 2024, Algorithm 1: shift and scale sqrt(alphas_cumprod) so the last one is 0 and the
/// first is unchanged; returns the new betas (the last beta becomes 1).
at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas) {
  at::Tensor alphas = 1.0 - betas;
  at::Tensor ab_sqrt = at::cumprod(alphas, 0).sqrt();
  at::Tensor a0 = ab_sqrt[0].clone();
  at::Tensor aT = ab_sqrt[-1].clone();
  ab_sqrt = ab_sqrt - aT;
  ab_sqrt = ab_sqrt * (a0 / (a0 - aT));
  at::Tensor ab = ab_sqrt.pow(2);
  at::Tensor a = at::cat(
      {ab.narrow(0, 0, 1), ab.narrow(0, 1, ab.size(0) - 1) / ab.narrow(0, 0, ab.size(0) - 1)});
  return 1.0 - a;
}

std::vector<double> to_vector(const at::Tensor& t) {
  at::Tensor d = t.to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace diffuse::detail
