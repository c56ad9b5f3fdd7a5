// SPDX-License-Identifier: Apache-2.0
// Spacings and discrete tables against diffusers 58eb52c.
//
// Golden values come from tests/reference/spacing.py {tables,spacings} (see
// tests/reference/README.md) run on diffusers 58eb52c:
// * tables: DDIMScheduler(**cfg).alphas_cumprod / .betas (DDPMScheduler gives identical tensors),
//   float32 as shipped, float64 with the scheduler module's float32 replaced by float64;
//   checksum = sum_i bits(v_i) * (i + 1) mod 2^64 over the float32 (or float64) bit patterns.
// * spacings: DDPMScheduler/DDIMScheduler.set_timesteps(n).timesteps for every n in 1..T,
//   checksum = sum_n n * sum_k (k + 1) * timesteps[k]; for trailing the first n values (see
//   schedules/spacing/trailing.h for diffusers' spurious extra -1); leading with steps_offset=1
//   over the n whose first timestep stays <= T - 1 (diffuse rejects the others).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

namespace diffuse {
namespace {

uint64_t bits_checksum(const std::vector<double>& v, bool as_float) {
  uint64_t s = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    uint64_t b = 0;
    if (as_float) {
      const float f = static_cast<float>(v[i]);
      EXPECT_EQ(static_cast<double>(f), v[i]) << "float32 table entry " << i << " is not a float";
      uint32_t u;
      std::memcpy(&u, &f, sizeof u);
      b = u;
    } else {
      std::memcpy(&b, &v[i], sizeof b);
    }
    s += b * static_cast<uint64_t>(i + 1);
  }
  return s;
}

struct TableCase {
  const char* name;
  Config config;
  uint64_t ac32, betas32, ac64, betas64;
  double ac500_32, ac998_64;  // two entries in clear, for the reader
};

Config with(Config c, const char* key, const char* value) {
  c[key] = value;
  return c;
}

const Config kLinear{{"beta_schedule", "linear"}, {"beta_start", "0.0001"}, {"beta_end", "0.02"}};
const Config kScaled{
    {"beta_schedule", "scaled_linear"}, {"beta_start", "0.00085"}, {"beta_end", "0.012"}};

TEST(DiscreteSchedule, TablesAreBitEqualToDiffusers) {
  const std::vector<TableCase> cases{
      {"linear", kLinear, 0x0001c8c9e1361570ULL, 0x0001cc77eaa930d3ULL, 0x9c270f367e6bcb53ULL,
       0x5d5567e45bd8e2c4ULL, 0.07779666036367416, 4.118193638138445e-05},
      {"scaled_linear", kScaled, 0x0001d659b3af5023ULL, 0x0001c8ec27bf2608ULL,
       0x967c975e37cde80eULL, 0xe4f867d4a4ec0d46ULL, 0.2763324975967407, 0.00471669889987575},
      {"squaredcos_cap_v2",
       {{"beta_schedule", "squaredcos_cap_v2"}},
       0x0001d83571ef38dfULL,
       0x0001c9a037da4ed1ULL,
       0x0e3f16000d8a7789ULL,
       0x66fb493314655326ULL,
       0.4922850430011749,
       2.4287669070348544e-06},
      {"zsnr_scaled_linear", with(kScaled, "rescale_betas_zero_snr", "true"), 0x0001d0395530c48eULL,
       0x0001cbe78c036eb2ULL, 0xcab418198d8ed9b4ULL, 0x517e5cd1af6312e1ULL, 0.24101859331130981,
       1.9678880566211582e-07},
      {"zsnr_linear", with(kLinear, "rescale_betas_zero_snr", "true"), 0x0001c480c5fee56fULL,
       0x0001ce2c7342019aULL, 0xb8bc710f837c055cULL, 0xee6973b4dffb3ac4ULL, 0.07524622976779938,
       4.213262465088073e-09},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    DiscreteSchedule s32(*dynamic_cast<DiscreteSchedule*>(
        make_schedule("discrete", with(c.config, "precision", "float32")).get()));
    DiscreteSchedule s64(*dynamic_cast<DiscreteSchedule*>(
        make_schedule("discrete", with(c.config, "precision", "float64")).get()));
    EXPECT_EQ(bits_checksum(s32.alphas_cumprod(), true), c.ac32);
    EXPECT_EQ(bits_checksum(s32.betas(), true), c.betas32);
    EXPECT_EQ(s32.alphas_cumprod()[500], c.ac500_32);
    // float64: the same ATen ops in double; bit-equal as well.
    EXPECT_EQ(bits_checksum(s64.alphas_cumprod(), false), c.ac64);
    EXPECT_EQ(bits_checksum(s64.betas(), false), c.betas64);
    EXPECT_EQ(s64.alphas_cumprod()[998], c.ac998_64);
  }
}

std::vector<double> times(const TimeGrid& g) {
  std::vector<double> t;
  for (size_t i = 0; i + 1 < g.size(); ++i) t.push_back(g[i].t);
  return t;
}

int64_t spacing_checksum(const TimestepSpacing& sp, const NoiseSchedule& s, int64_t steps_offset) {
  const int64_t T = s.num_train_timesteps();
  int64_t total = 0;
  for (int64_t n = 1; n <= T; ++n) {
    if (steps_offset > 0 && (n - 1) * (T / n) + steps_offset > T - 1) {
      EXPECT_THROW(sp.grid(s, n), Error)
          << "n=" << n;  // past t_max: diffusers would index out of range
      continue;
    }
    const TimeGrid g = sp.grid(s, n);
    EXPECT_EQ(static_cast<int64_t>(g.size()), n + 1);
    EXPECT_TRUE(g.back().is_clean());
    int64_t inner = 0;
    for (int64_t k = 0; k < n; ++k) inner += (k + 1) * static_cast<int64_t>(g[k].t);
    total += n * inner;
  }
  return total;
}

TEST(Spacing, EveryStepCountMatchesDiffusers) {
  struct Case {
    int64_t T;
    const char* spacing;
    Config config;
    int64_t checksum;
  };
  const std::vector<Case> cases{
      {1000, "linspace", {}, 41763666180566LL},
      {1000, "leading", {}, 34653584638970LL},
      {1000, "leading", {{"steps_offset", "1"}}, 34611834680720LL},
      {1000, "trailing", {}, 41791491236450LL},
      {1100, "linspace", {}, 67246663375042LL},
      {1100, "leading", {}, 55795978243042LL},
      {1100, "leading", {{"steps_offset", "1"}}, 55734863210217LL},
      {1100, "trailing", {}, 67287337091408LL},
  };
  for (const auto& c : cases) {
    auto s = make_schedule("discrete",
                           with(kLinear, "num_train_timesteps", std::to_string(c.T).c_str()));
    auto sp = make_spacing(c.spacing, c.config);
    const int64_t off = c.config.count("steps_offset") ? 1 : 0;
    EXPECT_EQ(spacing_checksum(*sp, *s, off), c.checksum)
        << c.spacing << " T=" << c.T << " offset=" << off;
  }
}

TEST(Spacing, DiffusersListsInClear) {
  auto s = make_schedule("discrete", kLinear);
  using V = std::vector<double>;
  EXPECT_EQ(times(make_spacing("linspace")->grid(*s, 10)),
            (V{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
  EXPECT_EQ(times(make_spacing("leading")->grid(*s, 10)),
            (V{900, 800, 700, 600, 500, 400, 300, 200, 100, 0}));
  EXPECT_EQ(times(make_spacing("leading")->grid(*s, 7)), (V{852, 710, 568, 426, 284, 142, 0}));
  EXPECT_EQ(times(make_spacing("leading", {{"steps_offset", "1"}})->grid(*s, 5)),
            (V{801, 601, 401, 201, 1}));
  EXPECT_EQ(times(make_spacing("trailing")->grid(*s, 10)),
            (V{999, 899, 799, 699, 599, 499, 399, 299, 199, 99}));
  // n = 48: numpy's arange gives 936 at k = 3 where round(1000 - 3 * 1000/48) - 1 would give 937
  // (the bug fixed in trailing.h).
  const V t48 = times(make_spacing("trailing")->grid(*s, 48));
  EXPECT_EQ(V(t48.begin(), t48.begin() + 6), (V{999, 978, 957, 936, 916, 895}));
  EXPECT_EQ(V(t48.end() - 3, t48.end()), (V{61, 41, 20}));
  // n = 61: diffusers returns 62 values, the extra one being -1; we keep the first 61.
  const V t61 = times(make_spacing("trailing")->grid(*s, 61));
  ASSERT_EQ(t61.size(), 61u);
  EXPECT_EQ(V(t61.end() - 3, t61.end()), (V{48, 32, 15}));
}

TEST(Spacing, GridReproducesDdpmPreviousTimestep) {
  // DDPMScheduler.previous_timestep after set_timesteps(n) is the next entry of the list, and -1
  // (alphas_cumprod "one") after the last; for leading that is t - T // n.
  auto s = make_schedule("discrete", kLinear);
  for (int64_t n : {1, 3, 7, 10, 50, 999, 1000}) {
    const TimeGrid g = make_spacing("leading")->grid(*s, n);
    for (int64_t i = 0; i + 1 < n; ++i)
      EXPECT_EQ(g[i + 1].t, g[i].t - 1000 / n) << "n=" << n << " i=" << i;
    EXPECT_EQ(g[n - 1].t, 0);
    EXPECT_EQ(g[n].t, -1);
    EXPECT_EQ(g[n].alpha, 1.0);
    EXPECT_EQ(g[n].sigma, 0.0);
  }
  // final=min lands on alphas_cumprod[0] (DDIM set_alpha_to_one=False).
  const TimeGrid gm = make_spacing("leading", {{"final", "min"}})->grid(*s, 10);
  EXPECT_EQ(gm.back().t, 0);
  EXPECT_EQ(gm.back().alpha, gm[9].alpha);
}

TEST(Spacing, BadStepCountsNameTheValue) {
  auto s = make_schedule("discrete", kLinear);
  for (const char* sp : {"linspace", "leading", "trailing"}) {
    try {
      make_spacing(sp)->grid(*s, 1001);
      ADD_FAILURE() << sp << " accepted 1001 steps for T=1000";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("1001"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_spacing(sp)->grid(*s, -3), Error);
  }
  EXPECT_THROW(make_spacing("leading", {{"steps_offset", "-1"}}), Error);
}

// The sigma spacings' model-time options: round_t rounds, trunc_t truncates (diffusers'
// DPM-Solver int64 cast), neither keeps the exact time; the sigmas stay exact either way. Beta
// spacing: Beta(alpha, beta) quantiles between the ends of the range, densest at both ends for
// alpha = beta < 1.
TEST(Spacing, SigmaSpacingsRoundOrTruncateTheModelTime) {
  const auto s = make_schedule("discrete");
  for (const std::string name : {"karras", "exponential", "beta"}) {
    SCOPED_TRACE(name);
    const TimeGrid exact = make_spacing(name)->grid(*s, 7);
    const TimeGrid rounded = make_spacing(name, {{"round_t", "true"}})->grid(*s, 7);
    const TimeGrid truncated = make_spacing(name, {{"trunc_t", "true"}})->grid(*s, 7);
    ASSERT_EQ(exact.size(), 8u);
    for (size_t i = 0; i + 1 < exact.size(); ++i) {
      EXPECT_EQ(rounded[i].t, std::nearbyint(exact[i].t)) << i;
      EXPECT_EQ(truncated[i].t, std::trunc(exact[i].t)) << i;
      EXPECT_EQ(truncated[i].sigma, exact[i].sigma) << i;
      EXPECT_EQ(rounded[i].sigma, exact[i].sigma) << i;
    }
    EXPECT_ERROR_NAMING(make_spacing(name, {{"round_t", "true"}, {"trunc_t", "true"}}),
                        "round_t and trunc_t exclude each other");
  }
  EXPECT_EQ(make_spacing("karras")->to_config().count("trunc_t"), 0u);
  EXPECT_EQ(make_spacing("exponential", {{"trunc_t", "true"}})->to_config().at("trunc_t"), "true");
  // Beta(0.6, 0.6): the steps at the ends are shorter than in the middle.
  const TimeGrid b = make_spacing("beta")->grid(*s, 10);
  const double first = b[0].sigma_ve() - b[1].sigma_ve(), mid = b[4].sigma_ve() - b[5].sigma_ve();
  const double last = b[8].sigma_ve() - b[9].sigma_ve();
  EXPECT_LT(first, mid);
  EXPECT_LT(last, mid);
  EXPECT_DOUBLE_EQ(b[0].sigma_ve(), s->at(s->t_max()).sigma_ve());
  EXPECT_DOUBLE_EQ(b[9].sigma_ve(), s->at(s->t_min()).sigma_ve());
  EXPECT_ERROR_NAMING(make_spacing("beta", {{"alpha", "-1"}}), "alpha=-1");
}

// range=leading / trailing: the sigma range of that spacing's timesteps at the same step count,
// i.e. the same grid as explicit sigma_min / sigma_max read off that spacing's grid.
TEST(Spacing, SigmaSpacingsTakeTheRangeOfAnotherSpacing) {
  const auto s = make_schedule("discrete");
  for (const std::string name : {"karras", "exponential", "beta"}) {
    for (const std::string range : {"leading", "trailing", "linspace"}) {
      SCOPED_TRACE(name + " over " + range);
      const int64_t n = 9, offset = range == "leading" ? 1 : 0;
      Config rc;
      if (range == "leading") rc["steps_offset"] = "1";
      const TimeGrid src = make_spacing(range, rc)->grid(*s, n);
      const TimeGrid want = make_spacing(name, {{"sigma_min", format_double(src[n - 1].sigma_ve())},
                                                {"sigma_max", format_double(src[0].sigma_ve())}})
                                ->grid(*s, n);
      const auto sp =
          make_spacing(name, {{"range", range}, {"range_steps_offset", std::to_string(offset)}});
      const TimeGrid got = sp->grid(*s, n);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << i;
      EXPECT_EQ(make_spacing(name, sp->to_config())->grid(*s, n), got);  // config round trip
      if (range == "linspace") {                                         // the schedule's own range
        EXPECT_EQ(got, make_spacing(name)->grid(*s, n));
      } else {
        EXPECT_LT(got[n - 1].sigma_ve(), got[0].sigma_ve());
        EXPECT_GT(got[n - 1].sigma_ve(), make_spacing(name)->grid(*s, n)[n - 1].sigma_ve());
      }
      // An explicit end wins; one step is sigma_max alone.
      EXPECT_DOUBLE_EQ(
          make_spacing(name, {{"range", range}, {"sigma_max", "5"}})->grid(*s, n)[0].sigma_ve(),
          5.0);
      EXPECT_EQ(make_spacing(name, {{"range", range}})->grid(*s, 1).size(), 2u);
    }
    EXPECT_ERROR_NAMING(make_spacing(name, {{"range", "nowhere"}}), "'nowhere'");
    EXPECT_ERROR_NAMING(make_spacing(name, {{"range_steps_offset", "-1"}}), "-1");
    EXPECT_ERROR_NAMING(make_spacing(name, {{"range", "trailing"}, {"range_steps_offset", "1"}}),
                        "range=leading only");
  }
  EXPECT_EQ(make_spacing("karras")->to_config().count("range"), 0u);
}

// diffusers' interpolation_type=log_linear: the timestep spacing's model times over n + 1
// log-uniform noise levels from sigma_max to sigma_min, where the run ends.
TEST(Spacing, LogLinearPutsTheSpacingsTimesOnLogUniformSigmas) {
  const auto s = make_schedule("discrete");
  const double smax = s->at(s->t_max()).sigma_ve(), smin = s->at(s->t_min()).sigma_ve();
  for (const std::string ts : {"linspace", "leading", "trailing"}) {
    SCOPED_TRACE(ts);
    const int64_t n = 10;
    Config tc;
    if (ts == "leading") tc["steps_offset"] = "1";
    const TimeGrid times = make_spacing(ts, tc)->grid(*s, n);
    Config lc{{"spacing", ts}};
    if (ts == "leading") lc["steps_offset"] = "1";
    const auto sp = make_spacing("log_linear", lc);
    const TimeGrid g = sp->grid(*s, n);
    ASSERT_EQ(g.size(), static_cast<size_t>(n + 1));
    for (int64_t i = 0; i <= n; ++i) {
      const double want =
          std::exp(std::log(smax) + (std::log(smin) - std::log(smax)) * static_cast<double>(i) / n);
      EXPECT_NEAR(g[i].sigma_ve(), want, 1e-12 * want) << i;
      EXPECT_NEAR(g[i].alpha * g[i].alpha + g[i].sigma * g[i].sigma, 1.0, 1e-12) << i;
      if (i < n) {
        EXPECT_EQ(g[i].t, times[i].t) << i;
      }
    }
    EXPECT_EQ(g.back(), s->at(s->t_min()));
    EXPECT_FALSE(g.back().is_clean());
    EXPECT_EQ(make_spacing("log_linear", sp->to_config())->grid(*s, n), g);
  }
  EXPECT_ERROR_NAMING(make_spacing("log_linear", {{"spacing", "karras"}}), "'karras'");
  EXPECT_ERROR_NAMING(make_spacing("log_linear", {{"steps_offset", "-1"}}), "-1");
  EXPECT_ERROR_NAMING(make_spacing("log_linear", {{"steps_offset", "1"}}), "spacing=leading");
  EXPECT_ERROR_NAMING(make_spacing("log_linear")->grid(*make_schedule("vp"), 5), "discrete");
}

}  // namespace
}  // namespace diffuse
