// SPDX-License-Identifier: Apache-2.0
// Pluggable corrections: hooks that every sampler honours, each defaulting to the identity, so a
// correction overrides only what it needs and works with every sampler.
//
// When each hook runs (the composition order). Corrections run in list order at
// every hook.
//   on_grid       once, after the spacing built the grid (schedule optimisation: Align Your Steps)
//   on_start      once, on the initial state before step 0 (first-step x0 estimators:
//   SingDiffusion) per step:
//     on_time     before the step; may move step.now (coupled: the network input AND the solver
//                 coefficients use it, Time Shift) and/or step.next (the step's target)
//     per model call inside the step (a multi-stage solver calls the model several times):
//       on_condition  per guidance branch (step.branch), before the network (CADS)
//       network (both branches in one batched call) -> guidance -> conversion to (x0, eps)
//       on_prediction after guidance, before clipping/thresholding (Epsilon Scaling)
//       clipping / thresholding -> solver update
//   on_finish     once, on the final state (last-step correction functions: Residual Learning)
// reset() runs at the start of every run. Corrections may keep per-run state between hooks.
//
// Concurrency. sample() runs every correction through a per-run copy made by clone() (the
// built-in corrections all provide one), so one correction object - like one sampler, schedule or
// denoiser, which are stateless - can serve any number of concurrent sample() calls from different
// threads, and each run gives what it gives alone (tests/samplers/concurrency_test.cpp). A
// correction without clone() (the default returns nullptr) is used in place, one run at a time: a
// run that starts while another run uses it throws a diffuse::Error naming it.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

namespace diffuse {

struct StepContext;
struct Conditioning;
struct Prediction;

namespace detail {
class CorrectionRun;
/// The in-use mark of a correction without clone(); copies of a correction start unmarked.
struct CorrectionBusy {
  std::atomic<bool> busy{false};
  CorrectionBusy() = default;
  CorrectionBusy(const CorrectionBusy&) {}
  CorrectionBusy& operator=(const CorrectionBusy&) { return *this; }
};
}  // namespace detail

class Correction {
 public:
  static constexpr const char* kKindName = "correction";
  virtual ~Correction() = default;
  /// A new object with this one's options for one run (its per-run state need not be copied:
  /// reset() is called on it before the run). sample() runs the copy, so the object in
  /// SampleOptions can be shared by concurrent runs. Default: nullptr, no copy - the object itself
  /// serves one run at a time (see the file comment). Override it as
  /// `return std::make_unique<MyCorrection>(*this);`.
  virtual std::unique_ptr<Correction> clone() const { return nullptr; }
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

 private:
  friend class detail::CorrectionRun;
  detail::CorrectionBusy busy_;
};

namespace detail {

/// The corrections of one run, in list order: a clone() of each that has one, otherwise the object
/// itself, marked in use until the end of the run (another run that finds the mark throws). Every
/// one is reset(). `who` names the caller in errors.
class CorrectionRun {
 public:
  CorrectionRun(const std::vector<std::shared_ptr<Correction>>& list, const char* who);
  ~CorrectionRun() { release(); }
  CorrectionRun(const CorrectionRun&) = delete;
  CorrectionRun& operator=(const CorrectionRun&) = delete;
  /// The objects the run's hooks are called on.
  const std::vector<Correction*>& get() const { return run_; }

 private:
  void release();
  std::vector<std::unique_ptr<Correction>> copies_;
  std::vector<Correction*> run_, marked_;
};

}  // namespace detail

/// Builds a correction from a registry name and options, or from "name:key=value,...".
std::unique_ptr<Correction> make_correction(const std::string& name, const Config& options = {});
std::unique_ptr<Correction> correction_from_spec(const std::string& spec);

}  // namespace diffuse

#define DIFFUSE_REGISTER_CORRECTION(Type, key, summary) \
  DIFFUSE_REGISTER(::diffuse::Correction, Type, key, summary)
#define DIFFUSE_REGISTER_CORRECTION_ALIAS(tag, alias, key, preset, summary) \
  DIFFUSE_REGISTER_ALIAS(::diffuse::Correction, tag, alias, key, preset, summary)
