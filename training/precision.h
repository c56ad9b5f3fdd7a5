// SPDX-License-Identifier: Apache-2.0
// Mixed precision of the trainer (private to libdiffuse_training): TrainerOptions::autocast parsed
// into an autocast dtype, and the fp16 dynamic loss scaler (torch.cuda.amp.GradScaler's defaults:
// initial scale 2^16, halved on a step with non-finite gradients, which is skipped, doubled after
// 2000 consecutive finite steps). The scale is part of the checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <diffuse/tensor.h>

namespace diffuse {
enum class Autocast;  // <diffuse/training/trainer.h>
namespace detail {

/// TrainerOptions::autocast -> the autocast dtype (kFloat for "off"); checks the device.
at::ScalarType autocast_dtype_for(Autocast value, const at::Device& device);

class LossScaler {
 public:
  static constexpr double kInitialScale = 65536.0;
  static constexpr int64_t kInterval = 2000;

  LossScaler() = default;
  explicit LossScaler(at::ScalarType autocast_dtype) : dtype_(autocast_dtype) {}

  /// The autocast dtype (kFloat = no autocast).
  at::ScalarType dtype() const { return dtype_; }
  /// Whether the forward pass runs under autocast.
  bool autocast() const { return dtype_ != at::kFloat; }
  /// Whether the loss is scaled (fp16).
  bool scaled() const { return dtype_ == at::kHalf; }
  /// The scale the next step uses (1 unless fp16).
  double scale() const { return scaled() ? scale_ : 1.0; }

  /// Divides the gradients of `params` by the scale (after the data-parallel reduction).
  void unscale(std::vector<Tensor>& params) const;
  /// After the gradient norm is known: true if the step must be skipped (non-finite gradients;
  /// the scale is halved), otherwise counts a good step (and doubles the scale after kInterval).
  bool update(double grad_norm);

  void save(torch::serialize::OutputArchive& ar) const;
  /// Reads the scale if the checkpoint has one (a checkpoint written without fp16 has none).
  void load(torch::serialize::InputArchive& ar);

 private:
  at::ScalarType dtype_ = at::kFloat;
  double scale_ = kInitialScale;
  int64_t good_ = 0;
};

}  // namespace detail
}  // namespace diffuse
