// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/ddpm.h>.
#include <diffuse/samplers/ddpm.h>

#include <algorithm>
#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

namespace {

const std::vector<std::pair<std::string, DdpmVarianceType>>& variance_type_names() {
  static const std::vector<std::pair<std::string, DdpmVarianceType>> names{
      {"fixed_small", DdpmVarianceType::kFixedSmall},
      {"fixed_small_log", DdpmVarianceType::kFixedSmallLog},
      {"fixed_large", DdpmVarianceType::kFixedLarge},
      {"learned_range", DdpmVarianceType::kLearnedRange}};
  return names;
}

}  // namespace

DdpmSampler::DdpmSampler(DdpmOptions o) : options(std::move(o)) {
  const auto v = options.variance_type();
  check(v == DdpmVarianceType::kFixedSmall || v == DdpmVarianceType::kFixedSmallLog ||
            v == DdpmVarianceType::kFixedLarge || v == DdpmVarianceType::kLearnedRange,
        "DdpmOptions.variance_type must be one of kFixedSmall, kFixedSmallLog, kFixedLarge, "
        "kLearnedRange, got ",
        static_cast<int>(v));
}

std::unique_ptr<Sampler> DdpmSampler::from_config(const Config& c) {
  ConfigReader r(c, "ddpm");
  DdpmOptions o;
  o.variance_type(r.get_enum("variance_type", o.variance_type(), variance_type_names()));
  o.diffusers_final_noise(r.get_bool("diffusers_final_noise", o.diffusers_final_noise()));
  r.finish();
  return std::make_unique<DdpmSampler>(o);
}

Config DdpmSampler::to_config() const {
  return {{"variance_type", enum_name(options.variance_type(), variance_type_names())},
          {"diffusers_final_noise", options.diffusers_final_noise() ? "true" : "false"}};
}

double DdpmSampler::step_beta(const TimePoint& now, const TimePoint& next) {
  const double a = now.alpha / next.alpha;
  return now.sigma * now.sigma - a * a * next.sigma * next.sigma;
}

double DdpmSampler::variance(const TimePoint& now, const TimePoint& next,
                             DdpmVarianceType variance_type) {
  const double beta = step_beta(now, next);
  if (variance_type == DdpmVarianceType::kFixedLarge) return beta;
  const double small = beta * next.sigma * next.sigma / (now.sigma * now.sigma);
  return std::max(small, kMinVariance);
}

StepResult DdpmSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                  const History&, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(next.alpha > 0, "ddpm: cannot step onto a point with alpha = 0 (t=", next.t, ")");
  const double s2 = now.sigma * now.sigma;
  const double beta = step_beta(now, next);
  // Eq. (7): the posterior mean in terms of the (clipped) x0 prediction, computed by the model
  // function in its conversion pass where it can (x c_x + x0 c_x0: the sum of two rounded
  // products, the same bits in either order).
  const double c_x0 = next.alpha * beta / s2;
  const double c_x = (now.alpha / next.alpha) * next.sigma * next.sigma / s2;
  const LinearUpdate mean{LinearUpdate::Form::kXX0, c_x, c_x0};
  UpdatedPrediction r = predict_with_update(model, x, st, &mean);
  const Prediction& p = r.pred;
  Tensor& x_next = r.x_next;
  const bool noisy = !next.is_clean() || (options.diffusers_final_noise() && now.t > 0);
  if (noisy && options.variance_type() == DdpmVarianceType::kLearnedRange) {
    check(p.variance.defined(),
          "ddpm: variance_type=learned_range needs a network with a learned variance (a "
          "Denoiser with learned_variance, e.g. a DiT with learn_sigma and the card key "
          "learned_variance=true)");
    // exp(0.5 * (frac log(beta') + (1 - frac) log(beta-tilde))), frac = (v + 1) / 2.
    const double log_large =
        std::log(std::max(variance(now, next, DdpmVarianceType::kFixedLarge), kMinVariance));
    const double log_small = std::log(variance(now, next, DdpmVarianceType::kFixedSmall));
    // log variance = log_small + frac (log_large - log_small); Tensor methods (no ATen operators
    // in module sources).
    const Tensor frac = p.variance.to(x.scalar_type()).add(1.0).mul(0.5);
    const Tensor stddev = frac.mul(log_large - log_small).add(log_small).mul(0.5).exp();
    x_next = x_next.add(stddev.mul(ctx.randn_like(x)));
  } else if (noisy) {
    const double stddev = std::sqrt(std::max(variance(now, next, options.variance_type()), 0.0));
    ctx.add_randn_(x_next, stddev);
  }
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(DdpmSampler, "ddpm",
                         "DDPM ancestral sampling (Ho et al. 2020) on the respaced chain; "
                         "fixed_small/fixed_large or learned_range variance");

}  // namespace diffuse
