// SPDX-License-Identifier: Apache-2.0
// The noise of the SDE samplers (dpmpp_sde, dpmpp_3m_sde): a Brownian tree over the grid's noise
// range (k-diffusion's BrownianTreeNoiseSampler, their default there) or fresh Gaussian draws per
// call (k-diffusion's default_noise_sampler).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include <diffuse/config.h>
#include <diffuse/sampler.h>

namespace diffuse {

/// Where an SDE sampler's noise comes from.
enum class SdeNoise {
  brownian,  ///< "brownian" (default): increments of one seeded Brownian path in sigma_ve
  gaussian   ///< "gaussian": an independent N(0, I) draw per call
};

inline const EnumNames<SdeNoise>& sde_noise_names() {
  static const EnumNames<SdeNoise> names{{"brownian", SdeNoise::brownian},
                                         {"gaussian", SdeNoise::gaussian}};
  return names;
}

namespace detail {

/// N(0, I) noise for the part of a step from noise level s0 to s1 (sigma_ve): the normalised
/// Brownian increment over [s1, s0] of the run's tree, which spans the whole grid's positive noise
/// levels (so a run started part-way sees the same path as the full run), or a fresh draw.
inline Tensor sde_noise(SampleContext& ctx, const StepContext& st, const Tensor& x, SdeNoise kind,
                        double s0, double s1, const char* who) {
  if (kind == SdeNoise::gaussian) return ctx.randn_like(x);
  check(st.grid != nullptr, who,
        ": noise=brownian needs the run's grid (StepContext.grid) to span its Brownian path; "
        "use Sampler::sample or noise=gaussian");
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (const TimePoint& p : *st.grid) {
    const double s = p.sigma_ve();
    if (s > 0 && std::isfinite(s)) lo = std::min(lo, s), hi = std::max(hi, s);
  }
  check(lo < hi, who, ": noise=brownian needs two distinct positive noise levels in the grid");
  return ctx.brownian_like(x, s0, s1, lo, hi);
}

}  // namespace detail
}  // namespace diffuse
