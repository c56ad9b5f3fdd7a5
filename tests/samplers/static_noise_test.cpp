// SPDX-License-Identifier: Apache-2.0
// The pre-drawn noise behind CudaGraphSampler (include/diffuse/cuda_graph.h), on the CPU: record
// the draws of one run, replay them from static buffers refilled from another seed, and the result
// equals the eager run with that seed, bit for bit, for every registered sampler. (The graph
// capture itself needs CUDA: tests/gpu.)
#include <diffuse/cuda_graph.h>

#include "test_util.h"

namespace diffuse {
namespace {

struct Harness {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  Denoiser denoiser{[](const Tensor& x, const Tensor& t, const Conditioning&) {
    return x * 0.3 + at::tanh(x) * 0.2 + t.view({-1, 1, 1}) * 2e-4;
  }};
  SampleOptions options(uint64_t seed, std::shared_ptr<NoiseSource> noise = nullptr) const {
    SampleOptions o;
    o.num_steps = 5;
    o.seed = seed;
    o.noise = std::move(noise);
    return o;
  }
};

TEST(StaticNoise, ReplayedDrawsReproduceTheEagerRunOfEverySampler) {
  Harness s;
  int stochastic = 0;
  for (const std::string& name : distinct_sampler_names()) {
    SCOPED_TRACE(name);
    auto sampler = sampler_from_spec(name);
    const Tensor noise = randn({3, 2, 4}, 11, at::TensorOptions().dtype(at::kFloat));
    const Tensor eager = sample(*sampler, s.denoiser, *s.schedule, noise, s.options(7));

    auto sn = std::make_shared<detail::StaticNoise>();
    auto warm = make_per_sample_noise(0);
    sn->record(warm.get());
    const Tensor warm_run = sample(*sampler, s.denoiser, *s.schedule, noise, s.options(0, sn));
    sn->allocate();
    EXPECT_EQ(sn->draws() > 0, sampler->is_stochastic());
    if (sampler->is_stochastic()) {
      ++stochastic;
      EXPECT_FALSE(at::equal(warm_run, eager));  // seed 0 != seed 7: the replay below must refill
    }
    // The eager run's draws: seed 7's per-sample generators past the starting noise's draw.
    auto source = make_per_sample_noise(7);
    (void)source->randn(noise.sizes(), at::kFloat);
    sn->refill(*source);
    sn->rewind();
    const Tensor replayed = sample(*sampler, s.denoiser, *s.schedule, noise, s.options(0, sn));
    EXPECT_EQ(sn->consumed(), sn->draws());
    EXPECT_TRUE(at::equal(replayed, eager)) << (replayed - eager).abs().max().item<double>();
  }
  EXPECT_GE(stochastic, 3);  // ddpm, euler_ancestral, dpm_solver_pp_sde at least
}

TEST(StaticNoise, DrawsThatDifferFromTheRecordingAreErrors) {
  Harness s;
  auto sampler = sampler_from_spec("euler_ancestral");
  auto sn = std::make_shared<detail::StaticNoise>();
  sn->record(nullptr);  // zeros while recording
  (void)sample(*sampler, s.denoiser, *s.schedule, randn({2, 2, 4}, 1), s.options(0, sn));
  sn->allocate();
  ASSERT_GT(sn->draws(), 0u);
  // Another batch size: the first draw's shape differs; the message names both shapes.
  const std::string msg = testing::error_of([&] {
    sample(*sampler, s.denoiser, *s.schedule, randn({3, 2, 4}, 1), s.options(0, sn));
  });
  EXPECT_NE(msg.find("[3, 2, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 2, 4]"), std::string::npos) << msg;
  // More steps than recorded: runs out of buffers.
  sn->rewind();
  SampleOptions longer = s.options(0, sn);
  longer.num_steps = 12;
  EXPECT_ERROR_NAMING(sample(*sampler, s.denoiser, *s.schedule, randn({2, 2, 4}, 1), longer),
                      "more noise");
}

}  // namespace
}  // namespace diffuse
