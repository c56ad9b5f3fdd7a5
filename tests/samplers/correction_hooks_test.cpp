// SPDX-License-Identifier: Apache-2.0
// The correction hooks: who calls which hook, in which order, with what; the identity default.
#include "test_util.h"

#include <string>
#include <vector>

namespace diffuse {
namespace {

/// Logs every hook call; optionally moves the time or edits the final state.
class RecordingCorrection final : public Correction {
 public:
  explicit RecordingCorrection(std::vector<std::string>* log) : log_(log) {}
  void reset() override { log_->push_back("reset"); }
  void on_grid(TimeGrid& grid, const NoiseSchedule&) override {
    log_->push_back("grid:" + std::to_string(grid.size()));
  }
  void on_start(Tensor&, const StepContext& st) override {
    log_->push_back("start:" + std::to_string(st.index));
  }
  void on_time(const Tensor&, StepContext& st) override {
    log_->push_back("time:" + std::to_string(st.index));
    if (shift_to >= 0 && st.index == 1) st.now = schedule->at(shift_to);
  }
  void on_condition(Conditioning&, const StepContext& st) override {
    log_->push_back(st.branch == Branch::kCond ? "cond" : "uncond");
    EXPECT_NE(st.noise, nullptr);
  }
  void on_prediction(Prediction&, const Tensor&, const StepContext&) override {
    log_->push_back("pred");
  }
  void on_finish(Tensor& x, const StepContext& st) override {
    log_->push_back("finish:" + std::to_string(st.index));
    if (finish_add != 0) x = x + finish_add;
  }
  std::string name() const override { return "recording"; }
  Config to_config() const override { return {}; }

  double shift_to = -1;
  double finish_add = 0;
  const NoiseSchedule* schedule = nullptr;

 private:
  std::vector<std::string>* log_;
};

Tensor net(const Tensor& x, const Tensor& t, const Conditioning& c) {
  Tensor out = x * 0.1 + t.view({-1, 1}) * 1e-4;
  if (c.value.defined()) out = out + c.value.view({-1, 1}) * 0.01;
  return out;
}

TEST(CorrectionHooks, OrderOfCallsWithGuidance) {
  auto schedule = make_schedule("discrete");
  std::vector<std::string> log;
  auto rec = std::make_shared<RecordingCorrection>(&log);
  SampleOptions o;
  o.num_steps = 3;
  o.spacing = make_spacing("trailing");
  o.corrections = {rec};
  o.guidance = make_guidance("cfg", {{"scale", "3"}});
  o.cond.value = at::ones({2}, at::kDouble);
  o.uncond.value = at::zeros({2}, at::kDouble);
  sample(*make_sampler("ddim"), Denoiser(net), *schedule, randn({2, 4}, 0, at::kDouble), o);
  const std::vector<std::string> expected{"reset", "grid:4", "start:0", "time:0",  "cond", "uncond",
                                          "pred",  "time:1", "cond",    "uncond",  "pred", "time:2",
                                          "cond",  "uncond", "pred",    "finish:2"};
  EXPECT_EQ(log, expected);
}

TEST(CorrectionHooks, IdentityCorrectionIsBitExact) {
  auto schedule = make_schedule("discrete");
  for (const std::string& key : distinct_sampler_names()) {
    std::vector<std::string> log;
    SampleOptions plain;
    plain.num_steps = 6;
    plain.seed = 3;
    SampleOptions hooked = plain;
    hooked.corrections = {std::make_shared<RecordingCorrection>(&log)};
    const Tensor noise = randn({3, 5}, 1, at::kDouble);
    const Tensor a = sample(*make_sampler(key), Denoiser(net), *schedule, noise, plain);
    const Tensor b = sample(*make_sampler(key), Denoiser(net), *schedule, noise, hooked);
    EXPECT_TRUE(at::equal(a, b)) << key;
  }
}

TEST(CorrectionHooks, MovedTimeDrivesTheNetworkAndFinishEditsTheResult) {
  auto schedule = make_schedule("discrete");
  std::vector<std::string> log;
  auto rec = std::make_shared<RecordingCorrection>(&log);
  rec->schedule = schedule.get();
  rec->shift_to = 650;
  rec->finish_add = 2.5;
  testing::RecordingModel spy{[](const Tensor& x, const Tensor&) { return x * 0.1; }};
  SampleOptions o;
  o.num_steps = 3;
  o.spacing = make_spacing("trailing");
  o.corrections = {rec};
  const Tensor noise = randn({1, 2}, 0, at::kDouble);
  const Tensor shifted =
      sample(*make_sampler("ddim"), Denoiser(spy.network()), *schedule, noise, o);
  ASSERT_EQ(spy.calls->size(), 3u);
  EXPECT_EQ((*spy.calls)[1].t.item<double>(), 650.0);  // the network saw the moved time
  rec->finish_add = 0;
  rec->shift_to = -1;
  const Tensor plain = sample(*make_sampler("ddim"), Denoiser(spy.network()), *schedule, noise, o);
  EXPECT_FALSE(at::allclose(shifted - 2.5, plain));  // the moved time changed the solver's path too
}

TEST(CorrectionHooks, UnknownCorrectionListsValidNames) {
  EXPECT_THROW(make_correction("no_such_correction"), Error);
  EXPECT_THROW(correction_from_spec("no_such_correction:a=1"), Error);
}

}  // namespace
}  // namespace diffuse

namespace diffuse {
namespace {

// Several corrections compose in list order at every hook. Two Epsilon Scalings at the same hook
// divide eps twice: b1 then b2 equals one with b1 * b2 (exactly, up to rounding of the product).
TEST(CorrectionComposition, TwoEpsilonScalingsMultiply) {
  auto schedule = make_schedule("discrete");
  const Tensor noise = randn({3, 4}, 2, at::kDouble);
  for (const char* key : {"ddim", "dpmpp_2m", "heun"}) {
    SampleOptions two;
    two.num_steps = 8;
    two.corrections = {make_correction("epsilon_scaling", {{"b", "1.02"}}),
                       make_correction("epsilon_scaling", {{"b", "1.05"}})};
    SampleOptions one = two;
    one.corrections = {make_correction("epsilon_scaling", {{"b", format_double(1.02 * 1.05)}})};
    const Tensor a = sample(*make_sampler(key), Denoiser(net), *schedule, noise, two);
    const Tensor b = sample(*make_sampler(key), Denoiser(net), *schedule, noise, one);
    testing::ExpectTensorNear(a, b, 1e-12, 1e-12, key);
  }
}

// Corrections at different hooks compose with every sampler: a run with Epsilon Scaling, Time
// Shift and a schedule-optimisation grid is finite and differs from each alone.
TEST(CorrectionComposition, DifferentHooksComposeWithEverySampler) {
  auto schedule = make_schedule("discrete");
  const Tensor noise = randn({3, 4}, 5, at::kDouble);
  for (const std::string& key : distinct_sampler_names()) {
    SampleOptions o;
    o.num_steps = 10;
    o.spacing = make_spacing("trailing");
    o.corrections = {make_correction("epsilon_scaling", {{"b", "1.01"}}),
                     make_correction("time_shift", {{"window", "20"}, {"cutoff", "200"}})};
    const Tensor both = sample(*make_sampler(key), Denoiser(net), *schedule, noise, o);
    EXPECT_TRUE(at::isfinite(both).all().item<bool>()) << key;
    SampleOptions es_only = o;
    es_only.corrections = {o.corrections[0]};
    EXPECT_FALSE(
        at::equal(both, sample(*make_sampler(key), Denoiser(net), *schedule, noise, es_only)))
        << key;
  }
}

}  // namespace
}  // namespace diffuse
