// SPDX-License-Identifier: Apache-2.0
// Implementation of unloaded_layers.h.
#include "unloaded_layers.h"

#include <ATen/ATen.h>

namespace diffuse::detail {

namespace {

thread_local bool t_building_unloaded = false;

}  // namespace

UnloadedScope::UnloadedScope() : previous_(t_building_unloaded) { t_building_unloaded = true; }

UnloadedScope::~UnloadedScope() { t_building_unloaded = previous_; }

bool building_unloaded() { return t_building_unloaded; }

torch::nn::Linear linear_layer(int64_t in, int64_t out) {
  if (!t_building_unloaded) return torch::nn::Linear(in, out);
  torch::nn::Linear lin(torch::nn::LinearOptions(1, 0));  // no weight to draw
  lin->options = torch::nn::LinearOptions(in, out);
  lin->weight.set_data(at::empty({out, in}));
  lin->bias.set_data(at::empty({out}));
  return lin;
}

torch::nn::Conv2d conv2d_layer(const torch::nn::Conv2dOptions& o) {
  if (!t_building_unloaded) return torch::nn::Conv2d(o);
  torch::nn::Conv2dOptions none = o;
  none.in_channels(o.groups()).out_channels(o.groups());  // one kernel a group to draw
  torch::nn::Conv2d conv(none);
  conv->options.in_channels(o.in_channels()).out_channels(o.out_channels());
  const auto& k = *o.kernel_size();
  conv->weight.set_data(at::empty({o.out_channels(), o.in_channels() / o.groups(), k[0], k[1]}));
  if (conv->bias.defined()) conv->bias.set_data(at::empty({o.out_channels()}));
  return conv;
}

}  // namespace diffuse::detail
