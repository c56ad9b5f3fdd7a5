// SPDX-License-Identifier: Apache-2.0
// Adaptive Dormand-Prince 5(4) ("dopri5") for the probability-flow ODE: each grid interval is
// integrated with as many Runge-Kutta steps as the error control needs (Dormand & Prince 1980,
// "A family of embedded Runge-Kutta formulae"; the step-size control of Hairer, Norsett & Wanner,
// "Solving Ordinary Differential Equations I", II.4). SiT's default sampler (willisma/SiT
// transport.Sampler.sample_ode: torchdiffeq's dopri5, atol 1e-6, rtol 1e-3) and ScoreSDE's
// RK45 probability-flow sampler are this method.
//
// The ODE is taken in one of two spaces, as Heun's (<diffuse/samplers/heun.h>):
//   flow: y = x / (alpha + sigma), tau = sigma / (alpha + sigma), dy/dtau = eps - x0. Any
//         schedule is a straight interpolation y = (1 - tau) x0 + tau eps in these variables;
//         on the flow schedule y = x and tau = sigma. The only form that starts at pure noise.
//   ve:   y = x / alpha against sigma_ve, dy/dsigma_ve = eps (EDM / k-diffusion).
// space=auto (default) is flow on rectified-flow schedules and ve elsewhere.
//
// One interval [now, next] is integrated as torchdiffeq's dopri5 does it, statement for
// statement in what decides the numbers: the first step from Hairer's starting-step heuristic (one
// extra model call), the Dormand-Prince tableau with first-same-as-last (6 calls per step
// attempt), the error ratio ||err / (atol + rtol max(|y0|, |y1|))|| in the RMS norm over every
// element of the batch, acceptance at ratio <= 1, the next step h min(10, max(0.9 ratio^-1/5,
// 0.2)) (no shrink limit after an accepted step). The step that would pass `next` is shortened
// to end on it: torchdiffeq's `step_t` option. SiT passes no such option, so its last step runs
// past t = 1 (the network is evaluated outside its trained range) and its result is the
// dopri5 dense-output interpolant at t = 1; the two differ by an error of the size the
// tolerance allows (measured in tests/samplers/sit_test.cpp).
//
// The end of the grid. The library's models are not fed sigma = 0 (the slope is singular there
// in the ve space, and most networks never saw it), so by default (clean_end=x0) the last
// interval is integrated down to the schedule's smallest trained level (at(t_min())), when it
// lies inside the interval, and the final prediction's x0 there is the result: an Euler step onto
// sigma = 0 with no extra call. clean_end=integrate integrates the last interval like every other,
// evaluating the network at sigma = 0: SiT's sampler, whose velocity network is trained on
// t in [0, 1] inclusive.
//
// Every interval starts afresh (Hairer's first step again), so a grid of N intervals costs at
// least 8 N model calls; for SiT's sampler use one interval (steps = 1) and clean_end=integrate.
// Network evaluations depend on the model: adaptive() is true.
// Checked against: SiT 947f95b with torchdiffeq 657943a (tests/samplers/sit_test.cpp, generator
// tests/reference/sit_samplers.py): the same results to 1e-12 in float64, with the same number of
// network calls.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>
#include <diffuse/samplers/heun.h>

namespace diffuse {

/// What the last interval does at sigma = 0 (see the file comment).
enum class Dopri5CleanEnd { x0, integrate };
/// Names of Dopri5CleanEnd ("x0", "integrate").
const EnumNames<Dopri5CleanEnd>& dopri5_clean_end_names();

struct Dopri5Options {
  /// Absolute tolerance. Default 1e-6 (SiT); finite and >= 0, and atol + rtol > 0.
  TORCH_ARG(double, atol) = 1e-6;
  /// Relative tolerance. Default 1e-3 (SiT); finite and >= 0.
  TORCH_ARG(double, rtol) = 1e-3;
  /// The variables of the ODE: flow, ve, or auto (default: flow on rectified-flow schedules, ve
  /// elsewhere); the names of heun_space_names().
  TORCH_ARG(HeunSpace, space) = HeunSpace::automatic;
  /// The last interval onto sigma = 0: x0 (default: stop at the smallest trained level, take x0)
  /// or integrate (evaluate the network at sigma = 0, as SiT).
  TORCH_ARG(Dopri5CleanEnd, clean_end) = Dopri5CleanEnd::x0;
  /// Step attempts allowed per grid interval before the run fails with an error naming the
  /// interval and the step size reached. Default 10000; >= 1.
  TORCH_ARG(int64_t, max_steps) = 10000;
};

class Dopri5Sampler final : public Sampler {
 public:
  explicit Dopri5Sampler(Dopri5Options o = {});
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "dopri5"; }
  bool adaptive() const override { return true; }
  /// A lower bound: one call per interval (an interval onto sigma = 0 that starts at or below
  /// the smallest trained level makes only that one; any other makes at least 8).
  int64_t model_calls(int64_t num_steps) const override { return num_steps; }

  Dopri5Options options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
