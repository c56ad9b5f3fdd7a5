// SPDX-License-Identifier: Apache-2.0
// Bad input raises diffuse::Error with a message that names the bad value.
#include "test_util.h"

#include <limits>

namespace diffuse {
namespace {

/// Runs f, expects a diffuse::Error whose message contains every one of `needles`.
template <class F>
void ExpectErrorMentioning(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected diffuse::Error mentioning " << needles.front();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

Tensor eps_net(const Tensor& x, const Tensor&, const Conditioning&) { return x * 0.1; }

struct Fixture {
  std::unique_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  std::unique_ptr<Sampler> sampler = make_sampler("ddim");
  Tensor noise = randn({2, 3}, 0);
  Tensor run(const Denoiser& d, const SampleOptions& o) const {
    return sample(*sampler, d, *schedule, noise, o);
  }
  Tensor run(const SampleOptions& o) const { return run(Denoiser(eps_net), o); }
};

TEST(BadInput, FirstStepOutsideTheGrid) {
  Fixture s;
  const TimeGrid grid = make_spacing("trailing")->grid(*s.schedule, 5);
  Denoiser d(eps_net);
  ModelFn fn = [&d](const Tensor& x, const TimePoint& at, const StepContext&) {
    return d(x, at, {});
  };
  SampleContext ctx;
  for (int64_t k : {-1, 5, 9})
    ExpectErrorMentioning([&] { s.sampler->sample(fn, s.noise, grid, ctx, k); },
                          {"first_step", std::to_string(k)});
  // A run started at step k equals the tail of the full run fed the state the full run had there.
  std::vector<Tensor> states;
  SampleContext record;
  record.on_step = [&](const StepInfo& info) { states.push_back(info.x.clone()); };
  const Tensor full = s.sampler->sample(fn, s.noise, grid, record);
  const Tensor tail = s.sampler->sample(fn, states[1], grid, ctx, 2);
  EXPECT_TRUE(at::equal(full, tail));
}

TEST(BadInput, NonPositiveNumSteps) {
  Fixture s;
  for (int64_t n : {0, -3}) {
    SampleOptions o;
    o.num_steps = n;
    ExpectErrorMentioning([&] { s.run(o); }, {"num_steps", std::to_string(n)});
    for (const char* spacing : {"linspace", "leading", "trailing", "karras", "exponential"})
      ExpectErrorMentioning([&] { make_spacing(spacing)->grid(*s.schedule, n); },
                            {"num_steps", std::to_string(n)});
  }
}

TEST(BadInput, MoreStepsThanTrainingTimesteps) {
  Fixture s;
  for (const char* spacing : {"linspace", "leading", "trailing"}) {
    SampleOptions o;
    o.num_steps = 1001;
    o.spacing = make_spacing(spacing);
    ExpectErrorMentioning([&] { s.run(o); }, {spacing, "1001", "1000"});
  }
}

TEST(BadInput, UnknownNamesListTheValidOnes) {
  ExpectErrorMentioning([] { make_sampler("dddim"); }, {"dddim", "valid", "ddim"});
  ExpectErrorMentioning([] { make_schedule("discret"); }, {"discret", "valid", "discrete", "edm"});
  ExpectErrorMentioning([] { make_spacing("karas"); }, {"karas", "valid", "karras", "trailing"});
  ExpectErrorMentioning([] { make_guidance("cgf"); }, {"cgf", "valid", "cfg"});
  ExpectErrorMentioning([] { sampler_from_spec("nope:eta=1"); }, {"nope", "ddim"});
  ExpectErrorMentioning([] { parse_parameterization("vv"); }, {"vv", "epsilon", "v_prediction"});
}

TEST(BadInput, UnknownOptionListsTheValidOnes) {
  ExpectErrorMentioning([] { make_sampler("ddim", {{"etta", "0"}}); }, {"etta", "eta"});
  ExpectErrorMentioning([] { make_spacing("trailing", {{"steps_ofset", "1"}}); }, {"steps_ofset"});
}

TEST(BadInput, NonDescendingCustomTimesteps) {
  ExpectErrorMentioning(
      [] {
        make_spacing("timesteps", {{"timesteps", "999;500;600"}});
      },
      {"descending", "600", "500"});
  ExpectErrorMentioning(
      [] {
        make_spacing("timesteps", {{"timesteps", "999;500;500"}});
      },
      {"descending", "500"});
  ExpectErrorMentioning([] { make_spacing("sigmas", {{"sigmas", "1;2;0"}}); }, {"descending", "2"});
  // An explicit grid that goes back up in noise.
  Fixture s;
  SampleOptions o;
  o.grid = {s.schedule->at(999), s.schedule->at(400), s.schedule->at(600),
            s.schedule->clean_point()};
  ExpectErrorMentioning([&] { s.run(o); }, {"point 2", "t=600"});
  // Timesteps outside the schedule, and a count that does not match num_steps.
  o = SampleOptions();
  o.num_steps = 2;
  o.spacing = make_spacing("timesteps", {{"timesteps", "1500;10"}});
  ExpectErrorMentioning([&] { s.run(o); }, {"1500"});
  o.num_steps = 3;
  o.spacing = make_spacing("timesteps", {{"timesteps", "900;10"}});
  ExpectErrorMentioning([&] { s.run(o); }, {"num_steps=3"});
}

TEST(BadInput, WrongNetworkOutputShape) {
  Fixture s;
  Denoiser d([](const Tensor& x, const Tensor&, const Conditioning&) { return x.narrow(1, 0, 2); });
  ExpectErrorMentioning([&] { s.run(d, SampleOptions()); }, {"[2, 2]", "[2, 3]"});
  Denoiser undefined([](const Tensor&, const Tensor&, const Conditioning&) { return Tensor(); });
  ExpectErrorMentioning([&] { s.run(undefined, SampleOptions()); }, {"undefined"});
}

TEST(BadInput, NonFiniteNetworkOutputNamesTheStep) {
  Fixture s;
  SampleOptions o;
  o.num_steps = 5;
  const TimeGrid grid = make_grid(*s.schedule, o);
  const double bad_t = grid[3].t;
  for (double bad :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    Denoiser d([bad_t, bad](const Tensor& x, const Tensor& t, const Conditioning&) {
      Tensor out = x * 0.1;
      if (t[0].item<double>() == bad_t) out.view({-1})[1] = bad;
      return out;
    });
    ExpectErrorMentioning([&] { s.run(d, o); }, {"NaN/Inf", "step 3"});
    // The same through the batched guidance path.
    SampleOptions g = o;
    g.guidance = make_guidance("cfg", {{"scale", "2"}});
    ExpectErrorMentioning([&] { s.run(d, g); }, {"NaN/Inf", "step 3"});
  }
}

TEST(BadInput, UndefinedEmptyOrIntegerInitialNoise) {
  Fixture s;
  Denoiser d(eps_net);
  ExpectErrorMentioning([&] { sample(*s.sampler, d, *s.schedule, Tensor(), {}); }, {"undefined"});
  ExpectErrorMentioning(
      [&] {
        sample(*s.sampler, d, *s.schedule, at::zeros({0, 3}), {});
      },
      {"[0, 3]"});
  ExpectErrorMentioning(
      [&] {
        sample(*s.sampler, d, *s.schedule, at::zeros({2, 0}), {});
      },
      {"empty", "[2, 0]"});
  ExpectErrorMentioning([&] { sample(*s.sampler, d, *s.schedule, at::scalar_tensor(1.0), {}); },
                        {"batch"});
  ExpectErrorMentioning(
      [&] {
        sample(*s.sampler, d, *s.schedule, at::zeros({2, 3}, at::kLong), {});
      },
      {"floating point", "Long"});
  ExpectErrorMentioning(
      [&] {
        sample(*s.sampler, d, *s.schedule, at::zeros({2, 3}, at::kBool), {});
      },
      {"floating point", "Bool"});
}

TEST(BadInput, InvalidSamplerAndDenoiserOptions) {
  ExpectErrorMentioning([] { make_sampler("ddim", {{"eta", "-0.5"}}); }, {"eta", "-0.5"});
  ExpectErrorMentioning([] { make_sampler("ddim", {{"eta", "x"}}); }, {"eta", "'x'"});
  ExpectErrorMentioning([] { Denoiser d{Network{}}; }, {"empty"});
  DenoiserOptions o;
  o.dynamic_thresholding_ratio = 1.5;
  ExpectErrorMentioning([&] { Denoiser(eps_net, o); }, {"dynamic_thresholding_ratio", "1.5"});
}

}  // namespace
}  // namespace diffuse
