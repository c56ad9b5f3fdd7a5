// SPDX-License-Identifier: Apache-2.0
#include <diffuse/noise.h>

#include <algorithm>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

void NoiseSource::add_randn_(Tensor& x, double c) { add_scaled_(x, randn_like(x), c); }

namespace detail {

at::Generator cpu_generator(uint64_t seed) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return g;
}

}  // namespace detail

namespace {

// Draws float32 on the CPU and casts: the stream is the same on every device and for every dtype,
// so a seed gives the same noise in float32 and float64 runs (float64 runs see float32-rounded
// normals, as the float64 diffusers references do).
Tensor draw_cpu(at::Generator& g, c10::IntArrayRef shape, const c10::TensorOptions& options) {
  Tensor out = at::randn(shape, g, at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
  return out.to(options.device(), options.dtype().toScalarType());
}

class TorchNoise final : public NoiseSource {
 public:
  explicit TorchNoise(uint64_t seed) : gen_(detail::cpu_generator(seed)) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    return draw_cpu(gen_, shape, options);
  }

 private:
  at::Generator gen_;
};

class PerSampleNoise final : public NoiseSource {
 public:
  explicit PerSampleNoise(uint64_t seed) : seed_(seed) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    check(!shape.empty(), "per-sample noise needs a batch dimension, got a 0-d shape");
    const int64_t batch = shape[0];
    if (batch == 0) return at::empty(shape, options);  // nothing to draw (at::cat needs a part)
    while (static_cast<int64_t>(gens_.size()) < batch)
      gens_.push_back(detail::cpu_generator(seed_ + gens_.size()));
    // Each generator fills its own row of one float32 CPU buffer: at::randn(shape, g) is
    // empty(shape).normal_(0, 1, g), and a row of a contiguous buffer is itself contiguous, so
    // every row gets exactly the numbers a separate draw would (no per-row tensors, no cat); one
    // conversion to the caller's dtype and device at the end.
    // The rows are independent (one generator each), so they are drawn on the intra-op threads,
    // a row at a time: the same numbers whatever the thread count.
    // The workers run under the caller's thread-local state (InferenceMode, grad mode): normal_
    // is a dispatched op, and an inference tensor may only be written in inference mode.
    Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat).device(at::kCPU));
    const int64_t row = std::max<int64_t>(1, out.numel() / batch);
    const at::ThreadLocalState caller;
    at::parallel_for(0, batch, std::max<int64_t>(1, at::internal::GRAIN_SIZE / row),
                     [&](int64_t begin, int64_t end) {
                       at::ThreadLocalStateGuard state(caller);
                       for (int64_t i = begin; i < end; ++i)
                         out.narrow(0, i, 1).normal_(0.0, 1.0, gens_[i]);
                     });
    return out.to(options.device(), options.dtype().toScalarType());
  }

 private:
  uint64_t seed_;
  std::vector<at::Generator> gens_;
};

// A source continued past one draw of a given shape, made lazily at its first draw.
class AfterInitialDraw final : public NoiseSource {
 public:
  AfterInitialDraw(std::unique_ptr<NoiseSource> inner, c10::IntArrayRef initial)
      : inner_(std::move(inner)), initial_(initial.vec()) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    skip_initial();
    return inner_->randn(shape, options);
  }
  void add_randn_(Tensor& x, double c) override {
    skip_initial();
    inner_->add_randn_(x, c);
  }

 private:
  void skip_initial() {
    if (skipped_) return;
    skipped_ = true;
    (void)inner_->randn(initial_, at::TensorOptions().dtype(at::kFloat));
  }
  std::unique_ptr<NoiseSource> inner_;
  std::vector<int64_t> initial_;
  bool skipped_ = false;
};

class ReplayNoise final : public NoiseSource {
 public:
  explicit ReplayNoise(std::vector<Tensor> draws) : draws_(std::move(draws)) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    check(next_ < draws_.size(), "replay noise ran out after ", draws_.size(), " draws");
    const Tensor& d = draws_[next_];
    check(d.sizes() == shape, "replay noise draw ", next_, " has shape ", d.sizes(),
          " but the sampler asked for ", shape);
    ++next_;
    return d.to(options.device(), options.dtype().toScalarType());
  }

 private:
  std::vector<Tensor> draws_;
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<NoiseSource> make_torch_noise(uint64_t seed) {
  return std::make_unique<TorchNoise>(seed);
}
std::unique_ptr<NoiseSource> make_per_sample_noise(uint64_t seed) {
  return std::make_unique<PerSampleNoise>(seed);
}
const std::vector<std::string>& noise_names() {
  static const std::vector<std::string> names = {"per_sample", "torch", "philox"};
  return names;
}

std::unique_ptr<NoiseSource> make_noise(const std::string& name, uint64_t seed,
                                        uint64_t first_sample) {
  if (name == "per_sample") return make_per_sample_noise(seed + first_sample);
  if (name == "torch") return make_torch_noise(seed + first_sample);
  if (name == "philox") return make_philox_noise(seed, first_sample);
  throw ConfigError(detail::cat("the noise source must be ", detail::one_of(noise_names()),
                                ", got '", name, "'"));
}

namespace detail {
std::unique_ptr<NoiseSource> default_run_noise(uint64_t seed, c10::IntArrayRef initial_shape) {
  return std::make_unique<AfterInitialDraw>(make_per_sample_noise(seed), initial_shape);
}
}  // namespace detail

std::unique_ptr<NoiseSource> make_replay_noise(std::vector<Tensor> draws) {
  return std::make_unique<ReplayNoise>(std::move(draws));
}

}  // namespace diffuse
