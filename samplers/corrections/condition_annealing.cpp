// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/corrections/condition_annealing.h>.
#include <diffuse/samplers/corrections/condition_annealing.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>

namespace diffuse {

namespace {

const std::vector<std::pair<std::string, ConditionAnnealingRescaleOver>>& rescale_over_names() {
  static const std::vector<std::pair<std::string, ConditionAnnealingRescaleOver>> names{
      {"sample", ConditionAnnealingRescaleOver::kSample},
      {"batch", ConditionAnnealingRescaleOver::kBatch}};
  return names;
}

const std::vector<std::pair<std::string, ConditionAnnealingTime>>& time_names() {
  static const std::vector<std::pair<std::string, ConditionAnnealingTime>> names{
      {"step", ConditionAnnealingTime::kStep}, {"model", ConditionAnnealingTime::kModel}};
  return names;
}

const std::vector<std::pair<std::string, ConditionAnnealingApplyTo>>& apply_to_names() {
  static const std::vector<std::pair<std::string, ConditionAnnealingApplyTo>> names{
      {"cond", ConditionAnnealingApplyTo::kCond},
      {"both", ConditionAnnealingApplyTo::kBoth},
      {"uncond", ConditionAnnealingApplyTo::kUncond}};
  return names;
}

}  // namespace

ConditionAnnealing::ConditionAnnealing(ConditionAnnealingOptions o) : options(std::move(o)) {
  const auto& p = options;
  check(std::isfinite(p.tau1()) && p.tau1() >= 0,
        "condition_annealing: tau1 must be finite and >= 0, got ", p.tau1());
  check(std::isfinite(p.tau2()) && p.tau2() > p.tau1(),
        "condition_annealing: tau2 must be finite and > tau1 = ", p.tau1(),
        ", got tau2 = ", p.tau2());
  check(std::isfinite(p.noise_scale()) && p.noise_scale() >= 0,
        "condition_annealing: noise_scale must be finite and >= 0, got ", p.noise_scale());
  check(std::isfinite(p.psi()) && p.psi() >= 0 && p.psi() <= 1,
        "condition_annealing: psi must be in [0, 1], got ", p.psi());
  check(p.rescale_over() == ConditionAnnealingRescaleOver::kSample ||
            p.rescale_over() == ConditionAnnealingRescaleOver::kBatch,
        "condition_annealing: rescale_over must be kSample or kBatch, got ",
        static_cast<int>(p.rescale_over()));
  check(p.time() == ConditionAnnealingTime::kStep || p.time() == ConditionAnnealingTime::kModel,
        "condition_annealing: time must be kStep or kModel, got ", static_cast<int>(p.time()));
  check(std::isfinite(p.t_max()) && p.t_max() >= 0,
        "condition_annealing: t_max must be finite and >= 0, got ", p.t_max());
  check(p.apply_to() == ConditionAnnealingApplyTo::kCond ||
            p.apply_to() == ConditionAnnealingApplyTo::kBoth ||
            p.apply_to() == ConditionAnnealingApplyTo::kUncond,
        "condition_annealing: apply_to must be kCond, kBoth or kUncond, got ",
        static_cast<int>(p.apply_to()));
  check(p.value() || !p.extra_keys().empty(),
        "condition_annealing: value=false and no extra_keys leaves nothing to anneal");
  for (const auto& k : p.extra_keys())
    check(!k.empty(), "condition_annealing: extra_keys holds an empty name");
}

std::unique_ptr<Correction> ConditionAnnealing::from_config(const Config& c) {
  ConfigReader r(c, "condition_annealing");
  ConditionAnnealingOptions o;
  o.tau1(r.get_double("tau1", o.tau1()));
  o.tau2(r.get_double("tau2", o.tau2()));
  o.noise_scale(r.get_double("noise_scale", o.noise_scale()));
  o.psi(r.get_double("psi", o.psi()));
  o.rescale_over(r.get_enum("rescale_over", o.rescale_over(), rescale_over_names()));
  o.time(r.get_enum("time", o.time(), time_names()));
  o.t_max(r.get_double("t_max", o.t_max()));
  o.apply_to(r.get_enum("apply_to", o.apply_to(), apply_to_names()));
  o.value(r.get_bool("value", o.value()));
  if (r.has("extra_keys")) o.extra_keys(split_keys(c.at("extra_keys")));
  r.finish();
  return std::make_unique<ConditionAnnealing>(o);
}

Config ConditionAnnealing::to_config() const {
  std::string keys;
  for (const auto& k : options.extra_keys()) keys += (keys.empty() ? "" : ";") + k;
  return {{"tau1", format_double(options.tau1())},
          {"tau2", format_double(options.tau2())},
          {"noise_scale", format_double(options.noise_scale())},
          {"psi", format_double(options.psi())},
          {"rescale_over", enum_name(options.rescale_over(), rescale_over_names())},
          {"time", enum_name(options.time(), time_names())},
          {"t_max", format_double(options.t_max())},
          {"apply_to", enum_name(options.apply_to(), apply_to_names())},
          {"value", options.value() ? "true" : "false"},
          {"extra_keys", keys}};
}

std::unique_ptr<Correction> ConditionAnnealing::clone() const {
  return std::make_unique<ConditionAnnealing>(*this);
}

double ConditionAnnealing::gamma(double t, double tau1, double tau2) {
  if (t <= tau1) return 1.0;
  if (t >= tau2) return 0.0;
  return (tau2 - t) / (tau2 - tau1);
}

double ConditionAnnealing::time_of(const StepContext& step) const {
  if (options.time() == ConditionAnnealingTime::kStep) {
    check(step.num_steps > 0,
          "condition_annealing: the step context has num_steps = ", step.num_steps);
    const double f = static_cast<double>(step.index) / static_cast<double>(step.num_steps);
    return 1.0 - std::min(std::max(f, 0.0), 1.0);
  }
  const double t_max = options.t_max() > 0 ? options.t_max() : schedule_t_max_;
  check(
      t_max > 0,
      "condition_annealing: time=model needs t_max: set the option, or run through sample(), whose "
      "on_grid hook reads the schedule's t_max");
  return step.now.t / t_max;
}

void ConditionAnnealing::on_condition(Conditioning& c, const StepContext& step) {
  if (options.noise_scale() == 0) return;
  const bool cond = step.branch == Branch::kCond;
  if ((options.apply_to() == ConditionAnnealingApplyTo::kCond && !cond) ||
      (options.apply_to() == ConditionAnnealingApplyTo::kUncond && cond))
    return;
  const double g = gamma(time_of(step));
  if (g >= 1.0) return;
  if (options.value()) {
    if (c.value.defined()) {
      c.value = anneal(c.value, g, step, "Conditioning.value");
    } else {
      // The null conditioning of an unconditional branch has nothing to anneal.
      check(!cond,
            "condition_annealing: the conditional branch has no Conditioning.value to anneal (set "
            "SampleOptions.cond.value to the condition embedding, or value=false with extra_keys)");
    }
  }
  for (const auto& key : options.extra_keys()) {
    auto it = c.extra.find(key);
    if (it == c.extra.end()) {
      std::vector<std::string> present;
      for (const auto& kv : c.extra) present.push_back(kv.first);
      throw ConfigError(detail::cat(
          "condition_annealing: extra key '", key, "' is not in the ",
          cond ? "conditional" : "unconditional", " branch's Conditioning.extra (present: ",
          present.empty() ? std::string("none") : detail::join(present), ")"));
    }
    if (it->second.defined())
      it->second = anneal(it->second, g, step, ("Conditioning.extra['" + key + "']").c_str());
  }
}

std::vector<std::string> ConditionAnnealing::split_keys(std::string v) {
  for (auto& ch : v)
    if (ch == ';') ch = ' ';
  std::vector<std::string> out;
  std::istringstream is(v);
  std::string tok;
  while (is >> tok) out.push_back(tok);
  return out;
}

Tensor ConditionAnnealing::anneal(const Tensor& y_in, double g, const StepContext& step,
                                  const char* what) const {
  check(
      at::isFloatingType(y_in.scalar_type()), "condition_annealing: ", what, " has dtype ",
      y_in.scalar_type(),
      "; CADS adds Gaussian noise to a condition EMBEDDING, so pass the class/text embedding as a "
      "floating-point tensor, not an integer class label");
  check(y_in.dim() >= 1 && y_in.numel() > 0, "condition_annealing: ", what,
        " needs a batch dimension and at least one element, got shape ", y_in.sizes());
  check(step.noise != nullptr,
        "condition_annealing: the step context has no noise source to draw from");
  const auto dtype = y_in.scalar_type();
  const bool upcast = dtype != at::kFloat && dtype != at::kDouble;
  const Tensor y = upcast ? y_in.to(at::kFloat) : y_in;
  const Tensor n = step.noise->randn_like(y);
  Tensor y_hat = y * std::sqrt(g) + n * (options.noise_scale() * std::sqrt(1.0 - g));
  const double psi = options.psi();
  if (psi > 0) {
    Tensor mean_y, std_y, mean_h, std_h, bad;
    const Tensor yf = y.reshape({y.size(0), -1}), hf = y_hat.reshape({y.size(0), -1});
    if (options.rescale_over() == ConditionAnnealingRescaleOver::kSample) {
      const std::vector<int64_t> dim{1};
      mean_y = yf.mean(dim, /*keepdim=*/true);
      std_y = yf.std(dim, /*unbiased=*/true, /*keepdim=*/true);
      mean_h = hf.mean(dim, true);
      std_h = hf.std(dim, true, true);
    } else {
      mean_y = yf.mean();
      std_y = yf.std(/*unbiased=*/true);
      mean_h = hf.mean();
      std_h = hf.std(true);
    }
    Tensor y_r = (hf - mean_h) / std_h * std_y + mean_y;
    bad = options.rescale_over() == ConditionAnnealingRescaleOver::kSample
              ? at::isnan(y_r).any(1, /*keepdim=*/true)
              : at::isnan(y_r).any();
    y_r = at::where(bad, hf, y_r).reshape(y.sizes());
    y_hat = psi == 1.0 ? y_r : y_r * psi + y_hat * (1.0 - psi);
  }
  return upcast ? y_hat.to(dtype) : y_hat;
}

DIFFUSE_REGISTER_CORRECTION(
    ConditionAnnealing, "condition_annealing",
    "CADS: anneal the condition embedding with Gaussian noise (Sadat et al. 2024)");
DIFFUSE_REGISTER_CORRECTION_ALIAS(cads, "cads", "condition_annealing", {},
                                  "CADS (Sadat et al. 2024)");

}  // namespace diffuse
