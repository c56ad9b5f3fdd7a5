// SPDX-License-Identifier: Apache-2.0
// SampleOptions::check_finite without a host sync per network call: sample() records one device
// flag per call and reads them once after the loop. These tests pin what that must keep: the
// error names the first bad step (not a later one), the loop really is not interrupted per call,
// the test is exact (huge finite outputs are not NaN/Inf), and a sampler or correction that fails
// because of the NaN does not hide it.
#include "test_util.h"

#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace diffuse {
namespace {

constexpr int64_t kSteps = 6;

struct FiniteRun {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  Tensor noise = randn({2, 3, 4}, 0);
  SampleOptions options;
  TimeGrid grid;
  FiniteRun() {
    options.num_steps = kSteps;
    grid = make_grid(*schedule, options);
  }
  /// An eps network that returns `bad` in one entry at the steps listed in `bad_steps` and counts
  /// its calls.
  Denoiser network(std::vector<int64_t> bad_steps, double bad,
                   std::shared_ptr<int64_t> calls) const {
    std::vector<double> bad_t;
    for (int64_t i : bad_steps) bad_t.push_back(grid[static_cast<size_t>(i)].t);
    return Denoiser([bad_t, bad, calls](const Tensor& x, const Tensor& t, const Conditioning&) {
      ++*calls;
      Tensor out = x * 0.1;
      const double now = t[0].item<double>();
      for (double b : bad_t)
        if (now == b) out.view({-1})[1] = bad;
      return out;
    });
  }
};

TEST(FiniteCheck, NamesTheFirstBadStepOfSeveral) {
  for (const char* spec : {"ddim", "dpmpp_2m", "euler", "euler_ancestral", "dpmpp_2m_sde"}) {
    for (double bad :
         {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
          -std::numeric_limits<double>::infinity()}) {
      FiniteRun r;
      auto calls = std::make_shared<int64_t>(0);
      const Denoiser d = r.network({2, 4}, bad, calls);
      const std::string msg = testing::error_of(
          [&] { sample(*make_sampler(spec), d, *r.schedule, r.noise, r.options); });
      EXPECT_NE(msg.find("NaN/Inf output at step 2 of 6"), std::string::npos)
          << spec << ": " << msg;
      EXPECT_EQ(msg.find("step 4"), std::string::npos) << spec << ": " << msg;
    }
  }
}

TEST(FiniteCheck, TheLoopIsNotInterruptedPerCall) {
  // The deferred check reads the flags after the loop: every step still runs (a check that read
  // each output on the host would stop at the first bad call, after 2 calls).
  FiniteRun r;
  auto calls = std::make_shared<int64_t>(0);
  int64_t steps_seen = 0;
  r.options.on_step = [&steps_seen](const StepInfo&) { ++steps_seen; };
  const Denoiser d = r.network({1}, std::numeric_limits<double>::quiet_NaN(), calls);
  EXPECT_ERROR_NAMING(sample(*make_sampler("ddim"), d, *r.schedule, r.noise, r.options),
                      "at step 1 of 6");
  EXPECT_EQ(*calls, kSteps);
  EXPECT_EQ(steps_seen, kSteps);
  // make_model_fn without a log keeps the immediate check: it throws at the bad call itself.
  *calls = 0;
  SampleContext ctx;
  ctx.schedule = r.schedule.get();
  const ModelFn fn = make_model_fn(d, r.options, {});
  EXPECT_ERROR_NAMING(make_sampler("ddim")->sample(fn, r.noise, r.grid, ctx), "at step 1 of 6");
  EXPECT_EQ(*calls, 2);
}

TEST(FiniteCheck, HugeFiniteOutputsAreNotReported) {
  // 24 entries of 3e38 sum past the float32 range: a check on a plain float32 sum would call this
  // output non-finite. The network ignores x, so its outputs stay finite whatever x becomes.
  FiniteRun r;
  const Denoiser d(
      [](const Tensor& x, const Tensor&, const Conditioning&) { return at::full_like(x, 3e38); });
  // The outputs are finite, so the per-call check stays silent; the update itself overflows
  // (x0 = (x - sigma * 3e38) / alpha), which the once-per-run result check reports as the
  // sampler's overflow, not as a bad network output.
  const std::string huge32 =
      testing::error_of([&] { sample(*make_sampler("ddim"), d, *r.schedule, r.noise, r.options); });
  EXPECT_EQ(huge32.find("network returned"), std::string::npos) << huge32;
  EXPECT_NE(huge32.find("ddim update overflowed"), std::string::npos) << huge32;
  // float64 outputs too, and the check is still on: one NaN among huge values is found.
  const Denoiser d64([](const Tensor& x, const Tensor&, const Conditioning&) {
    Tensor out = at::full_like(x, 1e308);
    return out;
  });
  const std::string huge64 = testing::error_of(
      [&] { sample(*make_sampler("ddim"), d64, *r.schedule, r.noise.to(at::kDouble), r.options); });
  EXPECT_EQ(huge64.find("network returned"), std::string::npos) << huge64;
  EXPECT_NE(huge64.find("ddim update overflowed"), std::string::npos) << huge64;
  auto calls = std::make_shared<int64_t>(0);
  const Denoiser nan64([](const Tensor& x, const Tensor&, const Conditioning&) {
    Tensor out = at::full_like(x, 1e308);
    out.view({-1})[5] = std::numeric_limits<double>::quiet_NaN();
    return out;
  });
  EXPECT_ERROR_NAMING(
      sample(*make_sampler("ddim"), nan64, *r.schedule, r.noise.to(at::kDouble), r.options),
      "at step 0 of 6");
}

/// Fails as soon as the state is not finite (as a sampler or correction might on NaN input).
class FailsOnNaN final : public Correction {
 public:
  void on_time(const Tensor& x, StepContext& step) override {
    check(at::isfinite(x).all().item<bool>(), "fails_on_nan: state not finite at step ",
          step.index);
  }
  std::string name() const override { return "fails_on_nan"; }
  Config to_config() const override { return {}; }
};

TEST(FiniteCheck, AFailureCausedByTheNaNReportsTheNaN) {
  FiniteRun r;
  auto calls = std::make_shared<int64_t>(0);
  const Denoiser d = r.network({3}, std::numeric_limits<double>::quiet_NaN(), calls);
  r.options.corrections.push_back(std::make_shared<FailsOnNaN>());
  const std::string msg =
      testing::error_of([&] { sample(*make_sampler("ddim"), d, *r.schedule, r.noise, r.options); });
  EXPECT_NE(msg.find("NaN/Inf output at step 3 of 6"), std::string::npos) << msg;
  EXPECT_EQ(*calls, 4);  // the correction stopped the run at step 4, before the end
  // Without a bad output the correction's own error is untouched.
  FiniteRun ok;
  ok.options.corrections.push_back(std::make_shared<FailsOnNaN>());
  EXPECT_NO_THROW(
      sample(*make_sampler("ddim"),
             Denoiser([](const Tensor& x, const Tensor&, const Conditioning&) { return x * 0.1; }),
             *ok.schedule, ok.noise, ok.options));
  // With check_finite off the NaN is not looked for: the correction's error comes through.
  r.options.check_finite = false;
  EXPECT_ERROR_NAMING(sample(*make_sampler("ddim"), d, *r.schedule, r.noise, r.options),
                      "fails_on_nan");
}

TEST(FiniteCheck, GuidedBatchNamesTheStep) {
  FiniteRun r;
  auto calls = std::make_shared<int64_t>(0);
  const Denoiser d = r.network({2, 5}, std::numeric_limits<double>::infinity(), calls);
  r.options.guidance = make_guidance("cfg", {{"scale", "2"}});
  EXPECT_ERROR_NAMING(sample(*make_sampler("dpmpp_2m"), d, *r.schedule, r.noise, r.options),
                      "at step 2 of 6");
  EXPECT_EQ(*calls, kSteps);
}

}  // namespace
}  // namespace diffuse
