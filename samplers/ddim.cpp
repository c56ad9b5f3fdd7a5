// SPDX-License-Identifier: Apache-2.0
// DDIM sampler (declared in <diffuse/samplers/ddim.h>; the equations are there).
#include <diffuse/samplers/ddim.h>

#include <algorithm>
#include <cmath>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

namespace {

const std::vector<std::pair<std::string, DdimPrevTimestep>>& prev_timestep_names() {
  static const std::vector<std::pair<std::string, DdimPrevTimestep>> names{
      {"grid", DdimPrevTimestep::kGrid}, {"train_stride", DdimPrevTimestep::kTrainStride}};
  return names;
}

TimePoint train_stride_next(const StepContext& st, const SampleContext& ctx) {
  check(ctx.schedule != nullptr && ctx.schedule->num_train_timesteps() > 0,
        "ddim: prev_timestep=train_stride needs a discrete schedule");
  const int64_t T = ctx.schedule->num_train_timesteps();
  const double prev = st.now.t - static_cast<double>(T / st.num_steps);
  // Below 0 diffusers uses final_alpha_cumprod, i.e. the grid's own final point.
  return prev >= 0 ? ctx.schedule->at(prev) : st.grid->back();
}

}  // namespace

DdimSampler::DdimSampler(DdimOptions o) : options(std::move(o)) {
  check(std::isfinite(options.eta()) && options.eta() >= 0,
        "DdimOptions.eta must be finite and >= 0, got ", options.eta());
  check(options.prev_timestep() == DdimPrevTimestep::kGrid ||
            options.prev_timestep() == DdimPrevTimestep::kTrainStride,
        "DdimOptions.prev_timestep must be kGrid or kTrainStride, got ",
        static_cast<int>(options.prev_timestep()));
}

std::unique_ptr<Sampler> DdimSampler::from_config(const Config& c) {
  ConfigReader r(c, "ddim");
  DdimOptions o;
  o.eta(r.get_double("eta", o.eta()));
  o.prev_timestep(r.get_enum("prev_timestep", o.prev_timestep(), prev_timestep_names()));
  r.finish();
  return std::make_unique<DdimSampler>(o);
}

Config DdimSampler::to_config() const {
  return {{"eta", format_double(options.eta())},
          {"prev_timestep", enum_name(options.prev_timestep(), prev_timestep_names())}};
}

StepResult DdimSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                  const History&, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  TimePoint next = st.next;
  if (options.prev_timestep() == DdimPrevTimestep::kTrainStride) next = train_stride_next(st, ctx);
  const double eta_sigma =
      (options.eta() > 0 && next.sigma > 0 && now.sigma > 0)
          ? options.eta() * (next.sigma / now.sigma) *
                std::sqrt(std::max(0.0, 1.0 - (now.alpha * now.alpha) / (next.alpha * next.alpha)))
          : 0.0;
  const double dir = std::sqrt(std::max(0.0, next.sigma * next.sigma - eta_sigma * eta_sigma));
  // x_next = alpha' x0 + dir eps, computed by the model function in its conversion pass where it
  // can (StepContext::update).
  const LinearUpdate update{LinearUpdate::Form::kX0Eps, next.alpha, dir};
  UpdatedPrediction r = predict_with_update(model, x, st, &update);
  if (eta_sigma > 0) ctx.add_randn_(r.x_next, eta_sigma);
  return {std::move(r.x_next), std::move(r.pred)};
}

DIFFUSE_REGISTER_SAMPLER(DdimSampler, "ddim",
                         "DDIM (Song et al. 2020); eta=0 deterministic, eta=1 ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(DdimA1111, "DDIM", "ddim", {}, "A1111's label for ddim");

}  // namespace diffuse
