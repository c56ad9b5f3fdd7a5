// SPDX-License-Identifier: Apache-2.0
#include <diffuse/schedule.h>

namespace diffuse {

void validate_grid(const TimeGrid& grid) {
  check(grid.size() >= 2, "a time grid needs at least 2 points (1 step), got ", grid.size());
  for (size_t i = 0; i < grid.size(); ++i) {
    const auto& p = grid[i];
    check(std::isfinite(p.t) && std::isfinite(p.alpha) && std::isfinite(p.sigma) && p.alpha >= 0 &&
              p.sigma >= 0 && (p.alpha > 0 || p.sigma > 0),
          "time grid point ", i, " is invalid: t=", p.t, " alpha=", p.alpha, " sigma=", p.sigma);
    if (i > 0) {
      // The last step may have zero length: diffusers' DDIM with set_alpha_to_one=false steps from
      // t=0 onto alphas_cumprod[0] itself.
      const bool last = i + 1 == grid.size();
      const bool ok = last ? grid[i].log_snr() >= grid[i - 1].log_snr()
                           : grid[i].log_snr() > grid[i - 1].log_snr();
      check(ok, "time grid must be strictly decreasing in noise: point ", i, " (t=", p.t,
            ", sigma_ve=", p.sigma_ve(), ") is not less noisy than point ", i - 1,
            " (t=", grid[i - 1].t, ", sigma_ve=", grid[i - 1].sigma_ve(), ")");
    }
  }
  for (size_t i = 0; i + 1 < grid.size(); ++i)
    check(!grid[i].is_clean(), "time grid point ", i, " has sigma = 0 but is not the last point");
}

}  // namespace diffuse
