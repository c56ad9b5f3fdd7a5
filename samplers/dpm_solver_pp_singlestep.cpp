// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpm_solver_pp_singlestep.h>.
#include <diffuse/samplers/dpm_solver_pp_singlestep.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

DpmSolverPPSinglestepSampler::DpmSolverPPSinglestepSampler(DpmSolverPPSinglestepOptions o)
    : options(std::move(o)) {
  check(options.order() >= 1 && options.order() <= 3,
        "DpmSolverPPSinglestepOptions.order must be 1, 2 or 3, got ", options.order());
  check(options.solver_type() == DpmSolverType::kMidpoint ||
            options.solver_type() == DpmSolverType::kHeun,
        "DpmSolverPPSinglestepOptions.solver_type must be kMidpoint or kHeun, got ",
        static_cast<int>(options.solver_type()));
}

std::unique_ptr<Sampler> DpmSolverPPSinglestepSampler::from_config(const Config& c) {
  ConfigReader r(c, "dpm_solver_pp_singlestep");
  DpmSolverPPSinglestepOptions o;
  o.order(r.get_int("order", o.order()));
  o.solver_type(r.get_enum("solver_type", o.solver_type(), dpm_solver_type_names()));
  o.lower_order_final(r.get_bool("lower_order_final", o.lower_order_final()));
  o.predict_x0(r.get_bool("predict_x0", o.predict_x0()));
  r.finish();
  return std::make_unique<DpmSolverPPSinglestepSampler>(o);
}

Config DpmSolverPPSinglestepSampler::to_config() const {
  Config c{{"order", std::to_string(options.order())},
           {"solver_type", enum_name(options.solver_type(), dpm_solver_type_names())},
           {"lower_order_final", options.lower_order_final() ? "true" : "false"}};
  if (!options.predict_x0()) c["predict_x0"] = "false";  // written only when used
  return c;
}

std::vector<int64_t> DpmSolverPPSinglestepSampler::order_list(int64_t num_steps,
                                                              bool final_is_clean) const {
  check(num_steps >= 1, "dpm_solver_pp_singlestep: num_steps must be >= 1, got ", num_steps);
  const int64_t k = options.order(), n = num_steps;
  const bool lof = options.lower_order_final() || n % k != 0 || final_is_clean;
  std::vector<int64_t> out;
  auto repeat = [&](std::vector<int64_t> group, int64_t times) {
    for (int64_t i = 0; i < times; ++i) out.insert(out.end(), group.begin(), group.end());
  };
  if (k == 1) {
    repeat({1}, n);
  } else if (k == 2) {
    if (!lof) {
      repeat({1, 2}, n / 2);
    } else if (n % 2 == 0) {
      repeat({1, 2}, n / 2 - 1);
      repeat({1, 1}, 1);
    } else {
      repeat({1, 2}, n / 2);
      repeat({1}, 1);
    }
  } else {
    if (!lof) {
      repeat({1, 2, 3}, n / 3);
    } else if (n % 3 == 0) {
      repeat({1, 2, 3}, n / 3 - 1);
      repeat({1, 2, 1}, 1);
    } else if (n % 3 == 1) {
      repeat({1, 2, 3}, n / 3);
      repeat({1}, 1);
    } else {
      repeat({1, 2, 3}, n / 3);
      repeat({1, 2}, 1);
    }
  }
  if (final_is_clean) out.back() = 1;
  return out;
}

int64_t DpmSolverPPSinglestepSampler::order_at(const StepContext& st, size_t available) const {
  const bool final_is_clean = st.grid != nullptr
                                  ? st.grid->back().is_clean()
                                  : (st.index == st.num_steps - 1 && st.next.is_clean());
  const std::vector<int64_t> list = order_list(st.num_steps, final_is_clean);
  check(st.index >= 0 && st.index < static_cast<int64_t>(list.size()),
        "dpm_solver_pp_singlestep: step index ", st.index, " is outside the grid of ", st.num_steps,
        " steps");
  int64_t order = list[static_cast<size_t>(st.index)];
  while (order > 1 && static_cast<size_t>(order - 1) > available) --order;
  if (st.next.is_clean()) order = 1;
  return order;
}

StepResult DpmSolverPPSinglestepSampler::step_impl(const ModelFn& model, const Tensor& x,
                                                   const StepContext& st, const History& history,
                                                   SampleContext&) const {
  Prediction p = model(x, st.now, st);
  int64_t order = order_at(st, history.size());
  const size_t n = history.size();
  // A group that starts at alpha = 0 (lambda = -inf) has no finite divided differences.
  if (order > 1 && history.times[n - (order - 1)].alpha == 0.0) order = 1;
  const TimePoint& g = order == 1 ? st.now : history.times[n - (order - 1)];
  const Tensor& xg = order == 1 ? x : history.xs[n - (order - 1)];
  // The predictions the solver combines: x0 (DPM-Solver++) or eps (DPM-Solver).
  const bool data = options.predict_x0();
  const auto m = [data](const Prediction& q) -> const Tensor& { return data ? q.x0 : q.eps; };
  const Tensor& mg = order == 1 ? m(p) : m(history.preds[n - (order - 1)]);
  const TimePoint& next = st.next;
  check(data || g.alpha > 0, "dpm_solver_pp_singlestep: predict_x0=false cannot step from ",
        "alpha = 0 (zero terminal SNR or pure noise; t=", g.t, ", step ", st.index, ")");
  const double lambda_g = g.log_snr();
  const double h = next.log_snr() - lambda_g;
  if (h == 0.0) return {xg, p};
  // data: sigma'/sigma_g x_g + a (1 - e^{-h}) m_g; noise: alpha'/alpha_g x_g - (sigma' e^h -
  // sigma') m_g, with sigma' e^h = alpha' sigma_g / alpha_g (finite at sigma' = 0).
  const double c_first =
      data ? next.alpha * dpm_phi1(h) : -(next.alpha * g.sigma / g.alpha - next.sigma);
  Tensor x_next = lincomb(xg, data ? next.sigma / g.sigma : next.alpha / g.alpha, mg, c_first);
  if (order == 1) return {x_next, p};
  // The weight of the higher-order terms: a (e^{-h} - 1 + h), or -sigma' (e^h - 1 - h).
  const double k = data ? next.alpha : -next.sigma;
  const double em = data ? dpm_expm1_plus(h) : std::expm1(h) - h;
  const double h0 = st.now.log_snr() - lambda_g;
  const Tensor e0 = diff_divided(m(p), mg, h0);
  const bool midpoint = options.solver_type() == DpmSolverType::kMidpoint;
  if (order == 2 || midpoint) {
    add_scaled_(x_next, e0, order == 2 && midpoint ? 0.5 * c_first * h : k * em);
    return {x_next, p};
  }
  const double h1 = history.times[n - 1].log_snr() - lambda_g;
  const Tensor e1 = diff_divided(m(history.preds[n - 1]), mg, h1);
  const double inv = 1.0 / (h0 - h1);
  Tensor first = scaled(e1, h0);
  sub_scaled_(first, e0, h1);
  add_scaled_(x_next, first, k * em * inv);
  // diffusers' D2 term: -a ((e^{-h} - 1 + h) / h^2 - 1/2) D2 for data, -sigma' ((e^h - 1 - h) / h^2
  // - 1/2) D2 for noise, with D2 = 2 h^2 (E0 - E1) / (h_0 - h_1).
  add_scaled_(x_next, e0 - e1, (data ? -next.alpha : -next.sigma) * 2.0 * (em - 0.5 * h * h) * inv);
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(
    DpmSolverPPSinglestepSampler, "dpm_solver_pp_singlestep",
    "DPM-Solver++ singlestep on grid points (diffusers DPMSolverSinglestepScheduler), order 1-3");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2s, "dpmpp_2s", "dpm_solver_pp_singlestep",
                               (Config{{"order", "2"}}),
                               "DPM++ 2S on grid points: dpm_solver_pp_singlestep order=2");

}  // namespace diffuse
