// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/deis.h>.
#include <diffuse/samplers/deis.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

DeisSampler::DeisSampler(DeisOptions o) : options(std::move(o)) {
  check(options.order() >= 1 && options.order() <= 3, "deis: order must be 1, 2 or 3, got ",
        options.order());
}

std::unique_ptr<Sampler> DeisSampler::from_config(const Config& c) {
  ConfigReader r(c, "deis");
  DeisOptions o;
  o.order(r.get_int("order", o.order()));
  o.lower_order_final(r.get_bool("lower_order_final", o.lower_order_final()));
  r.finish();
  return std::make_unique<DeisSampler>(o);
}

Config DeisSampler::to_config() const {
  return {{"order", std::to_string(options.order())},
          {"lower_order_final", options.lower_order_final() ? "true" : "false"}};
}

std::vector<double> DeisSampler::coefficients(const std::vector<double>& nodes, double to) {
  const size_t k = nodes.size();
  if (k == 1) return {to - nodes[0]};
  // In v = log r - log nodes[0]: L_j(v) = sum_m a_m v^m, and the integral of v^m e^v dv over
  // [0, V] is e^V sum_i (-1)^(m-i) m!/i! V^i - (-1)^m m!; times nodes[0] (dr = nodes[0] e^v dv).
  const double u0 = std::log(nodes[0]);
  const bool to_zero = to == 0.0;
  const double big_v = to_zero ? 0.0 : std::log(to) - u0;
  const double e_v = to_zero ? 0.0 : to / nodes[0];
  std::vector<double> monomial(k);  // integral of v^m e^v over [0, V]
  for (size_t m = 0; m < k; ++m) {
    double fact_m = 1;
    for (size_t i = 2; i <= m; ++i) fact_m *= static_cast<double>(i);
    double sum = 0, power = 1, fact_i = 1;
    for (size_t i = 0; i <= m; ++i) {
      if (i > 0) power *= big_v, fact_i *= static_cast<double>(i);
      sum += ((m - i) % 2 == 0 ? 1.0 : -1.0) * fact_m / fact_i * power;
    }
    monomial[m] = e_v * sum - (m % 2 == 0 ? 1.0 : -1.0) * fact_m;
  }
  std::vector<double> logs(k);
  for (size_t m = 0; m < k; ++m) logs[m] = std::log(nodes[m]);
  std::vector<double> out(k);
  for (size_t j = 0; j < k; ++j) {
    const std::vector<double> poly = lagrange_basis(logs, j, u0);
    double integral = 0;
    for (size_t e = 0; e < poly.size(); ++e) integral += poly[e] * monomial[e];
    out[j] = nodes[0] * integral;
  }
  return out;
}

StepResult DeisSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                  const History& history, SampleContext&) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0 && now.alpha > 0, "deis: step ", st.index,
        " needs 0 < sigma_ve < inf at its start (zero terminal SNR or pure noise: alpha = 0), got "
        "t=",
        now.t, " alpha=", now.alpha, " sigma=", now.sigma);
  const Prediction p = model(x, now, st);
  if (next.sigma_ve() == now.sigma_ve()) return {x, p};  // zero-length final step
  const int64_t order =
      dpm_multistep_order(options.order(), options.lower_order_final(), 15, false, st.index,
                          st.num_steps, next.is_clean(), history.size());
  const size_t n = history.size();
  std::vector<double> nodes{now.sigma_ve()};
  for (int64_t j = 1; j < order; ++j) nodes.push_back(history.times[n - j].sigma_ve());
  const std::vector<double> c = coefficients(nodes, next.sigma_ve());
  Tensor y = divided(x, now.alpha);
  add_scaled_(y, p.eps, c[0]);
  for (int64_t j = 1; j < order; ++j) add_scaled_(y, history.preds[n - j].eps, c[j]);
  return {scale_(y, next.alpha), p};
}

DIFFUSE_REGISTER_SAMPLER(DeisSampler, "deis",
                         "DEIS multistep, log-rho (Zhang & Chen 2023; diffusers "
                         "DEISMultistepScheduler), order 1-3");

}  // namespace diffuse
