// SPDX-License-Identifier: Apache-2.0
// Concurrency: one sampler, one Denoiser (a torch module), one guidance and one set of correction
// objects with per-run state (Time Shift, Epsilon Scaling, CADS, Align Your Steps), shared by 4
// threads that call sample() at once with different seeds, give bit for bit what serial runs give.
// A correction without clone() is used in place, one run at a time: a second concurrent run is a
// clear error, and runs one after the other still work.
#include "test_util.h"

#include <atomic>
#include <future>
#include <thread>

#include <ATen/Parallel.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

namespace diffuse {
namespace {

constexpr int kThreads = 4;
constexpr int kRepeats = 3;

/// A small MLP network on [B, 6] states with a float class embedding [B, 4] (CADS noises it).
struct Net {
  torch::nn::Linear l1{nullptr}, l2{nullptr};
  Net() {
    torch::manual_seed(3);
    l1 = torch::nn::Linear(6 + 1 + 4, 32);
    l2 = torch::nn::Linear(32, 6);
    l1->to(at::kDouble);
    l2->to(at::kDouble);
  }
  Network network() const {
    std::shared_ptr<torch::nn::LinearImpl> a = l1.ptr(), b = l2.ptr();
    return [a, b](const Tensor& x, const Tensor& t, const Conditioning& c) {
      torch::NoGradGuard no_grad;  // grad mode is per thread
      const int64_t n = x.size(0);
      Tensor emb = c.value.defined() ? c.value : at::zeros({n, 4}, x.options());
      Tensor in = at::cat(
          {x, (t / 1000.0).reshape({n, 1}).to(x.scalar_type()), emb.to(x.scalar_type())}, 1);
      return b->forward(at::tanh(a->forward(in))) * 0.5 + x * 0.1;
    };
  }
};

/// A user correction whose per-run state changes every prediction: x0 is scaled by 1 + 1e-3 * (the
/// number of model calls so far in this run). Shared in place by concurrent runs, the counts would
/// mix; clone() gives each run its own.
class CallCounter final : public Correction {
 public:
  std::unique_ptr<Correction> clone() const override {
    return std::make_unique<CallCounter>(*this);
  }
  void reset() override { calls_ = 0; }
  void on_prediction(Prediction& p, const Tensor&, const StepContext&) override {
    p.x0 = p.x0 * (1.0 + 1e-3 * static_cast<double>(++calls_));
  }
  std::string name() const override { return "call_counter"; }
  Config to_config() const override { return {}; }

 private:
  int64_t calls_ = 0;
};

struct Case {
  std::string sampler;
  std::vector<std::string> corrections;
  bool guided = false;
};

class Concurrency : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

TEST_F(Concurrency, SharedSamplerDenoiserAndCorrectionsEqualSerialRuns) {
  const auto schedule = make_schedule("discrete");
  const Net net;
  const Denoiser denoiser(net.network());
  const std::vector<Case> setups = {
      {"ddim", {"time_shift:window=20,cutoff=100", "epsilon_scaling:b=1.02,k=0.001"}},
      {"ddpm", {"time_shift:window=10,variant=target_shift", "epsilon_scaling:b=1.01"}, true},
      {"euler_ancestral", {"condition_annealing:noise_scale=0.5"}, true},
      {"dpm_solver_pp_sde", {"time_shift:window=30,cutoff=300", "condition_annealing"}, true},
      {"dpm_solver_pp",
       {"schedule_optimisation:sigmas=14.6;6.1;3.0;1.4;0.6;0.2;0.03", "time_shift:window=10"}},
      {"heun", {"epsilon_scaling:b=1.005", "time_shift:window=6,variant=adm"}},
  };
  for (const Case& setup : setups) {
    const std::string what = setup.sampler + " + " + detail::join(setup.corrections);
    const auto sampler = sampler_from_spec(setup.sampler);
    // One options object whose corrections and guidance every run shares; each run copies it
    // only to set its own seed.
    SampleOptions shared;
    shared.num_steps = 25;
    for (const auto& spec : setup.corrections)
      shared.corrections.push_back(correction_from_spec(spec));
    shared.corrections.push_back(std::make_shared<CallCounter>());
    shared.cond.value = at::linspace(-1, 1, 3 * 4, at::kDouble).reshape({3, 4});
    if (setup.guided) {
      shared.guidance = make_guidance("cfg", {{"scale", "2.5"}});
      shared.uncond.value = at::zeros({3, 4}, at::kDouble);
    }
    auto run = [&](uint64_t seed) {
      SampleOptions o = shared;
      o.seed = seed;
      return sample(*sampler, denoiser, *schedule, randn({3, 6}, seed, at::kDouble), o);
    };
    std::vector<Tensor> serial;
    for (int i = 0; i < kThreads; ++i) serial.push_back(run(1000 + static_cast<uint64_t>(i)));
    // The corrections change the result (the test is not about identity corrections).
    SampleOptions plain = shared;
    plain.corrections.clear();
    plain.seed = 1000;
    EXPECT_FALSE(at::equal(
        serial[0], sample(*sampler, denoiser, *schedule, randn({3, 6}, 1000, at::kDouble), plain)))
        << what;
    EXPECT_FALSE(at::equal(serial[0], serial[1])) << what;

    std::vector<std::vector<Tensor>> parallel(kThreads);
    std::vector<std::string> errors(kThreads);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        at::set_num_threads(1);
        ++ready;
        while (ready < kThreads) std::this_thread::yield();  // start together
        try {
          for (int rep = 0; rep < kRepeats; ++rep)
            parallel[i].push_back(run(1000 + static_cast<uint64_t>(i)));
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      EXPECT_EQ(errors[i], "") << what << ", thread " << i;
      ASSERT_EQ(parallel[i].size(), static_cast<size_t>(kRepeats)) << what;
      for (const Tensor& x : parallel[i])
        EXPECT_TRUE(at::equal(x, serial[i])) << what << ", thread " << i;
    }
  }
}

/// A correction with per-run state and no clone(): it counts the model calls of the run.
class CountingCorrection final : public Correction {
 public:
  void reset() override { calls = 0; }
  void on_start(Tensor&, const StepContext&) override {
    if (started) started();
  }
  void on_prediction(Prediction&, const Tensor&, const StepContext&) override { ++calls; }
  std::string name() const override { return "counting"; }
  Config to_config() const override { return {}; }
  int64_t calls = 0;
  std::function<void()> started;
};

TEST_F(Concurrency, CorrectionWithoutCloneServesOneRunAtATime) {
  const auto schedule = make_schedule("discrete");
  const Denoiser denoiser(
      [](const Tensor& x, const Tensor&, const Conditioning&) { return x * 0.2; });
  const auto sampler = make_sampler("ddim");
  auto counting = std::make_shared<CountingCorrection>();
  SampleOptions o;
  o.num_steps = 5;
  o.corrections = {counting};
  // In place: the caller reads the run's state from its own object afterwards.
  sample(*sampler, denoiser, *schedule, randn({2, 3}, 0, at::kDouble), o);
  EXPECT_EQ(counting->calls, 5);
  // The same object listed twice in one run is fine.
  SampleOptions twice = o;
  twice.corrections = {counting, counting};
  sample(*sampler, denoiser, *schedule, randn({2, 3}, 0, at::kDouble), twice);
  EXPECT_EQ(counting->calls, 10);
  // A second run while the first one is inside the sampler: a clear error; the first run finishes.
  std::promise<void> inside, tried;
  std::shared_future<void> tried_f = tried.get_future().share();
  counting->started = [&] {
    inside.set_value();
    tried_f.wait();
  };
  std::thread first([&] {
    sample(*sampler, denoiser, *schedule, randn({2, 3}, 0, at::kDouble), o);
  });
  inside.get_future().wait();
  EXPECT_ERROR_NAMING(sample(*sampler, denoiser, *schedule, randn({2, 3}, 1, at::kDouble), o),
                      "'counting'");
  EXPECT_ERROR_NAMING(sample(*sampler, denoiser, *schedule, randn({2, 3}, 1, at::kDouble), o),
                      "clone()");
  tried.set_value();
  first.join();
  EXPECT_EQ(counting->calls, 5);
  // Released after the run (also after a failed one): the next run works.
  counting->started = nullptr;
  sample(*sampler, denoiser, *schedule, randn({2, 3}, 2, at::kDouble), o);
  EXPECT_EQ(counting->calls, 5);
  SampleOptions bad = o;
  bad.corrections = {counting, nullptr};
  EXPECT_ERROR_NAMING(sample(*sampler, denoiser, *schedule, randn({2, 3}, 2, at::kDouble), bad),
                      "null");
  sample(*sampler, denoiser, *schedule, randn({2, 3}, 2, at::kDouble), o);
  EXPECT_EQ(counting->calls, 5);
}

TEST_F(Concurrency, BuiltInCorrectionsCloneTheirOptions) {
  for (const char* spec :
       {"time_shift:window=12,cutoff=50,variant=adm", "epsilon_scaling:b=1.1,k=0.01",
        "condition_annealing:tau1=0.5,noise_scale=0.3", "schedule_optimisation:sigmas=10;1;0.1"}) {
    const auto c = correction_from_spec(spec);
    const auto copy = c->clone();
    ASSERT_NE(copy, nullptr) << spec;
    EXPECT_EQ(copy->name(), c->name());
    EXPECT_EQ(copy->to_config(), c->to_config()) << spec;
  }
}

}  // namespace
}  // namespace diffuse
