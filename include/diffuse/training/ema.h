// SPDX-License-Identifier: Apache-2.0
// Exponential moving average of a module's parameters, with the warm-up of the decay used by
// TensorFlow's tf.train.ExponentialMovingAverage(num_updates=...) and CompVis latent-diffusion's
// LitEma (ldm/modules/ema.py): for the n-th update (n = 1, 2, ...)
//   decay_n = min(decay, (1 + n) / (10 + n))
//   ema     <- decay_n * ema + (1 - decay_n) * param
// so the average is not dominated by the random initialisation early in training. Buffers are
// copied, not averaged (they are not trained).
#pragma once

#include <cstdint>

#include <diffuse/config.h>  // diffuse::Error and its kinds, thrown here

namespace torch {
namespace nn {
class Module;
}  // namespace nn
}  // namespace torch

namespace diffuse {

/// decay_n for the n-th EMA update (n >= 1): min(decay, (1 + n) / (10 + n)) when `warmup`,
/// else `decay`. decay in [0, 1].
double ema_decay_at(double decay, int64_t n, bool warmup = true);

/// ema <- d * ema + (1 - d) * model for every parameter (matched by name); buffers are copied.
/// Both modules must have the same structure (ema = model->clone()).
void ema_update(torch::nn::Module& ema, const torch::nn::Module& model, double d);

}  // namespace diffuse
