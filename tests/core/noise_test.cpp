// SPDX-License-Identifier: Apache-2.0
// Noise sources and determinism: the torch stream reproduces PyTorch, per-sample noise does not
// depend on the batch size, a seed reproduces a run bit for bit, recorded noise replays.
#include "test_util.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <atomic>
#include <vector>

namespace diffuse {
namespace {

/// Forwards to another source and keeps a copy of every draw.
class RecordingNoise final : public NoiseSource {
 public:
  explicit RecordingNoise(std::unique_ptr<NoiseSource> inner) : inner_(std::move(inner)) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    Tensor t = inner_->randn(shape, options);
    draws.push_back(t.clone());
    return t;
  }
  std::vector<Tensor> draws;

 private:
  std::unique_ptr<NoiseSource> inner_;
};

void ExpectFloats(const Tensor& t, const std::vector<std::pair<int64_t, double>>& expected) {
  const Tensor flat = t.reshape({-1});
  for (const auto& [i, v] : expected) EXPECT_EQ(flat[i].item<double>(), v) << "element " << i;
}

TEST(TorchNoise, ReproducesPyTorchManualSeedStream) {
  // Golden values: PyTorch 1.13.1 (Debian python3-torch), printed with repr(float(v)) by
  // tests/reference/torch_noise.py:
  //   g = torch.Generator().manual_seed(0); a = torch.randn(6, generator=g); b = torch.randn(3,
  //   generator=g)
  // torch.manual_seed(0); torch.randn(6) gives the same a.
  auto noise = make_torch_noise(0);
  const Tensor a = noise->randn({6}, at::kFloat);
  ExpectFloats(a, {{0, 1.5409960746765137},
                   {1, -0.293428897857666},
                   {2, -2.1787893772125244},
                   {3, 0.5684312582015991},
                   {4, -1.0845223665237427},
                   {5, -1.3985954523086548}});
  const Tensor b = noise->randn({3}, at::kFloat);  // the stream continues
  ExpectFloats(b, {{0, 0.40334683656692505}, {1, 0.8380263447761536}, {2, -0.7192575931549072}});
}

TEST(TorchNoise, ReproducesPyTorchVectorisedPath) {
  // Tensors of >= 16 elements take PyTorch's vectorised normal path (a different stream layout).
  //   g = torch.Generator().manual_seed(0); b = torch.randn(32, generator=g); b[[0, 1, 15, 16, 31]]
  //   g = torch.Generator().manual_seed(123); torch.randn(2, 3, 4, generator=g).flatten()[[0, 5,
  //   23]]
  ExpectFloats(make_torch_noise(0)->randn({32}, at::kFloat), {{0, -1.1258398294448853},
                                                              {1, -1.152360200881958},
                                                              {15, -0.2472781538963318},
                                                              {16, -1.3526537418365479},
                                                              {31, -0.843676745891571}});
  ExpectFloats(make_torch_noise(123)->randn({2, 3, 4}, at::kFloat),
               {{0, 0.3373701870441437}, {5, 0.6603409647941589}, {23, -0.3378387987613678}});
}

TEST(TorchNoise, Float64DrawsAreTheFloat32StreamWidened) {
  const Tensor f = make_torch_noise(9)->randn({4, 5}, at::kFloat);
  const Tensor d = make_torch_noise(9)->randn({4, 5}, at::kDouble);
  EXPECT_EQ(d.scalar_type(), at::kDouble);
  EXPECT_TRUE(at::equal(d, f.to(at::kDouble)));
}

TEST(PerSampleNoise, RowIIsSeedPlusIAndIndependentOfBatchSize) {
  const Tensor four = randn({4, 3, 5}, /*seed=*/11);
  const Tensor one = randn({1, 3, 5}, /*seed=*/11);
  EXPECT_TRUE(at::equal(four.narrow(0, 0, 1), one));
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_TRUE(
        at::equal(four.narrow(0, i, 1), make_torch_noise(11 + i)->randn({1, 3, 5}, at::kFloat)))
        << i;
  // Rows differ from each other.
  EXPECT_FALSE(at::equal(four[0], four[1]));
}

// The rows are drawn on the intra-op threads (large draws): the same numbers on 1 and 2 threads,
// and the same as row-by-row draws.
TEST(PerSampleNoise, DrawsAreTheSameOnAnyThreadCount) {
  const int before = at::get_num_threads();
  std::vector<Tensor> draws;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    auto noise = make_per_sample_noise(5);
    draws.push_back(noise->randn({8, 4, 64, 64}, at::kFloat));  // 16K values per row
    draws.push_back(noise->randn({8, 4, 64, 64}, at::kFloat));  // the generators' second draw
  }
  // Under InferenceMode (as the CLI samples) the workers write the inference tensor too.
  {
    at::set_num_threads(2);
    c10::InferenceMode inference;
    draws.push_back(make_per_sample_noise(5)->randn({8, 4, 64, 64}, at::kFloat));
  }
  at::set_num_threads(before);
  EXPECT_TRUE(at::equal(draws[4], draws[0]));
  EXPECT_TRUE(at::equal(draws[0], draws[2]));
  EXPECT_TRUE(at::equal(draws[1], draws[3]));
  EXPECT_FALSE(at::equal(draws[0], draws[1]));
  for (int64_t i = 0; i < 8; ++i)
    EXPECT_TRUE(at::equal(draws[0].narrow(0, i, 1),
                          make_torch_noise(5 + i)->randn({1, 4, 64, 64}, at::kFloat)))
        << i;
}

struct NoisyRun {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  std::unique_ptr<Sampler> sampler = make_sampler("ddim", {{"eta", "1"}});  // stochastic
  Denoiser denoiser{[](const Tensor& x, const Tensor& t, const Conditioning&) {
    return x * 0.2 + at::sin(x) * 0.1 + t.view({-1, 1}) * 1e-4;
  }};
  Tensor operator()(int64_t batch, uint64_t seed,
                    std::shared_ptr<NoiseSource> noise = nullptr) const {
    SampleOptions o;
    o.num_steps = 6;
    o.seed = seed;
    o.noise = std::move(noise);
    return sample(*sampler, denoiser, *schedule, randn({batch, 7}, seed, at::kDouble), o);
  }
};

TEST(PerSampleNoise, SampleRowZeroIsIndependentOfBatchSize) {
  NoisyRun run;
  const Tensor b1 = run(1, 3), b4 = run(4, 3);
  EXPECT_TRUE(at::equal(b4.narrow(0, 0, 1), b1));
  EXPECT_TRUE(at::isfinite(b4).all().item<bool>());
}

TEST(Determinism, SameSeedIsBitwiseIdenticalOtherSeedIsNot) {
  NoisyRun run;
  EXPECT_TRUE(at::equal(run(3, 21), run(3, 21)));
  EXPECT_FALSE(at::equal(run(3, 21), run(3, 22)));
  // A fresh torch stream per run: the same seed gives the same run too.
  EXPECT_TRUE(at::equal(run(2, 1, make_torch_noise(5)), run(2, 1, make_torch_noise(5))));
}

TEST(ReplayNoise, ReplayingRecordedDrawsReproducesTheRun) {
  NoisyRun run;
  auto rec = std::make_shared<RecordingNoise>(make_per_sample_noise(8));
  const Tensor original = run(2, 8, rec);
  ASSERT_EQ(rec->draws.size(), 5u);  // one draw per step except the last, which lands on sigma = 0
  const Tensor replayed = run(2, 8, std::shared_ptr<NoiseSource>(make_replay_noise(rec->draws)));
  EXPECT_TRUE(at::equal(original, replayed));
  // Replaying other draws changes the result.
  std::vector<Tensor> zeros;
  for (const auto& d : rec->draws) zeros.push_back(at::zeros_like(d));
  EXPECT_FALSE(
      at::equal(original, run(2, 8, std::shared_ptr<NoiseSource>(make_replay_noise(zeros)))));
}

TEST(ReplayNoise, RunningOutAndShapeMismatchAreErrors) {
  auto replay = make_replay_noise({at::zeros({2, 3}), at::ones({2, 3})});
  EXPECT_TRUE(at::equal(replay->randn({2, 3}, at::kFloat), at::zeros({2, 3})));
  try {
    replay->randn({2, 4}, at::kFloat);
    ADD_FAILURE() << "expected a shape error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 4]"), std::string::npos) << msg;
  }
  EXPECT_TRUE(at::equal(replay->randn({2, 3}, at::kDouble), at::ones({2, 3}, at::kDouble)));
  try {
    replay->randn({2, 3}, at::kFloat);
    ADD_FAILURE() << "expected an error when the draws run out";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ran out"), std::string::npos) << e.what();
  }
  // A run that needs more draws than recorded fails with the same error.
  NoisyRun run;
  EXPECT_THROW(run(2, 8, std::shared_ptr<NoiseSource>(make_replay_noise({at::zeros({2, 7})}))),
               Error);
}

// Without SampleOptions::noise a run continues the per-sample generators past its starting noise
// randn(shape, seed): the same run as one given that source after the starting draw (diffusers'
// pipelines with a list of generators draw the latents, then the steps' noise, from them), and
// not the run that restarts the generators, whose first step would draw the starting noise again.
TEST(DefaultRunNoise, ContinuesTheGeneratorsPastTheStartingNoise) {
  NoisyRun run;
  const Tensor by_default = run(3, 12);
  auto continued = std::shared_ptr<NoiseSource>(make_per_sample_noise(12));
  EXPECT_TRUE(at::equal(continued->randn({3, 7}, at::kFloat), randn({3, 7}, 12)));
  EXPECT_TRUE(at::equal(by_default, run(3, 12, continued)));
  EXPECT_FALSE(at::equal(by_default, run(3, 12, make_per_sample_noise(12))));
  // The source itself: the first draw is the generators' second, for any later shape.
  auto source = detail::default_run_noise(12, {3, 7});
  auto reference = make_per_sample_noise(12);
  (void)reference->randn({3, 7}, at::kFloat);
  EXPECT_TRUE(at::equal(source->randn({3, 2}, at::kDouble), reference->randn({3, 2}, at::kDouble)));
  EXPECT_TRUE(at::equal(source->randn({3, 7}, at::kFloat), reference->randn({3, 7}, at::kFloat)));
  // add_randn_ continues the same way.
  auto add_source = detail::default_run_noise(12, {3, 7});
  Tensor x = at::ones({3, 7});
  add_source->add_randn_(x, 0.5);
  auto add_reference = make_per_sample_noise(12);
  (void)add_reference->randn({3, 7}, at::kFloat);
  Tensor y = at::ones({3, 7});
  add_reference->add_randn_(y, 0.5);
  EXPECT_TRUE(at::equal(x, y));
}

// The sources by name: per_sample and torch seeded seed + first_sample, philox's batch element i
// drawing as sample first_sample + i; an unknown name is an error naming it and the choices.
TEST(MakeNoise, NamesTheSourcesAndRejectsOthers) {
  const auto f = at::TensorOptions().dtype(at::kFloat);
  EXPECT_TRUE(at::equal(make_noise("per_sample", 5, 3)->randn({2, 9}, f),
                        make_per_sample_noise(8)->randn({2, 9}, f)));
  EXPECT_TRUE(at::equal(make_noise("per_sample", 5)->randn({5, 9}, f).narrow(0, 3, 2),
                        make_noise("per_sample", 5, 3)->randn({2, 9}, f)));
  EXPECT_TRUE(at::equal(make_noise("torch", 5, 3)->randn({2, 9}, f),
                        make_torch_noise(8)->randn({2, 9}, f)));
  // Philox: two draws of samples 3 and 4 are those of a batch of 5 from sample 0.
  auto whole = make_noise("philox", 5), part = make_noise("philox", 5, 3);
  for (int draw = 0; draw < 2; ++draw) {
    const Tensor w = whole->randn({5, 1030}, f), p = part->randn({2, 1030}, f);
    EXPECT_TRUE(at::equal(w.narrow(0, 3, 2), p)) << draw;
  }
  Tensor x = at::zeros({2, 1030}), y = at::zeros({5, 1030});
  make_philox_noise(5, 3)->add_randn_(x, 1.0);
  make_philox_noise(5)->add_randn_(y, 1.0);
  EXPECT_TRUE(at::equal(x, y.narrow(0, 3, 2)));
  EXPECT_FALSE(
      at::equal(make_philox_noise(5, 3)->randn({2, 9}, f), make_philox_noise(8)->randn({2, 9}, f)));
  EXPECT_EQ(noise_names(), (std::vector<std::string>{"per_sample", "torch", "philox"}));
  try {
    make_noise("mt19937", 0);
    ADD_FAILURE() << "expected an error for an unknown noise source";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    for (const char* part : {"'mt19937'", "per_sample", "torch", "philox"})
      EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }
}

TEST(PerSampleNoise, ZeroDimShapeIsAnError) {
  EXPECT_THROW(make_per_sample_noise(0)->randn({}, at::kFloat), Error);
}

}  // namespace
}  // namespace diffuse
