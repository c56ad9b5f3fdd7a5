// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/tcd.h>.
#include <diffuse/samplers/tcd.h>

#include <algorithm>
#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

TcdSampler::TcdSampler(TcdOptions o) : options(std::move(o)) {
  check(options.gamma() >= 0 && options.gamma() <= 1, "TcdOptions.gamma must be in [0, 1], got ",
        options.gamma());
}

std::unique_ptr<Sampler> TcdSampler::from_config(const Config& c) {
  ConfigReader r(c, "tcd");
  TcdOptions o;
  check(!(r.has("gamma") && r.has("eta")), "tcd: give gamma or its alias eta, not both");
  o.gamma(r.get_double(r.has("eta") ? "eta" : "gamma", o.gamma()));
  r.finish();
  return std::make_unique<TcdSampler>(o);
}

Config TcdSampler::to_config() const { return {{"gamma", format_double(options.gamma())}}; }

StepResult TcdSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                 const History&, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  TimePoint s = next;
  if (!next.is_clean() && options.gamma() > 0) {
    check(ctx.schedule != nullptr, "tcd: step ", st.index, " needs the noise schedule to place ",
          "its intermediate point (SampleContext.schedule is null)");
    const NoiseSchedule& sched = *ctx.schedule;
    double t_s = (1.0 - options.gamma()) * next.t;
    if (sched.num_train_timesteps() > 0) t_s = std::floor(t_s);
    s = sched.at(std::clamp(t_s, sched.t_min(), next.t));
  }
  Prediction p = model(x, now, st);
  Tensor x_next = lincomb(p.x0, s.alpha, p.eps, s.sigma);
  if (s == next) return {x_next, p};
  const ForwardTransition f = forward_transition(s, next);
  scale_(x_next, f.scale);
  if (f.std > 0) ctx.add_randn_(x_next, f.std);
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(TcdSampler, "tcd",
                         "Trajectory Consistency Distillation's strategic stochastic sampling "
                         "(diffusers TCDScheduler), gamma 0 = DDIM; with the lcm spacing");

}  // namespace diffuse
