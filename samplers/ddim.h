// SPDX-License-Identifier: Apache-2.0
// DDIM sampler. Song, Meng, Ermon, "Denoising Diffusion Implicit Models" (2020), Eq. (12), (16).
// Checked against: diffusers DDIMScheduler.step (58eb52c).
// In the VP-native notation (alpha = sqrt(alphas_cumprod), sigma = sqrt(1 - alphas_cumprod)):
//   sigma_eta = eta * (sigma_next / sigma) * sqrt(1 - alpha^2 / alpha_next^2)      Eq. (16)
//   x_next    = alpha_next * x0 + sqrt(sigma_next^2 - sigma_eta^2) * eps + sigma_eta * z   Eq. (12)
// eta = 0 is the deterministic probability-flow solver (first order), eta = 1 has DDPM's
// posterior variance on the respaced chain.
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

struct DdimOptions {
  /// Noise weight. Default 0 (deterministic); must be >= 0 (1 = DDPM posterior variance).
  TORCH_ARG(double, eta) = 0.0;
  /// "grid" (default): step to the next grid point. "train_stride": step to t - T // num_steps
  /// (clean point below 0), which is what diffusers' DDIMScheduler does for every spacing; it
  /// differs from "grid" only for linspace spacing, where it leaves the grid.
  TORCH_ARG(std::string, prev_timestep) = "grid";
};

class DdimSampler final : public Sampler {
 public:
  explicit DdimSampler(DdimOptions o = {}) : options(std::move(o)) {
    check(std::isfinite(options.eta()) && options.eta() >= 0, "DdimOptions.eta must be finite and >= 0, got ",
          options.eta());
    check(options.prev_timestep() == "grid" || options.prev_timestep() == "train_stride",
          "DdimOptions.prev_timestep must be grid or train_stride, got '", options.prev_timestep(), "'");
  }
  static std::unique_ptr<Sampler> from_config(const Config& c) {
    ConfigReader r(c, "ddim");
    DdimOptions o;
    o.eta(r.get_double("eta", o.eta()));
    o.prev_timestep(r.get_choice("prev_timestep", o.prev_timestep(), {"grid", "train_stride"}));
    r.finish();
    return std::make_unique<DdimSampler>(o);
  }
  Config to_config() const override {
    return {{"eta", detail::format_double(options.eta())}, {"prev_timestep", options.prev_timestep()}};
  }
  std::string name() const override { return "ddim"; }
  bool is_stochastic() const override { return options.eta() > 0; }

  DdimOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override {
    const TimePoint& now = st.now;
    TimePoint next = st.next;
    if (options.prev_timestep() == "train_stride") next = train_stride_next(st, ctx);
    Prediction p = model(x, now, st);
    const double eta_sigma = (options.eta() > 0 && next.sigma > 0 && now.sigma > 0)
                                 ? options.eta() * (next.sigma / now.sigma) *
                                       std::sqrt(std::max(0.0, 1.0 - (now.alpha * now.alpha) / (next.alpha * next.alpha)))
                                 : 0.0;
    const double dir = std::sqrt(std::max(0.0, next.sigma * next.sigma - eta_sigma * eta_sigma));
    Tensor x_next = detail::lincomb(p.x0, next.alpha, p.eps, dir);
    if (eta_sigma > 0) detail::add_scaled_(x_next, ctx.randn_like(x), eta_sigma);
    return {x_next, p};
  }

 private:
  static TimePoint train_stride_next(const StepContext& st, const SampleContext& ctx) {
    check(ctx.schedule != nullptr && ctx.schedule->num_train_timesteps() > 0,
          "ddim: prev_timestep=train_stride needs a discrete schedule");
    const int64_t T = ctx.schedule->num_train_timesteps();
    const double prev = st.now.t - static_cast<double>(T / st.num_steps);
    // Below 0 diffusers uses final_alpha_cumprod, i.e. the grid's own final point.
    return prev >= 0 ? ctx.schedule->at(prev) : st.grid->back();
  }
};

DIFFUSE_REGISTER_SAMPLER(DdimSampler, "ddim", "DDIM (Song et al. 2020); eta=0 deterministic, eta=1 ancestral");
DIFFUSE_REGISTER_SAMPLER_ALIAS(DdimA1111, "DDIM", "ddim", {}, "A1111's label for ddim");

}  // namespace diffuse
