// SPDX-License-Identifier: Apache-2.0
// A user-supplied list of noise levels sigma_ve (k-diffusion's `sigmas`): num_steps + 1 values,
// strictly descending, the last one may be 0 (the clean point). Model times come from the
// schedule's inverse (optionally rounded).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/schedules/detail/grid.h>

namespace diffuse {

struct SigmasSpacingOptions {
  /// Noise levels, noisiest first, including the final one (required).
  TORCH_ARG(std::vector<double>, sigmas) = {};
  /// Round discrete model times. Default false.
  TORCH_ARG(bool, round_t) = false;
};

class SigmasSpacing final : public TimestepSpacing {
 public:
  explicit SigmasSpacing(SigmasSpacingOptions o) : options(std::move(o)) {
    const auto& sg = options.sigmas();
    check(sg.size() >= 2, "sigmas spacing: needs at least 2 sigmas (1 step), got ", sg.size());
    for (size_t i = 0; i < sg.size(); ++i) {
      check(std::isfinite(sg[i]) && sg[i] >= 0, "sigmas spacing: sigmas[", i, "]=", sg[i],
            " must be finite and >= 0");
      if (i > 0)
        check(sg[i] < sg[i - 1], "sigmas spacing: sigmas must be strictly descending, but sigmas[", i, "]=", sg[i],
              " >= sigmas[", i - 1, "]=", sg[i - 1]);
    }
  }
  static std::unique_ptr<TimestepSpacing> from_config(const Config& c) {
    ConfigReader r(c, "sigmas spacing");
    SigmasSpacingOptions o;
    o.sigmas(r.get_doubles("sigmas"));
    o.round_t(r.get_bool("round_t", o.round_t()));
    r.finish();
    return std::make_unique<SigmasSpacing>(o);
  }
  Config to_config() const override {
    std::string v;
    for (double t : options.sigmas()) v += (v.empty() ? "" : ";") + format_double(t);
    return {{"sigmas", v}, {"round_t", detail::bool_str(options.round_t())}};
  }
  std::string name() const override { return "sigmas"; }

  TimeGrid grid(const NoiseSchedule& s, int64_t n) const override {
    // n == size - 1, not n + 1 == size: n + 1 overflows for n = INT64_MAX.
    const int64_t given = static_cast<int64_t>(options.sigmas().size());
    check(n == given - 1, "sigmas spacing: num_steps=", n, " needs num_steps + 1 sigmas but ",
          given, " were given");
    return detail::grid_from_sigmas(s, options.sigmas(), options.round_t());
  }

  SigmasSpacingOptions options;
};

DIFFUSE_REGISTER(::diffuse::TimestepSpacing, SigmasSpacing, "sigmas", "a user-supplied list of sigma_ve values");

}  // namespace diffuse
