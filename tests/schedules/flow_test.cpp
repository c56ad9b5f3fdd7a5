// SPDX-License-Identifier: Apache-2.0
// The flow schedule (<diffuse/schedules/flow.h>) and its default spacing flow_match: points, the
// log-SNR inverse, the static and dynamic shifts in closed form, Flux's mu, errors. The grids and
// samples against diffusers are tests/samplers/flow_match_test.cpp.
#include "test_util.h"

#include <cmath>

#include <diffuse/schedules/detail/grid.h>
#include <diffuse/schedules/flow.h>

namespace diffuse {
namespace {

// The flow schedule: alpha = 1 - sigma, t = t_scale sigma, the log-SNR inverse, the two shifts in
// closed form and Flux's mu.
TEST(FlowSchedule, PointsShiftsAndMu) {
  FlowSchedule s;
  const TimePoint p = s.at(250.0);
  EXPECT_EQ(p.sigma, 0.25);
  EXPECT_EQ(p.alpha, 0.75);
  EXPECT_EQ(s.t_max(), 1000.0);
  EXPECT_EQ(s.at(1000.0).alpha, 0.0);
  // The property samplers and sample() read (heun space=auto, euler_ancestral split=auto, the
  // default spacing): true for the flow schedule only.
  EXPECT_TRUE(s.rectified_flow());
  EXPECT_FALSE(s.variance_preserving());
  for (const std::string other : {"discrete", "vp", "edm"})
    EXPECT_FALSE(make_schedule(other)->rectified_flow()) << other;
  for (double sigma : {1e-3, 0.2, 0.5, 0.9, 0.999}) {
    const TimePoint q = s.at_log_snr(s.at_sigma(sigma).log_snr());
    EXPECT_NEAR(q.sigma, sigma, 1e-15);
    EXPECT_NEAR(q.t, 1000.0 * sigma, 1e-12);
  }
  FlowSchedule sd3(FlowScheduleOptions().shift(3.0));
  EXPECT_DOUBLE_EQ(sd3.shifted(0.5), 0.75);  // 3 * 0.5 / (1 + 2 * 0.5)
  EXPECT_EQ(sd3.shifted(0.0), 0.0);
  EXPECT_EQ(sd3.shifted(1.0), 1.0);
  FlowSchedule flux(FlowScheduleOptions().use_dynamic_shifting(true).mu(1.15));
  const double e = std::exp(1.15);
  EXPECT_DOUBLE_EQ(flux.shifted(0.25), e / (e + 3.0));
  FlowSchedule lin(FlowScheduleOptions().use_dynamic_shifting(true).mu(0.8).time_shift_type(
      FlowTimeShift::linear));
  EXPECT_DOUBLE_EQ(lin.shifted(0.25), 0.8 / (0.8 + 3.0));
  // A static shift s is the exponential dynamic shift with mu = log s.
  FlowSchedule as_dyn(FlowScheduleOptions().use_dynamic_shifting(true).mu(std::log(3.0)));
  for (double u : {0.1, 0.5, 0.9}) EXPECT_NEAR(as_dyn.shifted(u), sd3.shifted(u), 1e-15);
  EXPECT_DOUBLE_EQ(flow_dynamic_mu(256), 0.5);
  EXPECT_DOUBLE_EQ(flow_dynamic_mu(4096), 1.15);
  EXPECT_NEAR(flow_dynamic_mu(1024), 0.63, 1e-15);
  // Config round trip.
  auto round = make_schedule("flow", flux.to_config());
  EXPECT_EQ(round->to_config(), flux.to_config());
}

TEST(FlowSchedule, BadOptionsNameTheValue) {
  EXPECT_ERROR_NAMING(FlowSchedule(FlowScheduleOptions().shift(0.0)),
                      "shift must be finite and > 0, got 0");
  EXPECT_ERROR_NAMING(FlowSchedule(FlowScheduleOptions().sigma_min(1.0)),
                      "sigma_min must be in (0, 1), got 1");
  EXPECT_ERROR_NAMING(FlowSchedule(FlowScheduleOptions().t_scale(-1.0)),
                      "t_scale must be finite and > 0, got -1");
  EXPECT_ERROR_NAMING(FlowSchedule(FlowScheduleOptions().use_dynamic_shifting(true).time_shift_type(
                          FlowTimeShift::linear)),
                      "linear dynamic shift needs mu > 0, got mu=0");
  EXPECT_ERROR_NAMING(FlowSchedule(FlowScheduleOptions().shift_terminal(1.0)),
                      "shift_terminal must be in [0, 1)");
  EXPECT_ERROR_NAMING(make_schedule("flow", {{"time_shift_type", "cubic"}}), "cubic");
  FlowSchedule s;
  EXPECT_ERROR_NAMING(s.at(1000.5), "got 1000.5");
  EXPECT_ERROR_NAMING(s.at_sigma(-0.1), "got -0.1");
  EXPECT_ERROR_NAMING(flow_dynamic_mu(0), "image_seq_len must be >= 1, got 0");
}

// The flow schedule's default spacing is flow_match (the one that applies the shift); flow_match
// refuses other schedules; its grids start at sigma = 1 (rule euler) and end at the clean point.
TEST(FlowSchedule, DefaultSpacingAppliesTheShift) {
  auto s = make_schedule("flow", {{"shift", "3"}});
  SampleOptions o;
  o.num_steps = 4;
  const TimeGrid g = make_grid(*s, o);
  const TimeGrid want = make_spacing("flow_match")->grid(*s, 4);
  ASSERT_EQ(g.size(), 5u);
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], want[i]) << i;
  EXPECT_EQ(g.front().sigma, 1.0);
  EXPECT_TRUE(g.back().is_clean());
  validate_grid(g);
  EXPECT_ERROR_NAMING(make_spacing("flow_match")->grid(*make_schedule("discrete"), 4),
                      "flow_match spacing needs the flow schedule, got 'discrete'");
  EXPECT_ERROR_NAMING(make_spacing("flow_match", {{"rule", "dpm_solver"}, {"sigmas", "karras"}}),
                      "needs rule=euler");
}

// The beta re-spacing's quantile against closed forms of the Beta(a, b) CDF: Beta(1, 1) is
// uniform, I_x(a, 1) = x^a, I_x(1, b) = 1 - (1 - x)^b, and Beta(1/2, 1/2) is the arcsine law,
// I_x = (2 / pi) asin(sqrt(x)). (diffusers' own beta sigmas, scipy's ppf at a = b = 0.6, are the
// EulerBetaShift3 golden of tests/samplers/flow_match_test.cpp.)
TEST(FlowSchedule, BetaQuantileMatchesClosedForms) {
  const double pi = 3.14159265358979323846;
  for (double p : {1e-6, 0.01, 0.25, 0.5, 0.7, 0.999}) {
    EXPECT_NEAR(detail::beta_ppf(p, 1.0, 1.0), p, 1e-15) << p;
    EXPECT_NEAR(detail::beta_ppf(p, 2.5, 1.0), std::pow(p, 1.0 / 2.5), 1e-14) << p;
    EXPECT_NEAR(detail::beta_ppf(p, 1.0, 0.3), 1.0 - std::pow(1.0 - p, 1.0 / 0.3), 1e-14) << p;
    const double s = std::sin(pi * p / 2);
    EXPECT_NEAR(detail::beta_ppf(p, 0.5, 0.5), s * s, 1e-14) << p;
    EXPECT_NEAR(detail::regularized_incomplete_beta(detail::beta_ppf(p, 0.6, 0.6), 0.6, 0.6), p,
                1e-14)
        << p;
  }
  EXPECT_EQ(detail::beta_ppf(0.0, 0.6, 0.6), 0.0);
  EXPECT_EQ(detail::beta_ppf(1.0, 0.6, 0.6), 1.0);
  EXPECT_NEAR(detail::beta_ppf(0.5, 0.6, 0.6), 0.5, 1e-15);  // symmetric
  EXPECT_ERROR_NAMING(detail::beta_ppf(1.5, 0.6, 0.6), "1.5");
  EXPECT_ERROR_NAMING(detail::regularized_incomplete_beta(0.5, -1.0, 0.6), "a=-1");
  EXPECT_ERROR_NAMING(make_spacing("flow_match", {{"sigmas", "beta"}, {"beta_alpha", "0"}}),
                      "beta_alpha");
  // Written to the spacing's config only when used.
  EXPECT_EQ(make_spacing("flow_match")->to_config().count("beta_alpha"), 0u);
  EXPECT_EQ(make_spacing("flow_match", {{"sigmas", "beta"}})->to_config().at("beta_beta"), "0.6");
}
}  // namespace
}  // namespace diffuse
