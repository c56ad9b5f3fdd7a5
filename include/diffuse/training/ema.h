// SPDX-License-Identifier: Apache-2.0
// Exponential moving average of a module's parameters, with the warm-up of the decay used by
// TensorFlow's tf.train.ExponentialMovingAverage(num_updates=...) and CompVis latent-diffusion's
// LitEma (ldm/modules/ema.py): for the n-th update (n = 1, 2, ...)
//   decay_n = min(decay, (1 + n) / (10 + n))
//   ema     <- decay_n * ema + (1 - decay_n) * param
// so the average is not dominated by the random initialisation early in training. Buffers are
// copied, not averaged (they are not trained).
#pragma once

#include <algorithm>
#include <cstdint>

#include <torch/nn/module.h>

#include <diffuse/config.h>

namespace diffuse {

/// decay_n for the n-th EMA update (n >= 1): min(decay, (1 + n) / (10 + n)) when `warmup`,
/// else `decay`. decay in [0, 1].
inline double ema_decay_at(double decay, int64_t n, bool warmup = true) {
  check(decay >= 0 && decay <= 1, "EMA decay must be in [0, 1], got ", decay);
  check(n >= 1, "EMA update index must be >= 1, got ", n);
  if (!warmup) return decay;
  return std::min(decay, (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n)));
}

/// ema <- d * ema + (1 - d) * model for every parameter (matched by name); buffers are copied.
/// Both modules must have the same structure (ema = model->clone()).
inline void ema_update(torch::nn::Module& ema, const torch::nn::Module& model, double d) {
  torch::NoGradGuard no_grad;
  auto src = model.named_parameters(/*recurse=*/true);
  auto dst = ema.named_parameters(/*recurse=*/true);
  check(src.size() == dst.size(), "EMA update: the EMA model has ", dst.size(), " parameters, the model ",
        src.size());
  for (const auto& item : src) {
    const at::Tensor* e = dst.find(item.key());
    check(e != nullptr, "EMA update: parameter '", item.key(), "' is missing from the EMA model");
    at::Tensor et = *e;
    et.mul_(d).add_(item.value().detach(), 1.0 - d);
  }
  auto sbuf = model.named_buffers(/*recurse=*/true);
  auto dbuf = ema.named_buffers(/*recurse=*/true);
  for (const auto& item : sbuf) {
    const at::Tensor* e = dbuf.find(item.key());
    check(e != nullptr, "EMA update: buffer '", item.key(), "' is missing from the EMA model");
    at::Tensor et = *e;
    et.copy_(item.value());
  }
}

}  // namespace diffuse
