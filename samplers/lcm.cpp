// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/lcm.h>.
#include <diffuse/samplers/lcm.h>

#include <cmath>
#include <utility>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

LcmSampler::LcmSampler(LcmOptions o) : options(std::move(o)) {
  check(std::isfinite(options.timestep_scaling()) && options.timestep_scaling() > 0,
        "LcmOptions.timestep_scaling must be finite and > 0, got ", options.timestep_scaling());
  check(std::isfinite(options.sigma_data()) && options.sigma_data() > 0,
        "LcmOptions.sigma_data must be finite and > 0, got ", options.sigma_data());
}

std::unique_ptr<Sampler> LcmSampler::from_config(const Config& c) {
  ConfigReader r(c, "lcm");
  LcmOptions o;
  o.boundary_condition(r.get_bool("boundary_condition", o.boundary_condition()));
  o.timestep_scaling(r.get_double("timestep_scaling", o.timestep_scaling()));
  o.sigma_data(r.get_double("sigma_data", o.sigma_data()));
  r.finish();
  return std::make_unique<LcmSampler>(o);
}

Config LcmSampler::to_config() const {
  return {{"boundary_condition", options.boundary_condition() ? "true" : "false"},
          {"timestep_scaling", format_double(options.timestep_scaling())},
          {"sigma_data", format_double(options.sigma_data())}};
}

std::pair<double, double> LcmSampler::boundary_scalings(double t) const {
  const double s = t * options.timestep_scaling();
  const double sd2 = options.sigma_data() * options.sigma_data();
  return {sd2 / (s * s + sd2), s / std::sqrt(s * s + sd2)};
}

StepResult LcmSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                 const History&, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  Prediction p = model(x, now, st);
  if (options.boundary_condition()) {
    const auto [c_skip, c_out] = boundary_scalings(now.t);
    p.x0 = lincomb(p.x0, c_out, x, c_skip);
    if (now.sigma > 0) p.eps = solve(x, p.x0, now.alpha, now.sigma);
  }
  Tensor x_next = scaled(p.x0, next.alpha);
  if (next.sigma > 0) ctx.add_randn_(x_next, next.sigma);
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(LcmSampler, "lcm",
                         "Latent Consistency Model multistep sampling (diffusers LCMScheduler), "
                         "few steps; with the lcm spacing");
DIFFUSE_REGISTER_SAMPLER_ALIAS(LcmA1111, "LCM", "lcm", {}, "A1111's label for lcm");

}  // namespace diffuse
