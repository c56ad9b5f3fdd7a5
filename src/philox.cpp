// SPDX-License-Identifier: Apache-2.0
// make_philox_noise of <diffuse/noise.h>: the NoiseSource around the kernels of
// src/philox_kernels.cpp (Philox4x32-10 and a float32 Box-Muller).
#include <diffuse/noise.h>

#include <algorithm>
#include <memory>

#include <ATen/Parallel.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/detail/fused.h>
#include <diffuse/detail/philox.h>

namespace diffuse {

namespace {

class PhiloxNoise final : public NoiseSource {
 public:
  PhiloxNoise(uint64_t seed, uint64_t first_sample) : seed_(seed), first_(first_sample) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    check(!shape.empty(), "philox noise needs a batch dimension, got a 0-d shape");
    Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
    float* data = out.numel() > 0 ? out.data_ptr<float>() : nullptr;
    draw(data, shape[0], out.numel(),
         [](float* o, int64_t n, uint64_t seed, uint64_t i, uint64_t k, int64_t first) {
           detail::philox_normal(o, n, seed, i, k, first);
         });
    return out.to(options.device(), options.dtype().toScalarType());
  }

  // float32 CPU tensors in one pass: the normals go from the kernel's stack buffer into x.
  void add_randn_(Tensor& x, double c) override {
    if (!(detail::fused::can_fuse(x) && x.scalar_type() == at::kFloat && x.dim() > 0)) {
      NoiseSource::add_randn_(x, c);
      return;
    }
    const float cf = detail::fused::coefficient<float>(c);
    float* data = x.numel() > 0 ? x.data_ptr<float>() : nullptr;
    draw(data, x.size(0), x.numel(),
         [cf](float* o, int64_t n, uint64_t seed, uint64_t i, uint64_t k, int64_t first) {
           detail::philox_add_normal(o, cf, n, seed, i, k, first);
         });
  }

 private:
  // One draw over `batch` contiguous rows of numel / batch floats at data: kernel(row + first,
  // count, seed, sample, draw, first) on each segment. Counter-based: any segment of any sample
  // can be drawn on its own, so the segments run on the intra-op threads (at least 8192 normals
  // per task; the same numbers on any count).
  template <typename Kernel>
  void draw(float* data, int64_t batch, int64_t numel, const Kernel& kernel) {
    if (batch > 0 && numel > 0) {
      const int64_t per = numel / batch;
      constexpr int64_t kSegment = 2048;  // a multiple of 4: segments start at a block
      const int64_t segments = (per + kSegment - 1) / kSegment;
      const uint64_t seed = seed_, k = draw_, first_sample = first_;
      at::parallel_for(0, batch * segments, 4, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t i = t / segments, first = (t % segments) * kSegment;
          kernel(data + i * per + first, std::min(kSegment, per - first), seed,
                 first_sample + static_cast<uint64_t>(i), k, first);
        }
      });
    }
    ++draw_;
  }

  uint64_t seed_;
  uint64_t first_;  // the sample number of batch element 0
  uint64_t draw_ = 0;
};

}  // namespace

std::unique_ptr<NoiseSource> make_philox_noise(uint64_t seed, uint64_t first_sample) {
  return std::make_unique<PhiloxNoise>(seed, first_sample);
}

}  // namespace diffuse
