// SPDX-License-Identifier: Apache-2.0
// The exposure-bias measurement of <diffuse/exposure_bias.h> (Ning et al., ICLR 2024; checked
// against forever208/ADM-ES @da955c1 datasets/exposure_bias_xt.py, see the header).
#include <diffuse/exposure_bias.h>

#include <cmath>
#include <limits>
#include <memory>

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/detail/aten.h>
#include <diffuse/noise.h>

namespace diffuse {

namespace {
/// Variance over dim 0 with divisor N (numpy's default), written out so it means the same on
/// every LibTorch version.
Tensor population_var(const Tensor& v) { return (v - v.mean(0)).pow(2).mean(0); }

ExposureBiasRecord exposure_bias_record(const Tensor& x, const Tensor& x0, const Tensor& var_x0,
                                        const StepContext& st) {
  const TimePoint& p = st.next;
  const int64_t n = x.size(0);
  const Tensor xd = x.to(at::kDouble).reshape({n, -1});
  const Tensor r = xd - x0 * p.alpha;
  ExposureBiasRecord rec;
  rec.index = st.index;
  rec.t = p.t;
  rec.alpha = p.alpha;
  rec.sigma = p.sigma;
  rec.sigma_hat = population_var(r).sqrt().mean().item<double>();
  rec.delta = (rec.sigma_hat - p.sigma) * (rec.sigma_hat - p.sigma);
  rec.var_chain = population_var(xd).mean().item<double>();
  rec.var_forward = (var_x0 * (p.alpha * p.alpha) + p.sigma * p.sigma).mean().item<double>();
  rec.variance_ratio = rec.var_forward > 0 ? rec.var_chain / rec.var_forward
                                           : std::numeric_limits<double>::quiet_NaN();
  return rec;
}
}  // namespace

const std::vector<std::pair<std::string, ExposureBiasMode>>& exposure_bias_mode_names() {
  static const std::vector<std::pair<std::string, ExposureBiasMode>> names = {
      {"accumulated", ExposureBiasMode::kAccumulated},
      {"single_step", ExposureBiasMode::kSingleStep}};
  return names;
}

ExposureBiasMode parse_exposure_bias_mode(const std::string& name) {
  return parse_enum(name, exposure_bias_mode_names(), "ExposureBiasOptions.mode");
}

std::string to_string(ExposureBiasMode mode) { return enum_name(mode, exposure_bias_mode_names()); }

double total_delta(const std::vector<ExposureBiasRecord>& records) {
  double s = 0;
  for (const auto& r : records) s += r.delta;
  return s;
}

std::vector<ExposureBiasRecord> measure_exposure_bias(const Sampler& sampler,
                                                      const Denoiser& denoiser,
                                                      const NoiseSchedule& schedule,
                                                      const Tensor& x0, const SampleOptions& o,
                                                      const ExposureBiasOptions& eb) {
  check(x0.defined() && x0.dim() >= 1 && x0.size(0) >= 2,
        "measure_exposure_bias: x0 needs a batch of at least 2 samples, got shape ",
        x0.defined() ? x0.sizes() : c10::IntArrayRef{});
  check(at::isFloatingType(x0.scalar_type()),
        "measure_exposure_bias: x0 must be floating point, got ", x0.scalar_type());
  const detail::CorrectionRun run(o.corrections, "measure_exposure_bias");
  const std::vector<Correction*>& corrections = run.get();
  const TimeGrid grid = detail::make_grid(schedule, o, corrections);
  const int64_t n = static_cast<int64_t>(grid.size()) - 1;
  check(eb.first_step() >= 0 && eb.first_step() < n,
        "ExposureBiasOptions.first_step=", eb.first_step(), " is outside [0, ", n,
        ") for a grid of ", n, " steps");
  std::shared_ptr<NoiseSource> noise =
      o.noise ? o.noise : std::shared_ptr<NoiseSource>(make_per_sample_noise(o.seed));
  SampleContext ctx;
  ctx.schedule = &schedule;
  ctx.noise = noise.get();
  ctx.corrections = corrections;
  const ModelFn model = make_model_fn(denoiser, o, corrections);

  const Tensor x0c = x0.to(Sampler::compute_dtype(x0.scalar_type()));
  const Tensor x0d = x0.to(at::kDouble).reshape({x0.size(0), -1});
  const Tensor var_x0 = population_var(x0d);
  auto forward = [&](const TimePoint& p) {
    return x0c * p.alpha + noise->randn_like(x0c) * p.sigma;
  };

  std::vector<ExposureBiasRecord> out;
  if (eb.mode() == ExposureBiasMode::kAccumulated) {
    ctx.on_step = [&](const StepInfo& info) {
      out.push_back(exposure_bias_record(info.x, x0d, var_x0, info.step));
      if (o.on_step) o.on_step(info);
    };
    sampler.sample(model, forward(grid[eb.first_step()]), grid, ctx, eb.first_step());
    return out;
  }
  for (int64_t i = eb.first_step(); i < n; ++i) {
    StepContext st = step_context(grid, i, noise.get());
    const Tensor x = forward(grid[i]);
    for (Correction* c : corrections) c->on_time(x, st);
    const StepResult r = sampler.step(model, x, st, History{}, ctx);
    out.push_back(exposure_bias_record(r.x, x0d, var_x0, st));
    if (o.on_step) o.on_step(StepInfo{st, r.x, r.pred});
  }
  return out;
}

}  // namespace diffuse
