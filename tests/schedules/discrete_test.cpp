// SPDX-License-Identifier: Apache-2.0
#include "test_util.h"

namespace diffuse {
namespace {

TEST(DiscreteSchedule, LinearBetasMatchDdpmEndpoints) {
  DiscreteSchedule s;
  ASSERT_EQ(s.betas().size(), 1000u);
  EXPECT_DOUBLE_EQ(s.betas().front(), 1e-4);
  EXPECT_NEAR(s.betas().back(), 0.02, 1e-15);
  // alphas_cumprod[T-1] ~= 4.04e-5 for the DDPM linear schedule (diffusers 58eb52c in float64:
  // 4.035829765375676e-05, tests/reference/spacing.py points).
  EXPECT_NEAR(s.alphas_cumprod().back(), 4.04e-5, 0.01e-5);
}

TEST(DiscreteSchedule, ScaledLinearSigmaMatchesPublishedValues) {
  DiscreteSchedule s(DiscreteScheduleOptions()
                         .beta_schedule(BetaSchedule::scaled_linear)
                         .beta_start(0.00085)
                         .beta_end(0.012));
  // sigma_ve(999) = 14.6146412293, sigma_ve(0) = 0.0291671582: the ends of the published AYS SD
  // lists (ComfyUI's NOISE_LEVELS); diffusers 58eb52c in float64 gives 14.614641229333635,
  // 0.029167158151720367 and alpha(999) = 0.0682649142 (tests/reference/spacing.py points).
  EXPECT_NEAR(s.at(999).sigma_ve(), 14.6146412293, 1e-8);
  EXPECT_NEAR(s.at(0).sigma_ve(), 0.0291671582, 1e-9);
  EXPECT_NEAR(s.at(999).alpha, 0.068265, 1e-6);
}

TEST(DiscreteSchedule, VariancePreservingAndRoundTrip) {
  for (const char* kind : {"linear", "scaled_linear", "squaredcos_cap_v2"}) {
    DiscreteSchedule s(DiscreteScheduleOptions()
                           .beta_schedule(parse_beta_schedule(kind))
                           .beta_start(0.00085)
                           .beta_end(0.012));
    for (int t : {0, 1, 17, 500, 998, 999}) {
      const TimePoint p = s.at(t);
      EXPECT_NEAR(p.alpha * p.alpha + p.sigma * p.sigma, 1.0, 1e-14) << kind << " t=" << t;
      EXPECT_NEAR(s.t_from_log_snr(p.log_snr()), t, 1e-9) << kind << " t=" << t;
    }
  }
}

TEST(DiscreteSchedule, ZeroTerminalSnr) {
  DiscreteSchedule s(DiscreteScheduleOptions()
                         .beta_schedule(BetaSchedule::scaled_linear)
                         .beta_start(0.00085)
                         .beta_end(0.012)
                         .rescale_betas_zero_snr(true));
  EXPECT_EQ(s.alphas_cumprod().back(), 0.0);
  EXPECT_NEAR(s.betas().back(), 1.0, 1e-12);
  EXPECT_EQ(s.at(999).alpha, 0.0);
  // alphas_cumprod[998] becomes 1.97e-7 (diffusers 58eb52c in float64: 1.9678880566211582e-07,
  // tests/reference/spacing.py points).
  EXPECT_NEAR(s.alphas_cumprod()[998], 1.97e-7, 0.01e-7);
  // The first value is unchanged by the rescale.
  DiscreteSchedule plain(DiscreteScheduleOptions()
                             .beta_schedule(BetaSchedule::scaled_linear)
                             .beta_start(0.00085)
                             .beta_end(0.012));
  EXPECT_NEAR(s.alphas_cumprod()[0], plain.alphas_cumprod()[0], 1e-15);
}

TEST(DiscreteSchedule, BadInputNamesTheValue) {
  EXPECT_ERROR_NAMING(
      parse_beta_schedule("cosine"),
      "beta_schedule must be linear, scaled_linear or squaredcos_cap_v2, got 'cosine'");
  EXPECT_ERROR_NAMING(make_schedule("discrete", {{"beta_schedule", "cosine"}}), "cosine");
  EXPECT_ERROR_NAMING(make_schedule("discrete", {{"precision", "float16"}}), "float16");
  for (const auto& [name, value] : beta_schedule_names()) {
    EXPECT_EQ(to_string(value), name);
    EXPECT_EQ(make_schedule("discrete", {{"beta_schedule", name}})->to_config().at("beta_schedule"),
              name);
  }
  for (const auto& [name, value] : table_precision_names())
    EXPECT_EQ(make_schedule("discrete", {{"precision", name}})->to_config().at("precision"), name);
  EXPECT_THROW(DiscreteSchedule(DiscreteScheduleOptions().num_train_timesteps(1)), Error);
  EXPECT_THROW(DiscreteSchedule(DiscreteScheduleOptions().trained_betas({0.1, 1.5})), Error);
  DiscreteSchedule s;
  EXPECT_THROW(s.at(1000), Error);
  EXPECT_THROW(s.at(-0.5), Error);
}

}  // namespace
}  // namespace diffuse
