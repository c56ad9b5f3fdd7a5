// SPDX-License-Identifier: Apache-2.0
// Pluggable corrections: hooks that every sampler honours, each defaulting to the identity.
// Order per model call (methods.md §10): on_condition (per branch) -> network -> guidance ->
// on_prediction -> clipping/thresholding -> solver update. on_time runs before every step and may
// move the current time point; the solver then uses the moved point for both the network input and
// its coefficients. on_grid runs once, after the spacing built the grid.
#pragma once

#include <string>

#include <diffuse/config.h>
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
  virtual void on_time(const Tensor& /*x*/, TimePoint& /*now*/, const StepContext& /*step*/) {}
  virtual void on_condition(Conditioning& /*c*/, const StepContext& /*step*/) {}
  virtual void on_prediction(Prediction& /*p*/, const Tensor& /*x*/, const StepContext& /*step*/) {}
  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;
};

}  // namespace diffuse
