// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/ipndm.h>.
#include <diffuse/samplers/ipndm.h>

#include <algorithm>

#include <diffuse/registry.h>
#include <diffuse/samplers/detail/sigma_multistep.h>
#include <diffuse/samplers/lms.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

IpndmSampler::IpndmSampler(IpndmOptions o) : options(std::move(o)) {
  check(options.order() >= 1 && options.order() <= 4, "IpndmOptions.order must be 1 to 4, got ",
        options.order());
}

std::unique_ptr<Sampler> IpndmSampler::from_config(const Config& c) {
  ConfigReader r(c, "ipndm");
  IpndmOptions o;
  o.order(r.get_int("order", o.order()));
  o.variable_step(r.get_bool("variable_step", o.variable_step()));
  r.finish();
  return std::make_unique<IpndmSampler>(o);
}

Config IpndmSampler::to_config() const {
  return {{"order", std::to_string(options.order())},
          {"variable_step", options.variable_step() ? "true" : "false"}};
}

std::vector<double> IpndmSampler::weights(const std::vector<double>& nodes, double to) const {
  const size_t k = nodes.size();
  if (k == 1) return {1.0};
  if (!options.variable_step()) {
    if (k == 2) return {3.0 / 2, -1.0 / 2};
    if (k == 3) return {23.0 / 12, -16.0 / 12, 5.0 / 12};
    return {55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24};
  }
  // The exact variable-step Adams-Bashforth weights (lms's integrals, divided by the step).
  check(to != nodes[0], "IpndmSampler::weights: a zero-length step has no weights");
  std::vector<double> w = LmsSampler::coefficients(nodes, to);
  for (double& wj : w) wj /= to - nodes[0];
  return w;
}

StepResult IpndmSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                   const History& history, SampleContext&) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0 && now.alpha > 0, "ipndm: step ", st.index,
        " needs 0 < sigma_ve < inf at its start (zero terminal SNR or pure noise: alpha = 0), got "
        "t=",
        now.t, " alpha=", now.alpha, " sigma=", now.sigma);
  Prediction p = model(x, now, st);
  if (next.is_clean()) return {scaled(p.x0, next.alpha), p};  // the denoising step
  const size_t k = std::min<size_t>(static_cast<size_t>(options.order()), history.size() + 1);
  const std::vector<double> nodes = detail::sigma_nodes(now, history, k);
  const double to = next.sigma_ve();
  // Variable step: lms's integrals themselves (a zero-length step has zero weights).
  std::vector<double> c =
      options.variable_step() ? LmsSampler::coefficients(nodes, to) : weights(nodes, to);
  if (!options.variable_step())
    for (double& cj : c) cj *= to - nodes[0];
  return {detail::sigma_multistep(x, now, next, p, history, nodes, c), p};
}

DIFFUSE_REGISTER_SAMPLER(IpndmSampler, "ipndm",
                         "iPNDM (Zhang & Chen 2023): Adams-Bashforth in sigma_ve, constant-step "
                         "coefficients, orders 1-4 (ComfyUI ipndm)");
DIFFUSE_REGISTER_SAMPLER_ALIAS(IpndmV, "ipndm_v", "ipndm", (Config{{"variable_step", "true"}}),
                               "ComfyUI's ipndm_v: iPNDM with exact variable-step coefficients");

}  // namespace diffuse
