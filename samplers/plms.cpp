// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/plms.h>.
#include <diffuse/samplers/plms.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <diffuse/registry.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

namespace {

const EnumNames<PlmsCombine>& plms_combine_names() {
  static const EnumNames<PlmsCombine> names{{"eps", PlmsCombine::kEps}, {"v", PlmsCombine::kV}};
  return names;
}

/// The network output PLMS combines, of prediction p at point at.
Tensor plms_output(const Prediction& p, const TimePoint& at, PlmsCombine combine) {
  return combine == PlmsCombine::kEps ? p.eps : lincomb(p.eps, at.alpha, p.x0, -at.sigma);
}

/// phi(x, from -> to, out): the DDIM step with the combined output (converted to eps at `from`
/// with x when it is a v).
Tensor plms_transfer(const Tensor& x, const TimePoint& from, const TimePoint& to, const Tensor& out,
                     PlmsCombine combine) {
  const Tensor eps = combine == PlmsCombine::kEps ? out : lincomb(out, from.alpha, x, from.sigma);
  const Tensor x0 = solve(x, eps, from.sigma, from.alpha);
  return lincomb(x0, to.alpha, eps, to.sigma);
}

}  // namespace

PlmsSampler::PlmsSampler(PlmsOptions o) : options(std::move(o)) {
  check_enum(options.combine(), plms_combine_names(), "PlmsOptions.combine");
}

std::unique_ptr<Sampler> PlmsSampler::from_config(const Config& c) {
  ConfigReader r(c, "plms");
  PlmsOptions o;
  o.prk_warmup(r.get_bool("prk_warmup", o.prk_warmup()));
  o.combine(r.get_enum("combine", o.combine(), plms_combine_names()));
  r.finish();
  return std::make_unique<PlmsSampler>(o);
}

Config PlmsSampler::to_config() const {
  return {{"prk_warmup", options.prk_warmup() ? "true" : "false"},
          {"combine", enum_name(options.combine(), plms_combine_names())}};
}

int64_t PlmsSampler::model_calls(int64_t n) const {
  if (options.prk_warmup()) {
    const int64_t rk = std::clamp<int64_t>(n - 1, 0, 3);
    return 4 * rk + (n - rk);
  }
  return n + (n > 1 ? 1 : 0);
}

StepResult PlmsSampler::step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                                  const History& history, SampleContext& ctx) const {
  const TimePoint& now = st.now;
  const TimePoint& next = st.next;
  check(now.alpha > 0, "plms: step ", st.index,
        " needs alpha > 0 at its start (zero terminal SNR: the transfer divides by alpha), got "
        "t=",
        now.t, " alpha=", now.alpha);
  const PlmsCombine mode = options.combine();
  // eps = alpha v + sigma x holds only where alpha^2 + sigma^2 = 1.
  check(mode == PlmsCombine::kEps ||
            std::abs(now.alpha * now.alpha + now.sigma * now.sigma - 1) < 1e-6,
        "plms: combine=v needs a variance-preserving schedule (alpha^2 + sigma^2 = 1), got alpha=",
        now.alpha, " sigma=", now.sigma, " at step ", st.index);
  Prediction p = model(x, now, st);
  const Tensor e0 = plms_output(p, now, mode);
  // The run's last step is never a Runge-Kutta one (its end may be the clean point, where no
  // model call belongs); diffusers' PNDM has the same three for every n >= 4.
  if (options.prk_warmup() && st.index < std::min<int64_t>(3, st.num_steps - 1)) {
    // Pseudo Runge-Kutta 4 with diffusers' integer half step on discrete schedules.
    check(ctx.schedule != nullptr, "plms: prk_warmup needs the noise schedule to place the half ",
          "steps (SampleContext.schedule is null)");
    TimePoint land, call;
    if (ctx.schedule->num_train_timesteps() > 0) {
      const double h = std::floor((now.t - next.t) / 2);
      land = ctx.schedule->at(now.t - h);
      call = ctx.schedule->at(next.t + h);
    } else {  // continuous times: the log-SNR midpoint
      land = call = ctx.schedule->at_log_snr(0.5 * (now.log_snr() + next.log_snr()));
    }
    const Tensor xa = plms_transfer(x, now, land, e0, mode);
    const Tensor e1 = plms_output(model(xa, call, st), call, mode);
    const Tensor xb = plms_transfer(x, now, call, e1, mode);
    const Tensor e2 = plms_output(model(xb, call, st), call, mode);
    const Tensor xc = plms_transfer(x, now, next, e2, mode);
    const Tensor e3 = plms_output(model(xc, next, st), next, mode);
    Tensor e = scaled(e0, 1.0 / 6);
    add_scaled_(e, e1, 1.0 / 3);
    add_scaled_(e, e2, 1.0 / 3);
    add_scaled_(e, e3, 1.0 / 6);
    return {plms_transfer(x, now, next, e, mode), p};
  }
  const size_t n = history.size();
  if (n == 0 && st.num_steps > 1) {
    // Pseudo improved Euler: predict, evaluate at next, redo the step with the mean output.
    const Tensor x1 = plms_transfer(x, now, next, e0, mode);
    const Tensor e1 = plms_output(model(x1, next, st), next, mode);
    return {plms_transfer(x, now, next, lincomb(e0, 0.5, e1, 0.5), mode), p};
  }
  static const std::vector<std::vector<double>> kAb{{1.0},
                                                    {3.0 / 2, -1.0 / 2},
                                                    {23.0 / 12, -16.0 / 12, 5.0 / 12},
                                                    {55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24}};
  const size_t k = std::min<size_t>(4, n + 1);
  Tensor e = scaled(e0, kAb[k - 1][0]);
  for (size_t j = 1; j < k; ++j)
    add_scaled_(e, plms_output(history.preds[n - j], history.times[n - j], mode), kAb[k - 1][j]);
  return {plms_transfer(x, now, next, e, mode), p};
}

DIFFUSE_REGISTER_SAMPLER(PlmsSampler, "plms",
                         "PLMS / PNDM pseudo linear multistep (Liu et al. 2022; diffusers "
                         "PNDMScheduler): DDIM transfers of Adams-Bashforth-combined outputs");
DIFFUSE_REGISTER_SAMPLER_ALIAS(PlmsA1111, "PLMS", "plms", {}, "A1111's label for plms");
DIFFUSE_REGISTER_SAMPLER_ALIAS(Pndm, "pndm", "plms", (Config{{"prk_warmup", "true"}}),
                               "PNDM: plms with three pseudo Runge-Kutta warm-up steps");

}  // namespace diffuse
