// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/spacing/sigmas.h>.
#include <diffuse/schedules/spacing/sigmas.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

SigmasSpacing::SigmasSpacing(SigmasSpacingOptions o) : options(std::move(o)) {
  const auto& sg = options.sigmas();
  check(sg.size() >= 2, "sigmas spacing: needs at least 2 sigmas (1 step), got ", sg.size());
  for (size_t i = 0; i < sg.size(); ++i) {
    check(std::isfinite(sg[i]) && sg[i] >= 0, "sigmas spacing: sigmas[", i, "]=", sg[i],
          " must be finite and >= 0");
    if (i > 0)
      check(sg[i] < sg[i - 1], "sigmas spacing: sigmas must be strictly descending, but sigmas[", i,
            "]=", sg[i], " >= sigmas[", i - 1, "]=", sg[i - 1]);
  }
}

std::unique_ptr<TimestepSpacing> SigmasSpacing::from_config(const Config& c) {
  ConfigReader r(c, "sigmas spacing");
  SigmasSpacingOptions o;
  o.sigmas(r.get_doubles("sigmas"));
  o.round_t(r.get_bool("round_t", o.round_t()));
  r.finish();
  return std::make_unique<SigmasSpacing>(o);
}

Config SigmasSpacing::to_config() const {
  std::string v;
  for (double t : options.sigmas()) v += (v.empty() ? "" : ";") + format_double(t);
  return {{"sigmas", v}, {"round_t", detail::bool_str(options.round_t())}};
}

TimeGrid SigmasSpacing::grid(const NoiseSchedule& s, int64_t n) const {
  // n == size - 1, not n + 1 == size: n + 1 overflows for n = INT64_MAX.
  const int64_t given = static_cast<int64_t>(options.sigmas().size());
  check(n == given - 1, "sigmas spacing: num_steps=", n, " needs num_steps + 1 sigmas but ", given,
        " were given");
  return detail::grid_from_sigmas(s, options.sigmas(), options.round_t());
}

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, SigmasSpacing, "sigmas",
                 "a user-supplied list of sigma_ve values");

}  // namespace diffuse
