// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/training/objectives/denoising.h>.
#include <diffuse/training/objectives/denoising.h>

#include <cmath>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>
#include <diffuse/training/objectives/detail/denoising_core.h>

namespace diffuse {

DenoisingObjective::DenoisingObjective(DenoisingOptions o) : options(std::move(o)) {
  detail::validate(core());
  check(std::isfinite(options.input_perturbation()) && options.input_perturbation() >= 0,
        "denoising: input_perturbation must be finite and >= 0, got ",
        options.input_perturbation());
}

std::unique_ptr<Objective> DenoisingObjective::from_config(const Config& c) {
  ConfigReader r(c, "denoising");
  DenoisingOptions o;
  detail::apply_core(detail::read_core(r), o);
  o.input_perturbation(r.get_double("input_perturbation", o.input_perturbation()));
  r.finish();
  return std::make_unique<DenoisingObjective>(o);
}

Config DenoisingObjective::to_config() const {
  Config c;
  detail::write_core(core(), c);
  c["input_perturbation"] = format_double(options.input_perturbation());
  return c;
}

ObjectiveDraw DenoisingObjective::draw(const NoiseSchedule& s, const Batch& b,
                                       at::Generator& gen) const {
  detail::check_batch(b, "denoising");
  ObjectiveDraw d;
  d.t = detail::draw_times(s, b.x0, gen, core());
  d.eps = detail::normal_like(b.x0, gen);
  if (options.input_perturbation() > 0) d.extra["xi"] = detail::normal_like(b.x0, gen);
  return d;
}

ObjectiveOutput DenoisingObjective::evaluate(const Network& net, const NoiseSchedule& s,
                                             const Batch& b, const ObjectiveDraw& d) const {
  detail::check_batch(b, "denoising");
  detail::check_draw(d, b, "denoising");
  const at::Tensor& x0 = b.x0;
  const detail::ForwardScales f = detail::forward_scales(s, d.t, x0);
  at::Tensor noise = d.eps;
  if (options.input_perturbation() > 0) {
    auto it = d.extra.find("xi");
    check(it != d.extra.end() && it->second.defined() && it->second.sizes() == x0.sizes(),
          "denoising: input_perturbation=", options.input_perturbation(),
          " needs the draw's extra[\"xi\"] shaped like x0");
    noise = d.eps + it->second * options.input_perturbation();
  }
  const at::Tensor x_t = f.a * x0 + f.s * noise;
  const at::Tensor out = detail::call_network(net, x_t, d.t, b.cond, "denoising");
  const at::Tensor target = detail::regression_target(options.prediction_type(), x0, d.eps, f);
  const at::Tensor diff = out - target;
  const at::Tensor mse = detail::mean_per_example(diff * diff);
  ObjectiveOutput o;
  o.loss = mse * detail::weights_for(f, core(), x0);
  o.terms["mse"] = mse;
  return o;
}

detail::DenoisingCoreOptions DenoisingObjective::core() const { return detail::core_of(options); }

DIFFUSE_REGISTER_OBJECTIVE(
    DenoisingObjective, "denoising",
    "denoising score matching: epsilon / v / x0 targets, uniform or log-normal t, "
    "min-SNR / EDM weighting, optional input perturbation (DDPM-IP)");
DIFFUSE_REGISTER_OBJECTIVE_ALIAS(
    denoising_input_perturbation, "input_perturbation", "denoising",
    (Config{{"input_perturbation", "0.1"}}),
    "DDPM-IP: denoising with input perturbation gamma = 0.1 (Ning et al. 2023)");
DIFFUSE_REGISTER_OBJECTIVE_ALIAS(
    denoising_flow_matching, "flow_matching", "denoising",
    (Config{{"prediction_type", "flow_prediction"}, {"time_sampling", "logit_normal"}}),
    "flow matching / rectified flow (SD3, Esser et al. 2024): velocity target eps - x0, "
    "logit-normal(0, 1) noise levels; train it with the flow schedule");
DIFFUSE_REGISTER_OBJECTIVE_ALIAS(
    denoising_ddpm_ip, "ddpm_ip", "denoising", (Config{{"input_perturbation", "0.1"}}),
    "DDPM-IP: denoising with input perturbation gamma = 0.1 (Ning et al. 2023)");

}  // namespace diffuse
