// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/lms.h>.
#include <diffuse/samplers/lms.h>

#include <cmath>
#include <vector>

#include <diffuse/registry.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/samplers/detail/sigma_multistep.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

LmsSampler::LmsSampler(LmsOptions o) : options(std::move(o)) {
  check(options.order() >= 1 && options.order() <= 4, "LmsOptions.order must be 1 to 4, got ",
        options.order());
}

std::unique_ptr<Sampler> LmsSampler::from_config(const Config& c) {
  ConfigReader r(c, "lms");
  LmsOptions o;
  o.order(r.get_int("order", o.order()));
  r.finish();
  return std::make_unique<LmsSampler>(o);
}

Config LmsSampler::to_config() const { return {{"order", std::to_string(options.order())}}; }

std::vector<double> LmsSampler::coefficients(const std::vector<double>& nodes, double to) {
  const size_t k = nodes.size();
  const double from = nodes[0];
  std::vector<double> out(k);
  const double u = to - from;
  for (size_t j = 0; j < k; ++j) {
    // The basis polynomial of node j in powers of (tau - from), integrated over [from, to].
    const std::vector<double> poly = lagrange_basis(nodes, j, from);
    double integral = 0, power = u;
    for (size_t e = 0; e < poly.size(); ++e, power *= u)
      integral += poly[e] * power / static_cast<double>(e + 1);
    out[j] = integral;
  }
  return out;
}

StepResult LmsSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                 const History& history, SampleContext&) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.sigma > 0 && now.alpha > 0, "lms: step ", st.index,
        " needs 0 < sigma_ve < inf at its start (zero terminal SNR or pure noise: alpha = 0), got "
        "t=",
        now.t, " alpha=", now.alpha, " sigma=", now.sigma);
  Prediction p = model(x, now, st);
  const size_t k = std::min<size_t>(static_cast<size_t>(options.order()), history.size() + 1);
  const std::vector<double> nodes = detail::sigma_nodes(now, history, k);
  return {detail::sigma_multistep(x, now, next, p, history, nodes,
                                  coefficients(nodes, next.sigma_ve())),
          p};
}

DIFFUSE_REGISTER_SAMPLER(LmsSampler, "lms",
                         "linear multistep in sigma_ve (k-diffusion sample_lms, diffusers "
                         "LMSDiscreteScheduler), order 1-4");
DIFFUSE_REGISTER_SAMPLER_ALIAS(LmsK, "k_lms", "lms", {}, "A1111's name for lms");
DIFFUSE_REGISTER_SAMPLER_ALIAS(LmsA1111, "LMS", "lms", {}, "A1111's label for lms");

}  // namespace diffuse
