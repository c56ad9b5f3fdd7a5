// SPDX-License-Identifier: Apache-2.0
// Coefficient helpers of <diffuse/samplers/coefficients.h> (the formulas are there).
#include <diffuse/samplers/coefficients.h>

#include <algorithm>

namespace diffuse {

EulerCoefficients euler_coefficients(const TimePoint& now, double sigma_ve_to, double alpha_to) {
  const double r = ve_ratio(sigma_ve_to, now.sigma_ve());
  return {alpha_to * sigma_ve_to / now.sigma, alpha_to * (1.0 - r)};
}

ForwardTransition forward_transition(const TimePoint& from, const TimePoint& to) {
  ForwardTransition f;
  f.scale = to.alpha / from.alpha;
  f.std =
      std::sqrt(std::max(0.0, to.sigma * to.sigma - f.scale * f.scale * from.sigma * from.sigma));
  return f;
}

AncestralSplit ancestral_split(double sigma_ve, double sigma_ve_next, double eta) {
  if (eta == 0.0 || sigma_ve_next == 0.0) return {sigma_ve_next, 0.0};
  const double r = ve_ratio(sigma_ve_next, sigma_ve);
  const double up =
      std::min(sigma_ve_next, eta * sigma_ve_next * std::sqrt(std::max(0.0, 1.0 - r * r)));
  return {std::sqrt(std::max(0.0, sigma_ve_next * sigma_ve_next - up * up)), up};
}

const EnumNames<AncestralRule>& ancestral_rule_names() {
  static const EnumNames<AncestralRule> names{{"auto", AncestralRule::automatic},
                                              {"ve", AncestralRule::ve},
                                              {"flow", AncestralRule::flow},
                                              {"renoise", AncestralRule::renoise}};
  return names;
}

AncestralRule resolve_ancestral_rule(AncestralRule rule, const NoiseSchedule* schedule) {
  if (rule != AncestralRule::automatic) return rule;
  return schedule != nullptr && schedule->rectified_flow() ? AncestralRule::flow
                                                           : AncestralRule::ve;
}

EulerCoefficients ancestral_coefficients(AncestralRule rule, const TimePoint& now,
                                         const TimePoint& next, double eta, double s_noise,
                                         double* noise_std) {
  switch (rule) {
    case AncestralRule::automatic:
      break;
    case AncestralRule::ve: {
      const auto split = ancestral_split(now.sigma_ve(), next.sigma_ve(), eta);
      *noise_std = s_noise * split.sigma_up * next.alpha;
      return euler_coefficients(now, split.sigma_down, next.alpha);
    }
    case AncestralRule::flow: {
      const double n = now.alpha + now.sigma, n_next = next.alpha + next.sigma;
      const double tau = now.sigma / n, tau_next = next.sigma / n_next;
      const double tau_down = std::max(0.0, tau_next * (1.0 + (tau_next / tau - 1.0) * eta));
      const double r = (1.0 - tau_next) / (1.0 - tau_down);
      const double ratio = tau_down / tau;
      const double up2 = tau_next * tau_next - tau_down * tau_down * r * r;
      *noise_std = s_noise * n_next * std::sqrt(std::max(0.0, up2));
      return {n_next * r * tau_down / now.sigma, n_next * r * (1.0 - ratio)};
    }
    case AncestralRule::renoise:
      *noise_std = s_noise * next.sigma;
      return {0.0, next.alpha};
  }
  check(false, "ancestral_coefficients: resolve AncestralRule::automatic first (got rule ",
        static_cast<int>(rule), ")");
  return {};
}

const std::vector<std::pair<std::string, DpmSolverType>>& dpm_solver_type_names() {
  static const std::vector<std::pair<std::string, DpmSolverType>> names{
      {"midpoint", DpmSolverType::kMidpoint}, {"heun", DpmSolverType::kHeun}};
  return names;
}

std::vector<double> lagrange_basis(const std::vector<double>& nodes, size_t j, double origin) {
  std::vector<double> poly{1.0};
  double denom = 1.0;
  for (size_t m = 0; m < nodes.size(); ++m) {
    if (m == j) continue;
    const double shift = origin - nodes[m];  // variable - nodes[m] = v + shift
    std::vector<double> next(poly.size() + 1, 0.0);
    for (size_t e = 0; e < poly.size(); ++e) {
      next[e + 1] += poly[e];
      next[e] += poly[e] * shift;
    }
    poly = std::move(next);
    denom *= nodes[j] - nodes[m];
  }
  for (double& a : poly) a /= denom;
  return poly;
}

int64_t dpm_multistep_order(int64_t order, bool lower_order_final, int64_t below,
                            bool euler_at_final, int64_t index, int64_t num_steps,
                            bool next_is_clean, size_t available) {
  const bool lof_active = lower_order_final && num_steps < below;
  const bool last = index == num_steps - 1;
  const bool second_last = index == num_steps - 2;
  if (order == 1 || available < 1 || next_is_clean || (last && (euler_at_final || lof_active)))
    return 1;
  if (order == 2 || available < 2 || (second_last && lof_active)) return 2;
  return 3;
}

}  // namespace diffuse
