// SPDX-License-Identifier: Apache-2.0
// DPM-Solver++ singlestep with grid points as intermediate points, data prediction, in lambda.
// Lu et al., "DPM-Solver++" (2022), Alg. 1 (2S) and DPM-Solver-3 (Lu et al. 2022, Alg. 2), in the
// form of diffusers' DPMSolverSinglestepScheduler (58eb52c), checked against it in float64
// (tests/samplers/dpm_solver_pp_singlestep_test.cpp).
//
// The grid steps are taken in groups following an order list (diffusers' get_order_list):
//   lower_order_final=false: [1, 2, 3] repeated (order 3), [1, 2] repeated (order 2), [1] * n;
//   lower_order_final=true:  the same, with the tail shortened so the run ends on a complete
//     group: order 3: n % 3 == 0 -> ... + [1, 2] + [1], n % 3 == 1 -> ... + [1], else ... + [1, 2];
//     order 2: n even -> ... + [1, 1], n odd -> ... + [1];
//   a final step onto sigma = 0 is first order.
// lower_order_final is switched on (as diffusers does, with a warning) when n % order != 0 or the
// grid ends on sigma = 0. A step of order k (k-th entry of a group) restarts from the sample x_g at
// the group's first point g (History::xs) and uses the data predictions at the group's k points;
// steps at the start of a run lower their order until enough predictions exist (img2img).
//
// With g the group start, s1, s0 the later points of the group (s0 = now), h = lambda_next -
// lambda_g, h_0 = lambda_s0 - lambda_g, h_1 = lambda_s1 - lambda_g, a = alpha_next,
//   order 1: x_next = (sigma_next / sigma_g) x_g + a (1 - e^{-h}) m_g
//   order 2: E0 = (m0 - m_g) / h_0;  midpoint: ... + a (1 - e^{-h}) h E0 / 2;  heun: ... + a (e^{-h} - 1 + h) E0
//   order 3: E0 = (m0 - m_g) / h_0, E1 = (m1 - m_g) / h_1;
//            midpoint: ... + a (e^{-h} - 1 + h) E0
//            heun:     ... + a (e^{-h} - 1 + h) (h_0 E1 - h_1 E0) / (h_0 - h_1)
//                          - 2 a (e^{-h} - 1 + h - h^2 / 2) (E0 - E1) / (h_0 - h_1)
// (diffusers' D1 = h E, r = h_k / h expanded, so nothing divides by h; at h = 0 x_g is returned.)
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>
#include <diffuse/samplers/detail/dpm_solver.h>

namespace diffuse {

struct DpmSolverPPSinglestepOptions {
  /// Solver order: 1, 2 (default) or 3. history_size() = order - 1.
  TORCH_ARG(int64_t, order) = 2;
  /// "midpoint" (default) or "heun".
  TORCH_ARG(std::string, solver_type) = "midpoint";
  /// End on a complete group (see the file comment). Default false (diffusers' class default);
  /// forced on when num_steps % order != 0 or the grid ends on sigma = 0.
  TORCH_ARG(bool, lower_order_final) = false;
};

class DpmSolverPPSinglestepSampler final : public Sampler {
 public:
  explicit DpmSolverPPSinglestepSampler(DpmSolverPPSinglestepOptions o = {}) : options(std::move(o)) {
    check(options.order() >= 1 && options.order() <= 3,
          "DpmSolverPPSinglestepOptions.order must be 1, 2 or 3, got ", options.order());
    check(options.solver_type() == "midpoint" || options.solver_type() == "heun",
          "DpmSolverPPSinglestepOptions.solver_type must be midpoint or heun, got '", options.solver_type(), "'");
  }
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "dpm_solver_pp_singlestep");
    DpmSolverPPSinglestepOptions o;
    o.order(r.get_int("order", o.order()));
    o.solver_type(r.get_choice("solver_type", o.solver_type(), detail::dpm_solver_types()));
    o.lower_order_final(r.get_bool("lower_order_final", o.lower_order_final()));
    r.finish();
    return std::make_unique<DpmSolverPPSinglestepSampler>(o);
  }
  Config to_config() const override {
    return {{"order", std::to_string(options.order())},
            {"solver_type", options.solver_type()},
            {"lower_order_final", options.lower_order_final() ? "true" : "false"}};
  }
  std::string name() const override { return "dpm_solver_pp_singlestep"; }
  int64_t history_size() const override { return options.order() - 1; }

  /// The order list for a grid of num_steps steps (diffusers' get_order_list, with its two
  /// automatic switches to lower_order_final).
  std::vector<int64_t> order_list(int64_t num_steps, bool final_is_clean) const {
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

  /// The order used at step `st` with `available` earlier predictions.
  int64_t order_at(const StepContext& st, size_t available) const {
    const bool final_is_clean = st.grid != nullptr ? st.grid->back().is_clean()
                                                   : (st.index == st.num_steps - 1 && st.next.is_clean());
    const std::vector<int64_t> list = order_list(st.num_steps, final_is_clean);
    check(st.index >= 0 && st.index < static_cast<int64_t>(list.size()), "dpm_solver_pp_singlestep: step index ",
          st.index, " is outside the grid of ", st.num_steps, " steps");
    int64_t order = list[static_cast<size_t>(st.index)];
    while (order > 1 && static_cast<size_t>(order - 1) > available) --order;
    if (st.next.is_clean()) order = 1;
    return order;
  }

  DpmSolverPPSinglestepOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History& history,
                       SampleContext&) const override {
    Prediction p = model(x, st.now, st);
    int64_t order = order_at(st, history.size());
    const size_t n = history.size();
    // A group that starts at alpha = 0 (lambda = -inf) has no finite divided differences.
    if (order > 1 && history.times[n - (order - 1)].alpha == 0.0) order = 1;
    const TimePoint& g = order == 1 ? st.now : history.times[n - (order - 1)];
    const Tensor& xg = order == 1 ? x : history.xs[n - (order - 1)];
    const Tensor& mg = order == 1 ? p.x0 : history.preds[n - (order - 1)].x0;
    const TimePoint& next = st.next;
    const double lambda_g = g.log_snr();
    const double h = next.log_snr() - lambda_g;
    if (h == 0.0) return {xg, p};
    const double a = next.alpha;
    Tensor x_next = detail::lincomb(xg, next.sigma / g.sigma, mg, a * detail::dpm_phi1(h));
    if (order == 1) return {x_next, p};
    const double em = detail::dpm_expm1_plus(h);
    const double h0 = st.now.log_snr() - lambda_g;
    const Tensor e0 = detail::diff_divided(p.x0, mg, h0);
    const bool midpoint = options.solver_type() == "midpoint";
    if (order == 2 || midpoint) {
      detail::add_scaled_(x_next, e0,
                          order == 2 && midpoint ? 0.5 * a * detail::dpm_phi1(h) * h : a * em);
      return {x_next, p};
    }
    const double h1 = history.times[n - 1].log_snr() - lambda_g;
    const Tensor e1 = detail::diff_divided(history.preds[n - 1].x0, mg, h1);
    const double inv = 1.0 / (h0 - h1);
    Tensor first = detail::scaled(e1, h0);
    detail::sub_scaled_(first, e0, h1);
    detail::add_scaled_(x_next, first, a * em * inv);
    detail::sub_scaled_(x_next, e0 - e1, 2.0 * a * (em - 0.5 * h * h) * inv);
    return {x_next, p};
  }
};

DIFFUSE_REGISTER_SAMPLER(DpmSolverPPSinglestepSampler, "dpm_solver_pp_singlestep",
                         "DPM-Solver++ singlestep on grid points (diffusers DPMSolverSinglestepScheduler), order 1-3");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2s, "dpmpp_2s", "dpm_solver_pp_singlestep", (Config{{"order", "2"}}),
                               "DPM++ 2S on grid points: dpm_solver_pp_singlestep order=2");

}  // namespace diffuse
