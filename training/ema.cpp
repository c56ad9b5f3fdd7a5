// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/ema.h>.
#include <diffuse/training/ema.h>

#include <algorithm>
#include <cstdint>

#include <torch/nn/module.h>

#include <diffuse/config.h>

namespace diffuse {

double ema_decay_at(double decay, int64_t n, bool warmup) {
  check(decay >= 0 && decay <= 1, "EMA decay must be in [0, 1], got ", decay);
  check(n >= 1, "EMA update index must be >= 1, got ", n);
  if (!warmup) return decay;
  return std::min(decay, (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n)));
}

void ema_update(torch::nn::Module& ema, const torch::nn::Module& model, double d) {
  torch::NoGradGuard no_grad;
  auto src = model.named_parameters(/*recurse=*/true);
  auto dst = ema.named_parameters(/*recurse=*/true);
  check(src.size() == dst.size(), "EMA update: the EMA model has ", dst.size(),
        " parameters, the model ", src.size());
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
