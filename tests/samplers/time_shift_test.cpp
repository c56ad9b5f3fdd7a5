// SPDX-License-Identifier: Apache-2.0
// Time Shift (samplers/corrections/time_shift.h): identity, the window search, the three wirings,
// config, errors, and the Gaussian-mixture testbed with an exposure-bias-like imperfect network.
#include "test_util.h"

#include <cmath>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace diffuse {
namespace {

void ExpectErrorMentioning(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no diffuse::Error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

std::shared_ptr<Correction> ts(const Config& c) {
  return std::shared_ptr<Correction>(make_correction("time_shift", c));
}

Tensor simple_net(const Tensor& x, const Tensor& t, const Conditioning&) {
  return x * 0.4 + at::sin(x) * 0.2 + t.view({-1, 1}) * 1e-4;
}

TEST(TimeShift, IdentityIsBitExactForEverySampler) {
  // window 0 (the options' default; a spec must name it), window 1 (floor(w/2) = 0) and a cutoff at
  // t_max reproduce the plain sampler exactly, on the discrete (integer t) and the vp schedule.
  for (const std::string sched : {"discrete", "vp"}) {
    auto schedule = make_schedule(sched);
    const double cutoff = schedule->t_max();
    for (const std::string& name : distinct_sampler_names()) {
      auto sampler = make_sampler(name);
      const Tensor noise = randn({3, 6}, 5, at::kDouble);
      SampleOptions o;
      o.num_steps = 6;
      o.seed = 3;
      const Tensor plain = sample(*sampler, Denoiser(simple_net), *schedule, noise, o);
      for (const Config& c : std::vector<Config>{
               {{"window", "0"}},
               {{"window", "1"}},
               {{"window", "40"}, {"cutoff", format_double(cutoff)}},
               {{"window", "40"}, {"cutoff", format_double(cutoff)}, {"variant", "target_shift"}},
               {{"window", "40"}, {"cutoff", format_double(cutoff)}, {"variant", "adm"}}}) {
        o.corrections = {ts(c)};
        const Tensor out = sample(*sampler, Denoiser(simple_net), *schedule, noise, o);
        EXPECT_TRUE(at::equal(out, plain))
            << name << " on " << sched << " with " << format_config(c);
      }
      // And an active shift changes the result (the identity checks above are not vacuous).
      o.corrections = {ts({{"window", "40"}})};
      const Tensor shifted = sample(*sampler, Denoiser(simple_net), *schedule, noise, o);
      EXPECT_FALSE(at::equal(shifted, plain)) << name << " on " << sched;
    }
  }
}

/// x [2, 2n] whose per-sample unbiased variance is exactly v (entries +-a around 0).
Tensor with_variance(double v, int64_t n = 8) {
  const double a = std::sqrt(v * static_cast<double>(2 * n - 1) / static_cast<double>(2 * n));
  Tensor row = at::full({2 * n}, a, at::kDouble);
  row.slice(0, 1, 2 * n, 2).neg_();
  return at::stack({row, row.flip(0)});
}

struct Hand {
  std::shared_ptr<NoiseSchedule> schedule = make_schedule("discrete");
  std::unique_ptr<Correction> corr;
  TimeGrid grid;
  StepContext st;
  explicit Hand(const Config& c, double now = 500, double next = 400)
      : corr(make_correction("time_shift", c)) {
    grid = make_spacing("linspace")->grid(*schedule, 10);
    corr->reset();
    corr->on_grid(grid, *schedule);
    Tensor x0 = at::zeros({2, 16}, at::kDouble);
    StepContext first;
    first.index = 0;
    first.num_steps = 10;
    corr->on_start(x0, first);
    st.index = 3;
    st.num_steps = 10;
    st.now = schedule->at(now);
    st.next = schedule->at(next);
    st.grid = &grid;
  }
  double sigma2(double t) const { return std::pow(schedule->at(t).sigma, 2); }
};

TEST(TimeShift, CoupledPicksTheMatchingTimeInTheWindow) {
  // discrete linear betas: sigma^2 = 1 - alphabar_t is strictly increasing in t, so the candidate
  // whose sigma^2 equals var(x) is the unique argmin.
  {
    Hand h(Config{{"window", "10"}});
    h.corr->on_time(with_variance(h.sigma2(503)), h.st);
    EXPECT_EQ(h.st.now, h.schedule->at(503));   // network input and solver coefficients
    EXPECT_EQ(h.st.next, h.schedule->at(400));  // the target stays nominal
  }
  {
    Hand h(Config{{"window", "10"}});
    h.corr->on_time(with_variance(h.sigma2(497)), h.st);
    EXPECT_EQ(h.st.now.t, 497);
  }
  {  // beyond the window: its edge (c + floor(w/2)); odd w has the same half width
    Hand h(Config{{"window", "11"}});
    h.corr->on_time(with_variance(h.sigma2(530)), h.st);
    EXPECT_EQ(h.st.now.t, 505);
  }
  {  // not above the cutoff: no shift
    Hand h(Config{{"window", "10"}, {"cutoff", "500"}});
    h.corr->on_time(with_variance(h.sigma2(503)), h.st);
    EXPECT_EQ(h.st.now.t, 500);
  }
  {  // just above it: shift
    Hand h(Config{{"window", "10"}, {"cutoff", "499.5"}});
    h.corr->on_time(with_variance(h.sigma2(503)), h.st);
    EXPECT_EQ(h.st.now.t, 503);
  }
  {  // the first step of a run never shifts
    Hand h(Config{{"window", "10"}});
    h.st.index = 0;
    h.corr->on_time(with_variance(h.sigma2(503)), h.st);
    EXPECT_EQ(h.st.now.t, 500);
  }
  {  // data_aware: v = alpha^2 data_var + sigma^2
    Hand h(Config{{"window", "10"}, {"variance_model", "data_aware"}, {"data_var", "0.5"}});
    const TimePoint p = h.schedule->at(502);
    h.corr->on_time(with_variance(p.alpha * p.alpha * 0.5 + p.sigma * p.sigma), h.st);
    EXPECT_EQ(h.st.now.t, 502);
  }
  {  // pooled: the variance of all entries (here the two rows have different spreads)
    Hand h(Config{{"window", "10"}, {"batch_variance", "pooled"}});
    Tensor x = at::cat({with_variance(h.sigma2(510)).narrow(0, 0, 1),
                        with_variance(h.sigma2(490)).narrow(0, 0, 1)});
    const double pooled = x.var().item<double>();
    int best = 495;
    for (int k = 495; k <= 505; ++k)
      if (std::abs(pooled - h.sigma2(k)) < std::abs(pooled - h.sigma2(best))) best = k;
    h.corr->on_time(x, h.st);
    EXPECT_EQ(h.st.now.t, best);
  }
}

TEST(TimeShift, TargetShiftAndAdmMoveTheTarget) {
  {  // target_shift: window centred on the nominal NEXT time; the network time stays nominal
    Hand h(Config{{"window", "10"}, {"variant", "target_shift"}});
    h.corr->on_time(with_variance(h.sigma2(403)), h.st);
    EXPECT_EQ(h.st.now.t, 500);
    EXPECT_EQ(h.st.next, h.schedule->at(403));
  }
  {  // its cutoff tests the next time
    Hand h(Config{{"window", "10"}, {"variant", "target_shift"}, {"cutoff", "400"}});
    h.corr->on_time(with_variance(h.sigma2(403)), h.st);
    EXPECT_EQ(h.st.next.t, 400);
  }
  {  // adm: centred on the current time, values flip(alphabar) = alphabar_{999 - tau}, target one
     // stride below: t_s - 1000 // (S - 1) - 1 with S = 10 -> 497 - 111 - 1 = 385.
    Hand h(Config{{"window", "10"}, {"variant", "adm"}});
    h.corr->on_time(with_variance(std::pow(h.schedule->at(999 - 497).alpha, 2)), h.st);
    EXPECT_EQ(h.st.now.t, 500);
    EXPECT_EQ(h.st.next, h.schedule->at(385));
  }
}

TEST(TimeShift, RunCouplesNetworkAndSolverWithTheShiftedTime) {
  // DDIM on an explicit discrete grid 900 -> 500 -> 400 -> clean with a spy network. Step 1 must
  // call the network at the argmin t_s over 480..520 of (var(x) - sigma_t^2)^2 (brute force here)
  // and produce x2 = alpha_400 x0 + sigma_400 eps from x0 = (x1 - sigma_{t_s} eps) / alpha_{t_s}.
  auto schedule = make_schedule("discrete");
  const TimeGrid grid{schedule->at(900), schedule->at(500), schedule->at(400),
                      schedule->clean_point()};
  auto argmin = [&](const Tensor& x, double c, int h) {
    const double v = x.var(1).mean().item<double>();
    double best = c;
    for (int k = -h; k <= h; ++k)
      if (std::abs(v - std::pow(schedule->at(c + k).sigma, 2)) <
          std::abs(v - std::pow(schedule->at(best).sigma, 2)))
        best = c + k;
    return best;
  };
  for (const std::string variant : {"coupled", "target_shift"}) {
    testing::RecordingModel m;
    m.f = [](const Tensor& x, const Tensor&) { return x * 0.3; };
    SampleOptions o;
    o.grid = grid;
    o.corrections = {ts({{"window", "40"}, {"variant", variant}})};
    const Tensor noise = randn({4, 32}, 1, at::kDouble);
    sample(*make_sampler("ddim"), Denoiser(m.network()), *schedule, noise, o);
    const auto& calls = *m.calls;
    ASSERT_EQ(calls.size(), 3u);
    EXPECT_EQ(calls[0].t[0].item<double>(), 900);
    const Tensor& x1 = calls[1].x;
    const Tensor& x2 = calls[2].x;
    if (variant == "coupled") {
      const double t_s = argmin(x1, 500, 20);
      ASSERT_NE(t_s, 500) << "the test state should need a shift";
      EXPECT_EQ(calls[1].t[0].item<double>(), t_s);
      const TimePoint s = schedule->at(t_s), n = schedule->at(400);
      const Tensor eps = x1 * 0.3, x0 = (x1 - eps * s.sigma) / s.alpha;
      testing::ExpectTensorNear(x2, x0 * n.alpha + eps * n.sigma, 1e-12, 1e-12, "coupled update");
      EXPECT_EQ(calls[2].t[0].item<double>(), argmin(x2, 400, 20));  // step 2 is coupled again
    } else {
      EXPECT_EQ(calls[1].t[0].item<double>(), 500);
      const double t_s = argmin(x1, 400, 20);
      ASSERT_NE(t_s, 400);
      const TimePoint s = schedule->at(500), n = schedule->at(t_s);
      const Tensor eps = x1 * 0.3, x0 = (x1 - eps * s.sigma) / s.alpha;
      testing::ExpectTensorNear(x2, x0 * n.alpha + eps * n.sigma, 1e-12, 1e-12,
                                "target-shift update");
      EXPECT_EQ(calls[2].t[0].item<double>(), 400);  // the next step starts from its nominal time
    }
  }
}

TEST(TimeShift, WindowsWiderThanAStepKeepTheRunOrdered) {
  // 20 steps on 1000 training steps (stride ~50) with a window of +-200: coupled times stay
  // strictly between the previous step's time and the target, so the network times of every
  // sampler's run strictly decrease (multistep histories stay ordered) and the result is finite.
  auto schedule = make_schedule("discrete");
  for (const std::string variant : {"coupled", "target_shift"}) {
    for (const std::string name : {"ddim", "dpmpp_2m", "dpmpp_3m", "euler", "heun"}) {
      testing::RecordingModel m;
      m.f = [](const Tensor& x, const Tensor&) { return x * 0.6; };  // a state that needs shifting
      SampleOptions o;
      o.num_steps = 20;
      o.spacing = make_spacing("trailing");
      o.corrections = {ts({{"window", "400"}, {"variant", variant}})};
      const Tensor out = sample(*make_sampler(name), Denoiser(m.network()), *schedule,
                                randn({2, 16}, 3, at::kDouble), o);
      EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << name << " " << variant;
      double prev = std::numeric_limits<double>::infinity();
      int shifted = 0;
      for (const auto& c : *m.calls) {
        const double t = c.t[0].item<double>();
        if (name != "heun") {  // heun re-evaluates at the target
          EXPECT_LT(t, prev) << name << " " << variant;
        }
        if (std::fmod(t, 50.0) != 49.0) ++shifted;
        prev = t;
      }
      if (variant == "coupled") {
        EXPECT_GT(shifted, 0) << name;
      }
    }
  }
}

TEST(TimeShift, ConfigRoundTripAndSpec) {
  auto c = make_correction("time_shift", {{"window", "30"},
                                          {"cutoff", "300"},
                                          {"variant", "adm"},
                                          {"variance_model", "data_aware"},
                                          {"data_var", "0.25"},
                                          {"batch_variance", "pooled"},
                                          {"resolution", "2"}});
  EXPECT_EQ(c->name(), "time_shift");
  auto back = make_correction("time_shift", c->to_config());
  EXPECT_EQ(back->to_config(), c->to_config());
  EXPECT_EQ(c->to_config().at("variant"), "adm");
  EXPECT_EQ(c->to_config().at("data_var"), "0.25");
  auto spec = correction_from_spec("time_shift:window=5,cutoff=550");
  EXPECT_EQ(spec->to_config().at("window"), "5");
  EXPECT_EQ(spec->to_config().at("variant"), "coupled");
  // Asked for by name without a window it would be the identity: refused, naming the option and the
  // published presets. An explicit window=0 is still the identity on request.
  ExpectErrorMentioning([] { make_correction("time_shift"); }, {"needs window", "time_shift_pndm"});
  ExpectErrorMentioning([] { correction_from_spec("time_shift:cutoff=300"); }, {"needs window"});
  EXPECT_EQ(make_correction("time_shift", {{"window", "0"}})->to_config().at("window"), "0");
  // Presets from the official READMEs; user options override them.
  EXPECT_EQ(make_correction("time_shift_dpm_solver")->to_config().at("window"), "30");
  EXPECT_EQ(make_correction("time_shift_adm")->to_config().at("variant"), "adm");
  EXPECT_EQ(make_correction("time_shift_pndm", {{"cutoff", "500"}})->to_config().at("cutoff"),
            "500");
}

TEST(TimeShift, ErrorsNameTheBadValue) {
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"window", "-3"}});
      },
      {"window", "-3"});
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"window", "ten"}});
      },
      {"window", "ten"});
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"cutoff", "-2"}});
      },
      {"cutoff", "-2"});
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"variant", "pndm"}});
      },
      {"variant", "pndm"});
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"variance_model", "exact"}});
      },
      {"variance_model", "exact"});
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"data_var", "-1"}});
      },
      {"data_var", "-1"});
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"batch_variance", "max"}});
      },
      {"batch_variance", "max"});
  ExpectErrorMentioning(
      [] {
        make_correction("time_shift", {{"resolution", "-0.5"}});
      },
      {"resolution", "-0.5"});
  ExpectErrorMentioning([] { make_correction("time_shift", {{"windw", "3"}}); }, {"windw"});
  // Without on_grid there is no schedule to search.
  auto c = make_correction("time_shift", {{"window", "10"}});
  StepContext st;
  st.index = 1;
  st.num_steps = 4;
  st.now = make_schedule("discrete")->at(500);
  st.next = make_schedule("discrete")->at(400);
  st.index = 0;
  c->on_time(at::ones({2, 4}, at::kDouble), st);  // the first step never shifts
  st.index = 1;
  ExpectErrorMentioning([&] { c->on_time(at::ones({2, 4}, at::kDouble), st); }, {"schedule"});
  // One entry per sample has no per-sample variance.
  Hand h(Config{{"window", "10"}});
  ExpectErrorMentioning(
      [&] {
        h.corr->on_time(at::ones({2, 1}, at::kDouble), h.st);
      },
      {"batch_variance", "[2, 1]"});
}

// ---------------------------------------------------------------------------------------------
// Testbed: mixture, vp schedule (or flow with a flow-prediction network), float64, imperfect
// network (1 + delta) eps* + bias tanh(x).

struct Testbed {
  GaussianMixture gmm;
  std::shared_ptr<const NoiseSchedule> vp;  // the run's schedule ("vp" unless asked otherwise)
  Parameterization param = Parameterization::kEpsilon;
  Tensor noise;
  Tensor true_mean, true_cov;
  Testbed(const std::string& preset, int64_t n, uint64_t seed, const std::string& schedule = "vp")
      : gmm(GaussianMixture::preset(preset)), vp(make_schedule(schedule)) {
    if (vp->rectified_flow()) param = Parameterization::kFlow;
    noise = randn({n, gmm.dim()}, seed, at::kDouble);
    true_mean = gmm.mean();
    true_cov = gmm.covariance();
  }
  /// Expected per-sample variance over a sample's coordinates of x0 (for data_aware): E[|x0|^2]/D
  /// corrected to the unbiased per-sample estimator, from the closed-form mean and covariance.
  double per_sample_data_var() const {
    const double D = static_cast<double>(gmm.dim());
    const double e_sq = (true_mean.dot(true_mean) + true_cov.trace()).item<double>();  // E|x0|^2
    const double e_mean_sq =
        (true_mean.sum().pow(2) + true_cov.sum()).item<double>() / (D * D);  // E[(mean_d x0)^2]
    return (e_sq / D - e_mean_sq) * D / (D - 1);
  }
  /// ||mean - mean*|| + ||cov - cov*||_F of the samples against the true mixture.
  double error(const Tensor& x) const {
    return mean_error(x, true_mean) + covariance_error(x, true_cov);
  }
  Tensor run(const std::string& sampler, int64_t steps, double delta, double bias,
             std::shared_ptr<Correction> corr = nullptr) const {
    DenoiserOptions dopt;
    dopt.prediction_type = param;
    Denoiser d(gmm.imperfect_network(vp, delta, bias, param), dopt);
    SampleOptions o;
    o.num_steps = steps;
    // Uniform in lambda on vp; the flow schedule's own grid (flow_match, from sigma = 1).
    if (!vp->rectified_flow()) o.spacing = make_spacing("exponential");
    o.seed = 7;
    if (corr) o.corrections = {corr};
    return sample(*make_sampler(sampler), d, *vp, noise, o);
  }
};

TEST(TimeShift, TestbedReducesTheFinalDistributionError) {
  // The published DPM-Solver-2 setting (w = 30, t_c = 300 of 1000 training steps)
  // scaled to the vp time axis (resolution (1 - 0.001) / 1000, cutoff 0.3); the coupled wiring
  // with the official variance rule (the defaults). Imperfect network: delta = 0.03, bias = 0.01.
  // Grid: uniform in lambda (exponential spacing), 4096 samples, float64.
  const Config ts_config{{"window", "30"}, {"cutoff", "0.3"}};
  for (const std::string preset : {"mixture_2d", "mixture_16d"}) {
    Testbed tb(preset, 4096, 11);
    for (const std::string s : {"ddim", "dpmpp_2m"}) {
      for (const int64_t n : {10, 20}) {
        const double exact = tb.error(tb.run(s, n, 0, 0));
        const double plain = tb.error(tb.run(s, n, 0.03, 0.01));
        const double shifted = tb.error(tb.run(s, n, 0.03, 0.01, ts(ts_config)));
        std::cout << "[ ts ] " << preset << " " << s << " N=" << n << " error exact-net " << exact
                  << " imperfect " << plain << " imperfect+TS " << shifted << " (" << std::showpos
                  << std::fixed << std::setprecision(1) << 100 * (shifted / plain - 1) << "%)"
                  << std::noshowpos << std::defaultfloat << std::setprecision(6) << "\n";
        if (s == "dpmpp_2m" && n == 10) {
          // Measured: 2d -1.4 %, 16d +4.3 %. Here 2M's own discretization error dominates: the
          // exact network does WORSE than the imperfect one (its error partly cancels the
          // solver's), so removing the network's bias cannot be expected to help. Assert exactly
          // that, and that TS stays within 10 % of the plain run.
          EXPECT_GT(exact, plain) << preset;
          EXPECT_LT(std::abs(shifted / plain - 1), 0.10) << preset;
        } else {
          // Measured reductions 6-25 % (ddim 10/20 and dpmpp_2m 20 on both mixtures).
          EXPECT_LT(shifted, 0.97 * plain) << preset << " " << s << " N=" << n;
        }
      }
    }
  }
}

// Time Shift on the flow schedule: the same search, with t = 1000 sigma as the flow models are fed
// (window and cutoff in those units: the published DPM-Solver-2 setting w = 30, t_c = 300 reads
// as it does on 1000 training steps). The variance model is where flow differs: the official one
// matches var(x) to sigma^2, the variance of the noise alone, which on VP is also the whole
// marginal variance for unit-variance data (alpha^2 + sigma^2 = 1), but on flow the marginal is
// (1 - sigma)^2 var(x0) + sigma^2, so data_aware with the data's variance is the flow form.
TEST(TimeShift, TestbedOnTheFlowSchedule) {
  for (const std::string preset : {"mixture_2d", "mixture_16d"}) {
    Testbed tb(preset, 4096, 11, "flow");
    const Config official{{"window", "30"}, {"cutoff", "300"}};
    Config aware = official;
    aware["variance_model"] = "data_aware";
    aware["data_var"] = format_double(tb.per_sample_data_var());
    for (const std::string s : {"ddim", "dpmpp_2m"}) {
      for (const int64_t n : {10, 20}) {
        const double exact = tb.error(tb.run(s, n, 0, 0));
        const double plain = tb.error(tb.run(s, n, 0.03, 0.01));
        const double off = tb.error(tb.run(s, n, 0.03, 0.01, ts(official)));
        const double da = tb.error(tb.run(s, n, 0.03, 0.01, ts(aware)));
        std::cout << "[ ts ] flow " << preset << " " << s << " N=" << n << " error exact-net "
                  << exact << " imperfect " << plain << " +TS official " << off
                  << " +TS data_aware " << da << "\n";
        if (s == "dpmpp_2m" && n == 10) {
          // As on vp: 2M's own error dominates and the exact network does worse than the imperfect
          // one, so no correction of the network can be expected to help.
          EXPECT_GT(exact, plain) << preset;
        } else {
          // Measured: data_aware -17 to -54 %, official +5 to -38 % (worse in 4 of the 6).
          EXPECT_LT(da, 0.9 * plain) << preset << " " << s << " N=" << n;
          EXPECT_LT(da, off) << preset << " " << s << " N=" << n;
        }
      }
    }
  }
}

}  // namespace
}  // namespace diffuse
