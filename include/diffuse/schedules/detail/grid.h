// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the spacings: numpy-exact linspace, the final-point option, grids from
// timesteps or from sigma_ve lists.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/config.h>
#include <diffuse/schedule.h>

namespace diffuse::detail {

/// numpy.linspace(start, stop, num): y[i] = start + i * step, y[num-1] = stop exactly.
inline std::vector<double> np_linspace(double start, double stop, int64_t num) {
  std::vector<double> y(static_cast<size_t>(std::max<int64_t>(num, 0)));
  if (num == 1) {
    y[0] = start;
    return y;
  }
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int64_t i = 0; i < num; ++i) y[i] = static_cast<double>(i) * step + start;
  if (num > 1) y[num - 1] = stop;
  return y;
}

/// numpy.round: half to even (the default rounding mode of nearbyint).
inline double np_round(double v) { return std::nearbyint(v); }

/// Where the last step lands: "zero" (sigma = 0, the clean point) or "min" (the schedule's
/// least noisy point t_min, diffusers' final_sigmas_type="sigma_min" / set_alpha_to_one=false).
inline const std::vector<std::string>& final_choices() {
  static const std::vector<std::string> c{"zero", "min"};
  return c;
}

inline TimePoint final_point(const NoiseSchedule& s, const std::string& final_kind) {
  return final_kind == "min" ? s.at(s.t_min()) : s.clean_point();
}

/// num_steps must be in [1, kMaxNumSteps] (a huge count fails here, before any allocation).
inline void check_steps(const std::string& who, int64_t n) {
  check(n >= 1, who, ": num_steps must be >= 1, got ", n);
  check(n <= kMaxNumSteps, who, ": num_steps=", n, " is more than the ", kMaxNumSteps,
        " steps a grid may have");
}

inline void check_discrete(const std::string& who, const NoiseSchedule& s) {
  check(s.num_train_timesteps() > 0, who, " spacing needs a discrete schedule, got '", s.name(), "'");
}

/// Grid visiting model times `ts` (noisiest first), then the final point.
inline TimeGrid grid_from_times(const NoiseSchedule& s, const std::vector<double>& ts, const std::string& final_kind) {
  TimeGrid g;
  g.reserve(ts.size() + 1);
  for (double t : ts) g.push_back(s.at(t));
  g.push_back(final_point(s, final_kind));
  return g;
}

/// Grid visiting noise levels `sigmas` (sigma_ve, noisiest first); t from the schedule's inverse,
/// optionally rounded (diffusers' DPM-Solver rounds, Euler does not). Only discrete schedules'
/// times are rounded: a continuous model time (VP t in [t_min, 1], EDM t = sigma) rounded to an
/// integer would feed the network a different noise level from the grid point's.
inline TimeGrid grid_from_sigmas(const NoiseSchedule& s, const std::vector<double>& sigmas, bool round_t) {
  TimeGrid g;
  g.reserve(sigmas.size());
  for (double sg : sigmas) {
    if (sg == 0.0) {
      g.push_back(s.clean_point());
      continue;
    }
    TimePoint p = s.at_sigma_ve(sg);
    if (round_t && s.num_train_timesteps() > 0) p.t = np_round(p.t);
    g.push_back(p);
  }
  return g;
}

inline std::string bool_str(bool b) { return b ? "true" : "false"; }

}  // namespace diffuse::detail
