// SPDX-License-Identifier: Apache-2.0
// The contract every registered sampler meets, run over Registry<Sampler> (keys and aliases), so a
// sampler added in its own file is covered with no test edits. No per-key special cases: what a
// sampler may differ in is asked through its interface (is_stochastic, model_calls, adaptive).
#include "test_util.h"

#include <atomic>
#include <cctype>
#include <thread>

namespace diffuse {
namespace {

/// Counts draws, then forwards to a per-sample source.
class CountingNoise final : public NoiseSource {
 public:
  explicit CountingNoise(uint64_t seed) : inner_(make_per_sample_noise(seed)) {}
  Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    ++calls;
    return inner_->randn(shape, options);
  }
  int64_t calls = 0;

 private:
  std::unique_ptr<NoiseSource> inner_;
};

constexpr int64_t kSteps = 6;

struct Harness {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  std::shared_ptr<std::atomic<int64_t>> network_calls = std::make_shared<std::atomic<int64_t>>(0);
  // A smooth eps-predictor that depends on x and t; pure, so safe from many threads.
  Denoiser denoiser() const {
    auto counter = network_calls;
    return Denoiser([counter](const Tensor& x, const Tensor& t, const Conditioning&) {
      ++*counter;
      const Tensor tt = t.view({-1, 1, 1});
      return x * 0.3 + at::tanh(x) * 0.2 + tt * 2e-4;
    });
  }
  Tensor run(const Sampler& s, uint64_t seed, at::ScalarType dtype = at::kDouble, int64_t batch = 2,
             std::shared_ptr<NoiseSource> noise = nullptr) const {
    SampleOptions o;
    o.num_steps = kSteps;
    o.seed = seed;
    o.noise = std::move(noise);
    return sample(s, denoiser(), *schedule, randn({batch, 3, 4}, seed, dtype), o);
  }
};

class SamplerConformance : public ::testing::TestWithParam<std::string> {
 protected:
  /// The parameter is a sampler spec: a registered key or alias, optionally with options.
  std::unique_ptr<Sampler> make() const { return sampler_from_spec(GetParam()); }
  std::string registered_name() const {
    return detail::trim(GetParam().substr(0, GetParam().find(':')));
  }
  Harness h;
};

TEST_P(SamplerConformance, PreservesShapeAndDtypeWithoutNaN) {
  auto s = make();
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const Tensor out = h.run(*s, 1, dtype, 3);
    EXPECT_EQ(out.sizes(), c10::IntArrayRef({3, 3, 4})) << dtype;
    EXPECT_EQ(out.scalar_type(), dtype);
    EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << dtype;
  }
  // float32 and float64 runs agree (same noise stream, only rounding differs).
  testing::ExpectTensorNear(h.run(*s, 1, at::kFloat), h.run(*s, 1, at::kDouble), 1e-3, 1e-3,
                            "float32 vs float64");
}

TEST_P(SamplerConformance, SameSeedGivesBitwiseSameOutput) {
  auto s = make();
  EXPECT_TRUE(at::equal(h.run(*s, 4), h.run(*s, 4)));
}

TEST_P(SamplerConformance, ConfigRoundTripGivesTheSameSampler) {
  auto s = make();
  const Config c = s->to_config();
  auto again = make_sampler(registered_name(), c);
  EXPECT_EQ(again->to_config(), c);
  EXPECT_EQ(again->name(), s->name());
  // Also through the canonical key the sampler names itself.
  auto by_name = make_sampler(s->name(), c);
  EXPECT_EQ(by_name->to_config(), c);
  EXPECT_TRUE(at::equal(h.run(*s, 6), h.run(*again, 6)));
  EXPECT_TRUE(at::equal(h.run(*s, 6), h.run(*by_name, 6)));
  // The spec string form parses back too.
  EXPECT_EQ(sampler_from_spec(s->name() + ":" + format_config(c))->to_config(), c);
}

TEST_P(SamplerConformance, OneSamplerObjectIsSafeFromManyThreads) {
  auto s = make();
  constexpr int kThreads = 4;
  std::vector<Tensor> serial, parallel(kThreads);
  for (int i = 0; i < kThreads; ++i) serial.push_back(h.run(*s, 100 + i));
  std::vector<std::thread> threads;
  std::vector<std::string> errors(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      try {
        for (int rep = 0; rep < 3; ++rep) parallel[i] = h.run(*s, 100 + i);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(errors[i], "") << "thread " << i;
    ASSERT_TRUE(parallel[i].defined()) << "thread " << i;
    EXPECT_TRUE(at::equal(parallel[i], serial[i])) << "thread " << i;
  }
}

TEST_P(SamplerConformance, NoiseUseMatchesIsStochastic) {
  auto s = make();
  auto counting = std::make_shared<CountingNoise>(3);
  h.run(*s, 3, at::kDouble, 2, counting);
  if (s->is_stochastic()) {
    EXPECT_GT(counting->calls, 0) << "is_stochastic() is true but no noise was drawn";
  } else {
    EXPECT_EQ(counting->calls, 0) << "a deterministic sampler drew noise";
  }
  // Without a noise source: stochastic samplers fail with a clear error, deterministic ones run.
  SampleOptions o;
  const TimeGrid grid = make_spacing("linspace")->grid(*h.schedule, kSteps);
  const Denoiser d = h.denoiser();
  SampleContext ctx;
  ctx.schedule = h.schedule.get();
  ctx.noise = nullptr;
  const ModelFn fn = make_model_fn(d, o, {});
  const Tensor x = randn({2, 3, 4}, 0, at::kDouble) * grid.front().sigma;
  if (s->is_stochastic()) {
    try {
      s->sample(fn, x, grid, ctx);
      ADD_FAILURE() << "a stochastic sampler ran without a noise source";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("noise source"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_NO_THROW(s->sample(fn, x, grid, ctx));
  }
}

TEST_P(SamplerConformance, ModelCallsMatchesNetworkCalls) {
  auto s = make();
  for (int64_t n : {int64_t{1}, int64_t{2}, kSteps}) {
    h.network_calls->store(0);
    SampleOptions o;
    o.num_steps = n;
    sample(*s, h.denoiser(), *h.schedule, randn({1, 3, 4}, 0, at::kDouble), o);
    const int64_t expected = s->model_calls_on(make_grid(*h.schedule, o));
    if (s->adaptive())  // the count of one step per interval, the least an adaptive run makes
      EXPECT_GE(h.network_calls->load(), expected) << n << " steps";
    else
      EXPECT_EQ(h.network_calls->load(), expected) << n << " steps";
  }
}

TEST_P(SamplerConformance, OnStepSeesEveryStepInOrder) {
  auto s = make();
  std::vector<int64_t> seen;
  SampleOptions o;
  o.num_steps = kSteps;
  o.on_step = [&](const StepInfo& info) {
    seen.push_back(info.step.index);
    EXPECT_EQ(info.step.num_steps, kSteps);
    EXPECT_TRUE(info.x.defined());
  };
  sample(*s, h.denoiser(), *h.schedule, randn({1, 3, 4}, 0, at::kDouble), o);
  ASSERT_EQ(static_cast<int64_t>(seen.size()), kSteps);
  for (int64_t i = 0; i < kSteps; ++i) EXPECT_EQ(seen[i], i);
}

std::string ParamName(const ::testing::TestParamInfo<std::string>& info) {
  std::string out;
  for (char ch : info.param) out += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return out;
}

// Every key and alias at its defaults, plus non-default settings that switch on other code paths.
std::vector<std::string> Specs() {
  std::vector<std::string> specs = Registry<Sampler>::get().names();
  specs.push_back("ddim:eta=1");  // stochastic DDIM
  return specs;
}

INSTANTIATE_TEST_SUITE_P(AllSamplers, SamplerConformance, ::testing::ValuesIn(Specs()), ParamName);

// Every registered guidance: config round trip, and identical branches give that same output.
class GuidanceConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(GuidanceConformance, ConfigRoundTrip) {
  auto g = make_guidance(GetParam());
  const Config c = g->to_config();
  EXPECT_EQ(make_guidance(g->name(), c)->to_config(), c);
}

// A step past every warm-up (CFG-Zero*'s zero-init steps output zeros by design).
StepContext guidance_step() {
  StepContext st;
  st.index = 5;
  st.num_steps = 10;
  st.now = TimePoint{500, 0.6, 0.8};
  st.next = TimePoint{400, 0.7, std::sqrt(1 - 0.49)};
  st.call = st.now;
  return st;
}

TEST_P(GuidanceConformance, IdenticalBranchesGiveThatOutput) {
  auto g = make_guidance(GetParam());
  const StepContext st = guidance_step();
  const Tensor out = make_per_sample_noise(2)->randn({2, 3, 4}, at::kDouble);
  if (g->on_predictions()) {
    // A consistent prediction of x at the call point, given by both branches, comes back.
    const Tensor x0 = out * 0.5;
    const Tensor x = x0 * st.call.alpha + out * st.call.sigma;
    const Prediction p = g->combine_predictions({x0, out}, {x0, out}, x, st.call, st);
    testing::ExpectTensorNear(p.x0, x0, 1e-12, 1e-12, "x0");
    testing::ExpectTensorNear(p.eps, out, 1e-12, 1e-12, "eps");
    return;
  }
  testing::ExpectTensorNear(g->combine(out, out, st), out, 1e-12, 1e-12);
  const Tensor f = out.to(at::kFloat);
  const Tensor combined = g->combine(f, f, st);
  EXPECT_EQ(combined.scalar_type(), at::kFloat);
  testing::ExpectTensorNear(combined, f, 1e-5, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(AllGuidance, GuidanceConformance,
                         ::testing::ValuesIn(Registry<Guidance>::get().names()), ParamName);

}  // namespace
}  // namespace diffuse
