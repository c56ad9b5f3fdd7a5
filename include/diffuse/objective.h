// SPDX-License-Identifier: Apache-2.0
// Training objectives: per-example losses computed from a Network, the same NoiseSchedule and
// Parameterization objects the samplers use, and a batch of clean data.
//
// An objective is split in two so that losses can be checked by hand:
//   draw(...)      all randomness of one batch (times, noise, masks, ...), from one at::Generator,
//                  in a fixed, documented order;
//   evaluate(...)  the deterministic loss given those draws.
// loss(...) = evaluate(draw(...)). Implementations live in training/objectives/ (one file each,
// registered with DIFFUSE_REGISTER_OBJECTIVE, file stem = key) and include only ATen.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <ATen/core/Generator.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

namespace diffuse {

/// One batch of clean training data. `cond.value` holds class labels (int64 [B]) for
/// class-conditional models (the trainer applies label dropout before the objective sees it).
struct Batch {
  Tensor x0;
  Conditioning cond;
};

/// All randomness an objective uses for one batch. Objectives document which fields they fill.
struct ObjectiveDraw {
  Tensor t;                             ///< model times, shape [B], x0's dtype
  Tensor eps;                           ///< forward-process noise, shaped like x0
  std::map<std::string, Tensor> extra;  ///< e.g. "xi" (input perturbation), "mask" (masked DiT)
};

/// Per-example losses, shape [B]. `loss` is what is minimised; `terms` are its named parts (for
/// logging), also [B] each, e.g. {"dsm", "mae"} for the masked objective.
struct ObjectiveOutput {
  Tensor loss;
  std::map<std::string, Tensor> terms;
};

class Objective {
 public:
  static constexpr const char* kKindName = "objective";
  virtual ~Objective() = default;

  /// All randomness for one batch, from `gen` only.
  virtual ObjectiveDraw draw(const NoiseSchedule& s, const Batch& b, at::Generator& gen) const = 0;
  /// The per-example loss given the draws. Deterministic.
  virtual ObjectiveOutput evaluate(const Network& net, const NoiseSchedule& s, const Batch& b,
                                   const ObjectiveDraw& d) const = 0;

  /// draw + evaluate.
  ObjectiveOutput loss(const Network& net, const NoiseSchedule& s, const Batch& b,
                       at::Generator& gen) const {
    return evaluate(net, s, b, draw(s, b, gen));
  }

  /// What the trained network predicts; sample it with a Denoiser of this prediction type.
  virtual Parameterization prediction_type() const = 0;

  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;
};

/// Builds an objective from a registry name and options.
std::unique_ptr<Objective> make_objective(const std::string& name, const Config& options = {});
/// "key" or "key:option=value,...", e.g.
/// "denoising:prediction_type=v_prediction,weighting=min_snr".
std::unique_ptr<Objective> objective_from_spec(const std::string& spec);

}  // namespace diffuse

#define DIFFUSE_REGISTER_OBJECTIVE(Type, key, summary) \
  DIFFUSE_REGISTER(::diffuse::Objective, Type, key, summary)
#define DIFFUSE_REGISTER_OBJECTIVE_ALIAS(tag, alias, key, preset, summary) \
  DIFFUSE_REGISTER_ALIAS(::diffuse::Objective, tag, alias, key, preset, summary)
