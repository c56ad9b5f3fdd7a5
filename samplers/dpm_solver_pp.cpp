// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/dpm_solver_pp.h>.
#include <diffuse/samplers/dpm_solver_pp.h>

#include <cmath>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

namespace {

const std::vector<std::pair<std::string, DpmThirdOrder>>& third_order_names() {
  static const std::vector<std::pair<std::string, DpmThirdOrder>> names{
      {"diffusers", DpmThirdOrder::kDiffusers}, {"taylor", DpmThirdOrder::kTaylor}};
  return names;
}

}  // namespace

void check_dpm_solver_options(const DpmSolverPPOptions& o, const char* owner) {
  check(o.order() >= 1 && o.order() <= 3, owner, ": order must be 1, 2 or 3, got ", o.order());
  check_enum(o.solver_type(), dpm_solver_type_names(), detail::cat(owner, ": solver_type"));
  check_enum(o.third_order(), third_order_names(), detail::cat(owner, ": third_order"));
  check(o.lower_order_final_below() >= 1, owner, ": lower_order_final_below must be >= 1, got ",
        o.lower_order_final_below());
}

DpmSolverPPOptions read_dpm_solver_options(ConfigReader& r, DpmSolverPPOptions o) {
  o.order(r.get_int("order", o.order()));
  o.solver_type(r.get_enum("solver_type", o.solver_type(), dpm_solver_type_names()));
  o.lower_order_final(r.get_bool("lower_order_final", o.lower_order_final()));
  o.lower_order_final_below(r.get_int("lower_order_final_below", o.lower_order_final_below()));
  o.euler_at_final(r.get_bool("euler_at_final", o.euler_at_final()));
  o.third_order(r.get_enum("third_order", o.third_order(), third_order_names()));
  return o;
}

Config dpm_solver_options_config(const DpmSolverPPOptions& o) {
  return {{"order", std::to_string(o.order())},
          {"solver_type", enum_name(o.solver_type(), dpm_solver_type_names())},
          {"lower_order_final", o.lower_order_final() ? "true" : "false"},
          {"lower_order_final_below", std::to_string(o.lower_order_final_below())},
          {"euler_at_final", o.euler_at_final() ? "true" : "false"},
          {"third_order", enum_name(o.third_order(), third_order_names())}};
}

DpmSolverPPSampler::DpmSolverPPSampler(DpmSolverPPOptions o) : options(std::move(o)) {
  check_dpm_solver_options(options, "DpmSolverPPOptions");
}

std::unique_ptr<Sampler> DpmSolverPPSampler::from_config(const Config& c) {
  ConfigReader r(c, "dpm_solver_pp");
  const DpmSolverPPOptions o = read_dpm_solver_options(r);
  r.finish();
  return std::make_unique<DpmSolverPPSampler>(o);
}

Config DpmSolverPPSampler::to_config() const { return dpm_solver_options_config(options); }

int64_t DpmSolverPPSampler::order_at(const StepContext& st, size_t available) const {
  return dpm_multistep_order(options.order(), options.lower_order_final(),
                             options.lower_order_final_below(), options.euler_at_final(), st.index,
                             st.num_steps, st.next.is_clean(), available);
}

StepResult DpmSolverPPSampler::step_impl(const ModelFn& model, const Tensor& x,
                                         const StepContext& st, const History& history,
                                         SampleContext&) const {
  const TimePoint& s0 = st.now;
  const TimePoint& next = st.next;
  const double lambda0 = s0.log_snr();
  const double h = next.log_snr() - lambda0;  // +inf onto the clean point or from alpha = 0
  const double a = next.alpha;
  const int64_t order = order_at(st, history.size());
  const size_t n = history.size();
  // Order 1 (DPM-Solver++ Eq. (9) / DDIM): exact for h = +inf too, where it returns alpha_next *
  // x0. Order 2 adds c e0 with e0 = (m0 - m1) / h0, m1 the previous step's x0. The model function
  // may compute the update (order 2: both terms) in its conversion pass (StepContext::update).
  LinearUpdate update{LinearUpdate::Form::kXX0, next.sigma / s0.sigma, a * dpm_phi1(h)};
  const double h0 = order >= 2 ? lambda0 - history.times[n - 1].log_snr() : 0.0;
  const double inv_h0 = order >= 2 ? dpm_inv_step(h0) : 0.0;
  const double em = dpm_expm1_plus(h);  // e^{-h} - 1 + h
  if (order == 2) {
    const bool midpoint = options.solver_type() == DpmSolverType::kMidpoint;
    update.diff = &history.preds[n - 1].x0;
    update.c_diff = inv_h0;
    update.c_out = midpoint ? 0.5 * a * dpm_phi1(h) * h : a * em;
  }
  UpdatedPrediction r = predict_with_update(model, x, st, h == 0.0 ? nullptr : &update);
  Prediction& p = r.pred;
  Tensor& x_next = r.x_next;
  if (h == 0.0) return {x, p};  // zero-length final step: every term vanishes
  if (order <= 2) return {x_next, p};

  // Order 3: with e0 = (m0 - m1) / h0 and e1 = (m1 - m2) / h1, x_next += a em ((1 + w) e0 - w e1)
  // - a (em - h^2 / 2) (e0 - e1) d2_scale / (h0 + h1), w = h0 / (h0 + h1): one pass.
  const double h1 = history.times[n - 1].log_snr() - history.times[n - 2].log_snr();
  const double w = std::isinf(h1) ? 0.0 : h0 / (h0 + h1);
  const double d2_scale = options.third_order() == DpmThirdOrder::kTaylor ? 2.0 : 1.0;
  const double inv_sum = std::isinf(h1) ? 0.0 : d2_scale / (h0 + h1);
  add_dpm3_terms_(x_next, p.x0, history.preds[n - 1].x0, history.preds[n - 2].x0, inv_h0,
                  dpm_inv_step(h1), 1.0 + w, w, a * em, a * (em - 0.5 * h * h) * inv_sum);
  return {x_next, p};
}

DIFFUSE_REGISTER_SAMPLER(DpmSolverPPSampler, "dpm_solver_pp",
                         "DPM-Solver++ multistep (Lu et al. 2022), data prediction, order 1-3");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2m, "dpmpp_2m", "dpm_solver_pp", (Config{{"order", "2"}}),
                               "DPM++ 2M (A1111/ComfyUI name): dpm_solver_pp order=2");
DIFFUSE_REGISTER_SAMPLER_ALIAS(dpmpp_2m_k, "k_dpmpp_2m", "dpm_solver_pp", (Config{{"order", "2"}}),
                               "A1111's internal name for DPM++ 2M");
DIFFUSE_REGISTER_SAMPLER_ALIAS(
    dpmpp_2m_a1111, "DPM++ 2M", "dpm_solver_pp", (Config{{"order", "2"}}),
    "A1111's label for DPM++ 2M (pair it with the karras spacing for 'DPM++ 2M Karras')");
DIFFUSE_REGISTER_SAMPLER_ALIAS(
    dpmpp_3m, "dpmpp_3m", "dpm_solver_pp", (Config{{"order", "3"}}),
    "DPM++ 3M: dpm_solver_pp order=3 (diffusers solver_order=3 defaults)");

}  // namespace diffuse
