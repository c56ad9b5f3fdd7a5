// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/schedules/flow.h>.
#include <diffuse/schedules/flow.h>

#include <cmath>

#include <diffuse/detail/aten.h>
#include <diffuse/registry.h>

namespace diffuse {

const EnumNames<FlowTimeShift>& flow_time_shift_names() {
  static const EnumNames<FlowTimeShift> names{{"exponential", FlowTimeShift::exponential},
                                              {"linear", FlowTimeShift::linear}};
  return names;
}

FlowSchedule::FlowSchedule(FlowScheduleOptions o) : options(o) {
  check(std::isfinite(o.t_scale()) && o.t_scale() > 0,
        "flow schedule: t_scale must be finite and > 0, got ", o.t_scale());
  check(o.sigma_min() > 0 && o.sigma_min() < 1, "flow schedule: sigma_min must be in (0, 1), got ",
        o.sigma_min());
  check(std::isfinite(o.shift()) && o.shift() > 0,
        "flow schedule: shift must be finite and > 0, got ", o.shift());
  check(std::isfinite(o.mu()), "flow schedule: mu must be finite, got ", o.mu());
  check_enum(o.time_shift_type(), flow_time_shift_names(), "flow schedule: time_shift_type");
  check(!o.use_dynamic_shifting() || o.time_shift_type() != FlowTimeShift::linear || o.mu() > 0,
        "flow schedule: the linear dynamic shift needs mu > 0, got mu=", o.mu());
  // e^mu overflows past ~709; |mu| that large is no resolution any model is sampled at.
  check(!o.use_dynamic_shifting() || std::abs(o.mu()) <= 50,
        "flow schedule: mu must be in [-50, 50], got ", o.mu());
  check(o.shift_terminal() >= 0 && o.shift_terminal() < 1,
        "flow schedule: shift_terminal must be in [0, 1) (0 = off), got ", o.shift_terminal());
}

std::unique_ptr<NoiseSchedule> FlowSchedule::from_config(const Config& c) {
  ConfigReader r(c, "flow schedule");
  FlowScheduleOptions o;
  o.t_scale(r.get_double("t_scale", o.t_scale()));
  o.sigma_min(r.get_double("sigma_min", o.sigma_min()));
  o.shift(r.get_double("shift", o.shift()));
  o.use_dynamic_shifting(r.get_bool("use_dynamic_shifting", o.use_dynamic_shifting()));
  o.mu(r.get_double("mu", o.mu()));
  o.time_shift_type(r.get_enum("time_shift_type", o.time_shift_type(), flow_time_shift_names()));
  o.shift_terminal(r.get_double("shift_terminal", o.shift_terminal()));
  r.finish();
  return std::make_unique<FlowSchedule>(o);
}

Config FlowSchedule::to_config() const {
  return {{"t_scale", format_double(options.t_scale())},
          {"sigma_min", format_double(options.sigma_min())},
          {"shift", format_double(options.shift())},
          {"use_dynamic_shifting", options.use_dynamic_shifting() ? "true" : "false"},
          {"mu", format_double(options.mu())},
          {"time_shift_type", enum_name(options.time_shift_type(), flow_time_shift_names())},
          {"shift_terminal", format_double(options.shift_terminal())}};
}

TimePoint FlowSchedule::at_sigma(double sigma) const {
  check(std::isfinite(sigma) && sigma >= 0 && sigma <= 1,
        "flow schedule: sigma must be in [0, 1], got ", sigma);
  return TimePoint{options.t_scale() * sigma, 1.0 - sigma, sigma};
}

TimePoint FlowSchedule::at(double t) const {
  check(std::isfinite(t) && t >= 0 && t <= options.t_scale(), "flow schedule: t must be in [0, ",
        options.t_scale(), "] (t_scale * sigma), got ", t);
  const double sigma = t / options.t_scale();
  return TimePoint{t, 1.0 - sigma, sigma};
}

TimePoint FlowSchedule::at_log_snr(double lambda) const {
  check_numerics(!std::isnan(lambda), "flow schedule: log-SNR is NaN");
  // alpha / sigma = (1 - sigma) / sigma = e^lambda.
  const double sigma =
      lambda >= 0 ? std::exp(-lambda) / (1.0 + std::exp(-lambda)) : 1.0 / (1.0 + std::exp(lambda));
  return TimePoint{options.t_scale() * sigma, 1.0 - sigma, sigma};
}

Tensor FlowSchedule::alpha(const Tensor& t) const { return 1.0 - t / options.t_scale(); }

Tensor FlowSchedule::sigma(const Tensor& t) const { return t / options.t_scale(); }

double FlowSchedule::shifted(double u) const {
  check(std::isfinite(u) && u >= 0 && u <= 1, "flow schedule: shift of u outside [0, 1]: ", u);
  if (u == 0.0 || u == 1.0) return u;
  if (options.use_dynamic_shifting()) {
    // diffusers' time_shift(mu, 1.0, u): exponent sigma = 1 on (1/u - 1).
    const double odds = 1.0 / u - 1.0;
    if (options.time_shift_type() == FlowTimeShift::exponential) {
      const double e = std::exp(options.mu());
      return e / (e + odds);
    }
    return options.mu() / (options.mu() + odds);
  }
  return flow_static_shift(options.shift(), u);
}

double flow_static_shift(double s, double u) { return s * u / (1.0 + (s - 1.0) * u); }

double flow_dynamic_mu(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len,
                       double base_shift, double max_shift) {
  check(image_seq_len >= 1, "flow_dynamic_mu: image_seq_len must be >= 1, got ", image_seq_len);
  check(max_seq_len > base_seq_len, "flow_dynamic_mu: needs max_seq_len > base_seq_len, got ",
        base_seq_len, " and ", max_seq_len);
  check(std::isfinite(base_shift) && std::isfinite(max_shift),
        "flow_dynamic_mu: base_shift and max_shift must be finite, got ", base_shift, ", ",
        max_shift);
  const double m = (max_shift - base_shift) / static_cast<double>(max_seq_len - base_seq_len);
  const double b = base_shift - m * static_cast<double>(base_seq_len);
  return static_cast<double>(image_seq_len) * m + b;
}

DIFFUSE_REGISTER(::diffuse::NoiseSchedule, FlowSchedule, "flow",
                 "rectified flow / flow matching: alpha = 1 - sigma, t = t_scale * sigma, "
                 "static (SD3) or dynamic (Flux) shift");

}  // namespace diffuse
