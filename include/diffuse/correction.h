// SPDX-License-Identifier: Apache-2.0
// Pluggable corrections: hooks that every sampler honours, each defaulting to the identity, so a
// correction overrides only what it needs and works with every sampler.
//
// When each hook runs (the composition order; methods.md §10). Corrections run in list order at
// every hook.
//   on_grid       once, after the spacing built the grid (schedule optimisation: Align Your Steps)
//   on_start      once, on the initial state before step 0 (first-step x0 estimators: SingDiffusion)
//   per step:
//     on_time     before the step; may move step.now (coupled: the network input AND the solver
//                 coefficients use it, Time Shift) and/or step.next (the step's target)
//     per model call inside the step (a multi-stage solver calls the model several times):
//       on_condition  per guidance branch (step.branch), before the network (CADS)
//       network (both branches in one batched call) -> guidance -> conversion to (x0, eps)
//       on_prediction after guidance, before clipping/thresholding (Epsilon Scaling)
//       clipping / thresholding -> solver update
//   on_finish     once, on the final state (last-step correction functions: Residual Learning)
// reset() runs at the start of every run. Corrections may keep per-run state between hooks, so one
// correction object serves one run at a time; samplers stay stateless.
#pragma once

#include <memory>
#include <string>

#include <diffuse/config.h>
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

namespace diffuse {

struct StepContext;
struct Conditioning;
struct Prediction;

class Correction {
 public:
  static constexpr const char* kKindName = "correction";
  virtual ~Correction() = default;
  virtual void reset() {}
  virtual void on_grid(TimeGrid& /*grid*/, const NoiseSchedule& /*s*/) {}
  /// `x` is the initial state at step.now = grid[0] (the first step's context).
  virtual void on_start(Tensor& /*x*/, const StepContext& /*step*/) {}
  virtual void on_time(const Tensor& /*x*/, StepContext& /*step*/) {}
  virtual void on_condition(Conditioning& /*c*/, const StepContext& /*step*/) {}
  virtual void on_prediction(Prediction& /*p*/, const Tensor& /*x*/, const StepContext& /*step*/) {}
  /// `x` is the final state; `step` is the last step's context (step.next = the landing point).
  virtual void on_finish(Tensor& /*x*/, const StepContext& /*step*/) {}
  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;
};

/// Builds a correction from a registry name and options, or from "name:key=value,...".
inline std::unique_ptr<Correction> make_correction(const std::string& name, const Config& options = {}) {
  return Registry<Correction>::get().make(name, options);
}
inline std::unique_ptr<Correction> correction_from_spec(const std::string& spec) {
  return Registry<Correction>::get().make_from_spec(spec);
}

}  // namespace diffuse

#define DIFFUSE_REGISTER_CORRECTION(Type, key, summary) DIFFUSE_REGISTER(::diffuse::Correction, Type, key, summary)
#define DIFFUSE_REGISTER_CORRECTION_ALIAS(tag, alias, key, preset, summary) \
  DIFFUSE_REGISTER_ALIAS(::diffuse::Correction, tag, alias, key, preset, summary)
