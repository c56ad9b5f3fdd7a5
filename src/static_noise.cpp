// SPDX-License-Identifier: Apache-2.0
// detail::StaticNoise of <diffuse/cuda_graph.h>: device-agnostic, so compiled in every build.
#include <diffuse/cuda_graph.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>

namespace diffuse::detail {

void StaticNoise::record(NoiseSource* source) {
  recording_ = true;
  source_ = source;
  shapes_.clear();
  options_.clear();
  buffers_.clear();
  next_ = 0;
}

void StaticNoise::allocate() {
  buffers_.clear();
  for (size_t i = 0; i < shapes_.size(); ++i)
    buffers_.push_back(at::zeros(shapes_[i], options_[i]));
  recording_ = false;
  next_ = 0;
}

void StaticNoise::refill(NoiseSource& source) {
  for (size_t i = 0; i < buffers_.size(); ++i)
    buffers_[i].copy_(source.randn(shapes_[i], options_[i]));
}

Tensor StaticNoise::randn(c10::IntArrayRef shape, const c10::TensorOptions& options) {
  if (recording_) {
    shapes_.emplace_back(shape.begin(), shape.end());
    options_.push_back(options);
    return source_ != nullptr ? source_->randn(shape, options) : at::zeros(shape, options);
  }
  check(next_ < buffers_.size(), "CudaGraphSampler: the sampler drew more noise (", next_ + 1,
        " draws) than during warm-up (", buffers_.size(),
        "); its draws must not depend on the data");
  const Tensor& b = buffers_[next_];
  check(b.sizes() == shape, "CudaGraphSampler: noise draw ", next_, " has shape ", shape,
        ", during warm-up it had ", b.sizes());
  ++next_;
  return b;
}

}  // namespace diffuse::detail
