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

class Guidance {
 public:
  static constexpr const char* kKindName = "guidance";
  virtual ~Guidance() = default;
  /// True when the unconditional branch is needed at this step (false lets the driver skip it).
  virtual bool needs_uncond(const StepContext& /*step*/) const { return true; }
  virtual Tensor combine(const Tensor& cond_out, const Tensor& uncond_out,
                         const StepContext& step) const = 0;
  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;
};

/// Builds a guidance from a registry name ("cfg") and options.
std::unique_ptr<Guidance> make_guidance(const std::string& name, const Config& options = {});

}  // namespace diffuse

#define DIFFUSE_REGISTER_GUIDANCE(Type, key, summary) \
  DIFFUSE_REGISTER(::diffuse::Guidance, Type, key, summary)
