// SPDX-License-Identifier: Apache-2.0
// Layers for a model that is about to be loaded (private to libdiffuse_training). LibTorch's
// Linear and Conv2d constructors draw kaiming-uniform weights from the global generator (about
// 5 ns a weight on one core: 0.15 s for DiT-S/2's Linear layers, several seconds for DiT-XL/2),
// which a load then overwrites. While an UnloadedScope lives on the calling thread, linear_layer
// and conv2d_layer build the layer without those draws and give it untouched memory
// (uninitialised: the loader must set every weight, strictly); otherwise they are the plain
// constructors. The models' own initialisation (DiT's initialize_weights) asks building_unloaded().
#pragma once

#include <cstdint>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

namespace diffuse::detail {

class UnloadedScope {
 public:
  UnloadedScope();
  ~UnloadedScope();
  UnloadedScope(const UnloadedScope&) = delete;
  UnloadedScope& operator=(const UnloadedScope&) = delete;

 private:
  bool previous_;
};

/// Whether an UnloadedScope lives on this thread.
bool building_unloaded();

/// torch::nn::Linear(in, out), without initial weights inside an UnloadedScope.
torch::nn::Linear linear_layer(int64_t in, int64_t out);

/// torch::nn::Conv2d(o), without initial weights inside an UnloadedScope (one kernel a group is
/// drawn: LibTorch's fan computation needs a non-empty weight).
torch::nn::Conv2d conv2d_layer(const torch::nn::Conv2dOptions& o);

}  // namespace diffuse::detail
