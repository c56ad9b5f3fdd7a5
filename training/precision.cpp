// SPDX-License-Identifier: Apache-2.0
// Mixed precision of the trainer (training/precision.h).
#include "precision.h"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <diffuse/config.h>
#include <diffuse/training/trainer.h>

namespace diffuse {
namespace detail {

at::ScalarType autocast_dtype_for(Autocast value, const at::Device& device) {
  if (value == Autocast::off) return at::kFloat;
  check_enum(value, autocast_names(), "TrainerOptions.autocast");
  check(device.is_cpu() || device.is_cuda(), "TrainerOptions.autocast='", to_string(value),
        "' needs a CPU or CUDA model, the model is on ", device);
  check(value == Autocast::bf16 || device.is_cuda(),
        "TrainerOptions.autocast='fp16' needs a CUDA model (the model is on ", device,
        "); use bf16 on the CPU");
  return value == Autocast::bf16 ? at::kBFloat16 : at::kHalf;
}

}  // namespace detail

const std::vector<std::pair<std::string, Autocast>>& autocast_names() {
  static const std::vector<std::pair<std::string, Autocast>> names{
      {"off", Autocast::off}, {"bf16", Autocast::bf16}, {"fp16", Autocast::fp16}};
  return names;
}

Autocast parse_autocast(const std::string& name) {
  return parse_enum(name, autocast_names(), "TrainerOptions.autocast");
}

std::string to_string(Autocast autocast) { return enum_name(autocast, autocast_names()); }

namespace detail {

void LossScaler::unscale(std::vector<Tensor>& params) const {
  torch::NoGradGuard no_grad;
  for (auto& p : params)
    if (p.grad().defined()) p.mutable_grad().mul_(1.0 / scale_);
}

bool LossScaler::update(double grad_norm) {
  if (!std::isfinite(grad_norm)) {
    scale_ *= 0.5;
    good_ = 0;
    return true;
  }
  if (++good_ >= kInterval) {
    scale_ *= 2.0;
    good_ = 0;
  }
  return false;
}

void LossScaler::save(torch::serialize::OutputArchive& ar) const {
  if (!scaled()) return;
  ar.write("loss_scale", c10::IValue(scale_));
  ar.write("loss_scale_good", c10::IValue(good_));
}

void LossScaler::load(torch::serialize::InputArchive& ar) {
  if (!scaled()) return;
  c10::IValue v;
  if (ar.try_read("loss_scale", v) && v.isDouble()) scale_ = v.toDouble();
  if (ar.try_read("loss_scale_good", v) && v.isInt()) good_ = v.toInt();
}

}  // namespace detail
}  // namespace diffuse
