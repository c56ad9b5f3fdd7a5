// SPDX-License-Identifier: Apache-2.0
// The flow schedule (<diffuse/schedules/flow.h>) and its default spacing flow_match: points, the
// log-SNR inverse, the static and dynamic shifts in closed form, Flux's mu, errors. The grids and
// samples against diffusers are tests/samplers/flow_match_test.cpp.
#include "test_util.h"

#include <cmath>

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

}  // namespace
}  // namespace diffuse
