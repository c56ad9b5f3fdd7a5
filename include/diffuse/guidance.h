// SPDX-License-Identifier: Apache-2.0
// How the conditional and unconditional network outputs combine. The sample() driver batches both
// branches into one network call and hands the two halves here, in the network's own output space
// (as diffusers does), before they are converted to (x0, eps).
#pragma once

#include <memory>
#include <string>

#include <diffuse/config.h>
#include <diffuse/registry.h>
#include <diffuse/tensor.h>

namespace diffuse {

struct StepContext;

/// (x0, eps) of one model evaluation (<diffuse/denoiser.h> has the same struct).
struct Prediction;
struct TimePoint;

class Guidance {
 public:
  static constexpr const char* kKindName = "guidance";
  virtual ~Guidance() = default;
  /// A new object with this one's options, for guidances with per-run state (APG's momentum):
  /// sample() runs the copy, so the object in SampleOptions can serve concurrent runs. Default:
  /// nullptr, a stateless guidance used as it is.
  virtual std::unique_ptr<Guidance> clone() const { return nullptr; }
  /// True when the unconditional branch is needed at this call (false lets the driver skip it).
  /// `step.call` is the point the call evaluates at.
  virtual bool needs_uncond(const StepContext& /*step*/) const { return true; }
  /// Combines the raw network outputs of the two branches (eps, v, x0 or flow velocity).
  virtual Tensor combine(const Tensor& cond_out, const Tensor& uncond_out,
                         const StepContext& step) const = 0;
  /// True for guidances that combine the branches' converted predictions instead
  /// (combine_predictions is then called, combine never): those that work on x0 or need the
  /// unconditional prediction in the update (CFG++).
  virtual bool on_predictions() const { return false; }
  /// The guided prediction of state x at the call point `at` from the two branches' predictions.
  /// Called only when on_predictions(); the default throws.
  virtual Prediction combine_predictions(const Prediction& cond, const Prediction& uncond,
                                         const Tensor& x, const TimePoint& at,
                                         const StepContext& step) const;
  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;
};

/// Builds a guidance from a registry name ("cfg") and options.
std::unique_ptr<Guidance> make_guidance(const std::string& name, const Config& options = {});

}  // namespace diffuse

#define DIFFUSE_REGISTER_GUIDANCE(Type, key, summary) \
  DIFFUSE_REGISTER(::diffuse::Guidance, Type, key, summary)
