// SPDX-License-Identifier: Apache-2.0
// Epsilon Scaling. Ning, Li, Su, Salah, Ertugrul, "Elucidating the Exposure Bias in Diffusion
// Models" (ICLR 2024); methods.md §3, which summarises forever208/ADM-ES @54ad3ad
// (guided_diffusion/gaussian_diffusion.py, sampling_scaler / _predict_xstart_from_eps),
// forever208/EDM-ES @d9cf406 (generate.py, edm_sampler) and ComfyUI's "Epsilon Scaling" node.
//
// At every model call (multi-stage solvers call the model several times per step; this runs at
// each call, after guidance and before clipping/thresholding), with (alpha, sigma) the time point
// of that call (StepContext::call):
//   eps <- eps / lambda
//   x0  <- (x - sigma * eps) / alpha            (the x0 of ADM-ES's _predict_xstart_from_eps)
// which is the same as EDM-ES / ComfyUI's D <- x_ve - (x_ve - D) / lambda in VE units
// (x_ve = x / alpha). lambda > 1 scales the predicted noise down, so the chain removes less noise
// per step and ends less concentrated. At alpha = 0 (pure noise, zero terminal SNR) the state is
// x = sigma * eps exactly, so eps carries no network information and x0 is not recoverable from
// it: the prediction is left unchanged there.
//
// The schedule: lambda(i) = k * i + b, constant (= b) for k = 0 (the paper's practical default).
// i is the respaced step index counted from the LAST step (i = num_steps - 1 - step.index: 0 at the
// last, cleanest step), ADM-ES's convention: its published (k, b) pairs only make sense on that
// index (k = 0.0025, b = 1 at 20 steps gives lambda in [1, 1.0475]). direction = from_first counts
// from the first, noisiest step instead (i = step.index), the step counter of TS-DPM's
// DDIM-backbone Epsilon Scaling (scale = 1 + step_size * step). All calls of one step use that
// step's index. b = 1, k = 0 is the identity (the prediction is not touched at all).
//
// Presets ("es_<source>_<setting>", aliases of epsilon_scaling; user options override them). All
// numbers are methods.md §3.2, read off ADM-ES @54ad3ad datasets/ADM-ES_results.png and EDM-ES
// @d9cf406 docs/eps_scaler.png (FID-50K tuned values):
//   es_adm_<data>_<S>          constant b for ADM (respaced DDPM ancestral, learned variance) at
//                              S = 100, 50, 20 steps; data = cifar10 (32x32), lsun_tower64,
//                              ffhq128, imagenet64 (cond), imagenet128 (cond, classifier guidance
//                              0.5)
//   es_adm_<data>_20_linear    the (k, b) of ADM-ES* (lambda = k i + b) at 20 steps
//   es_edm_cifar10_<cond|uncond>_<heun|euler>_nfe<35|21|13>
//                              constant b for EDM's CIFAR-10 VP checkpoints (Heun 35 NFE = 18
//                              steps)
//   es_comfyui                 b = 1.005, the default of ComfyUI's Epsilon Scaling node
//   es_tsdpm_ddim              b = 1.0012, the TS-DPM README's DDIM-backbone example
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/sampler.h>

namespace diffuse {

struct EpsilonScalingOptions {
  /// Offset b of lambda(i) = k i + b. Default 1 (identity); must be finite and > 0. The paper's
  /// values are slightly above 1 (1.004 .. 1.017 for ADM, methods.md §3.2).
  TORCH_ARG(double, b) = 1.0;
  /// Slope k per step of lambda(i) = k i + b. Default 0 (constant lambda = b); finite. lambda must
  /// stay > 0 at every step of the run (checked when the grid is known).
  TORCH_ARG(double, k) = 0.0;
  /// How i counts steps: "from_last" (default; ADM-ES: i = num_steps - 1 - index, 0 at the last
  /// step) or "from_first" (TS-DPM's counter: i = index, 0 at the first step).
  TORCH_ARG(std::string, direction) = "from_last";
};

class EpsilonScaling final : public Correction {
 public:
  explicit EpsilonScaling(EpsilonScalingOptions o = {}) : options(std::move(o)) {
    check(std::isfinite(options.b()) && options.b() > 0,
          "EpsilonScalingOptions.b must be finite and > 0, got ", options.b());
    check(std::isfinite(options.k()), "EpsilonScalingOptions.k must be finite, got ", options.k());
    check(options.direction() == "from_last" || options.direction() == "from_first",
          "EpsilonScalingOptions.direction must be from_last or from_first, got '",
          options.direction(), "'");
  }
  static std::unique_ptr<Correction> from_config(const Config& c) {
    ConfigReader r(c, "epsilon_scaling");
    EpsilonScalingOptions o;
    o.b(r.get_double("b", o.b()));
    o.k(r.get_double("k", o.k()));
    o.direction(r.get_choice("direction", o.direction(), {"from_last", "from_first"}));
    r.finish();
    auto made = std::make_unique<EpsilonScaling>(o);  // validates the values given first
    // Asked for by name, a correction must act: b = 1, k = 0 (the options' default) is the identity.
    check(c.count("b") > 0 || c.count("k") > 0,
          "epsilon_scaling needs b (and optionally k), e.g. epsilon_scaling:b=1.005 (ComfyUI's default, also the "
          "preset es_comfyui); the published settings are the presets es_adm_* and es_edm_* (see --list); b=1 "
          "is the identity");
    return made;
  }
  Config to_config() const override {
    return {{"b", format_double(options.b())},
            {"k", format_double(options.k())},
            {"direction", options.direction()}};
  }
  std::string name() const override { return "epsilon_scaling"; }
  std::unique_ptr<Correction> clone() const override {
    return std::make_unique<EpsilonScaling>(*this);
  }

  /// lambda at step `index` of a run of `num_steps` steps.
  double lambda(int64_t index, int64_t num_steps) const {
    const int64_t i = options.direction() == "from_last" ? num_steps - 1 - index : index;
    return options.k() * static_cast<double>(i) + options.b();
  }

  /// A linear schedule must stay positive over the whole run: its ends are i = 0 and num_steps - 1.
  void on_grid(TimeGrid& grid, const NoiseSchedule&) override {
    check_positive(static_cast<int64_t>(grid.size()) - 1);
  }

  void on_prediction(Prediction& p, const Tensor& x, const StepContext& step) override {
    // The identity leaves the prediction untouched (bit-exact with the plain sampler).
    if (options.k() == 0.0 && options.b() == 1.0) return;
    const double lam = lambda(step.index, step.num_steps);
    if (!(lam > 0)) check_positive(step.num_steps);
    if (lam == 1.0) return;
    const TimePoint& call = step.call;
    if (call.alpha == 0.0) return;  // x = sigma * eps: nothing to rescale (see the header)
    p.eps = p.eps / lam;
    p.x0 = (x - p.eps * call.sigma) / call.alpha;
  }

  EpsilonScalingOptions options;

 private:
  void check_positive(int64_t num_steps) const {
    for (int64_t index : {int64_t{0}, num_steps - 1}) {
      const double lam = lambda(index, num_steps);
      check(lam > 0, "epsilon_scaling: lambda = k*i + b = ", lam, " <= 0 at step ", index, " of ",
            num_steps, " (b=", options.b(), ", k=", options.k(),
            ", direction=", options.direction(), "); lambda must stay > 0 over the run");
    }
  }
};

DIFFUSE_REGISTER_CORRECTION(
    EpsilonScaling, "epsilon_scaling",
    "Epsilon Scaling (Ning et al. 2024): eps / lambda, lambda = k*i + b (set b; b=1, k=0: off)");

// ADM-ES, constant b (methods.md §3.2 table; ADM-ES @54ad3ad datasets/ADM-ES_results.png).
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmCifar10_100, "es_adm_cifar10_100", "epsilon_scaling",
                                  (Config{{"b", "1.017"}}), "ADM-ES CIFAR-10, 100 steps: b=1.017");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmCifar10_50, "es_adm_cifar10_50", "epsilon_scaling",
                                  (Config{{"b", "1.017"}}), "ADM-ES CIFAR-10, 50 steps: b=1.017");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmCifar10_20, "es_adm_cifar10_20", "epsilon_scaling",
                                  (Config{{"b", "1.017"}}), "ADM-ES CIFAR-10, 20 steps: b=1.017");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmLsun_100, "es_adm_lsun_tower64_100", "epsilon_scaling",
                                  (Config{{"b", "1.006"}}),
                                  "ADM-ES LSUN tower 64, 100 steps: b=1.006");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmLsun_50, "es_adm_lsun_tower64_50", "epsilon_scaling",
                                  (Config{{"b", "1.007"}}),
                                  "ADM-ES LSUN tower 64, 50 steps: b=1.007");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmLsun_20, "es_adm_lsun_tower64_20", "epsilon_scaling",
                                  (Config{{"b", "1.011"}}),
                                  "ADM-ES LSUN tower 64, 20 steps: b=1.011");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmFfhq_100, "es_adm_ffhq128_100", "epsilon_scaling",
                                  (Config{{"b", "1.005"}}), "ADM-ES FFHQ 128, 100 steps: b=1.005");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmFfhq_50, "es_adm_ffhq128_50", "epsilon_scaling",
                                  (Config{{"b", "1.007"}}), "ADM-ES FFHQ 128, 50 steps: b=1.007");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmFfhq_20, "es_adm_ffhq128_20", "epsilon_scaling",
                                  (Config{{"b", "1.008"}}), "ADM-ES FFHQ 128, 20 steps: b=1.008");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmIn64_100, "es_adm_imagenet64_100", "epsilon_scaling",
                                  (Config{{"b", "1.006"}}),
                                  "ADM-ES ImageNet 64 (cond), 100 steps: b=1.006");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmIn64_50, "es_adm_imagenet64_50", "epsilon_scaling",
                                  (Config{{"b", "1.006"}}),
                                  "ADM-ES ImageNet 64 (cond), 50 steps: b=1.006");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmIn64_20, "es_adm_imagenet64_20", "epsilon_scaling",
                                  (Config{{"b", "1.006"}}),
                                  "ADM-ES ImageNet 64 (cond), 20 steps: b=1.006");
DIFFUSE_REGISTER_CORRECTION_ALIAS(
    EsAdmIn128_100, "es_adm_imagenet128_100", "epsilon_scaling", (Config{{"b", "1.004"}}),
    "ADM-ES ImageNet 128 (cond, cls. guidance 0.5), 100 steps: b=1.004");
DIFFUSE_REGISTER_CORRECTION_ALIAS(
    EsAdmIn128_50, "es_adm_imagenet128_50", "epsilon_scaling", (Config{{"b", "1.004"}}),
    "ADM-ES ImageNet 128 (cond, cls. guidance 0.5), 50 steps: b=1.004");
DIFFUSE_REGISTER_CORRECTION_ALIAS(
    EsAdmIn128_20, "es_adm_imagenet128_20", "epsilon_scaling", (Config{{"b", "1.005"}}),
    "ADM-ES ImageNet 128 (cond, cls. guidance 0.5), 20 steps: b=1.005");
// ADM-ES*, linear lambda(i) = k i + b at 20 steps, i counted from the last step (same source).
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmCifar10Lin, "es_adm_cifar10_20_linear", "epsilon_scaling",
                                  (Config{{"k", "0.0025"}, {"b", "1.0"}}),
                                  "ADM-ES* CIFAR-10, 20 steps: k=0.0025, b=1.0");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmLsunLin, "es_adm_lsun_tower64_20_linear", "epsilon_scaling",
                                  (Config{{"k", "0.0008"}, {"b", "1.0034"}}),
                                  "ADM-ES* LSUN tower 64, 20 steps: k=0.0008, b=1.0034");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmFfhqLin, "es_adm_ffhq128_20_linear", "epsilon_scaling",
                                  (Config{{"k", "0.0004"}, {"b", "1.0042"}}),
                                  "ADM-ES* FFHQ 128, 20 steps: k=0.0004, b=1.0042");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmIn64Lin, "es_adm_imagenet64_20_linear", "epsilon_scaling",
                                  (Config{{"k", "0.0002"}, {"b", "1.0041"}}),
                                  "ADM-ES* ImageNet 64 (cond), 20 steps: k=0.0002, b=1.0041");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsAdmIn128Lin, "es_adm_imagenet128_20_linear", "epsilon_scaling",
                                  (Config{{"k", "0.00022"}, {"b", "1.00291"}}),
                                  "ADM-ES* ImageNet 128 (cond), 20 steps: k=0.00022, b=1.00291");
// EDM-ES, CIFAR-10 VP checkpoints, constant b per sampler and NFE (EDM-ES @d9cf406
// docs/eps_scaler.png).
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmUH35, "es_edm_cifar10_uncond_heun_nfe35", "epsilon_scaling",
                                  (Config{{"b", "1.0005"}}),
                                  "EDM-ES CIFAR-10 uncond, Heun 35 NFE: b=1.0005");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmUE35, "es_edm_cifar10_uncond_euler_nfe35", "epsilon_scaling",
                                  (Config{{"b", "1.0034"}}),
                                  "EDM-ES CIFAR-10 uncond, Euler 35 NFE: b=1.0034");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmCH35, "es_edm_cifar10_cond_heun_nfe35", "epsilon_scaling",
                                  (Config{{"b", "1.0006"}}),
                                  "EDM-ES CIFAR-10 cond, Heun 35 NFE: b=1.0006");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmCE35, "es_edm_cifar10_cond_euler_nfe35", "epsilon_scaling",
                                  (Config{{"b", "1.0035"}}),
                                  "EDM-ES CIFAR-10 cond, Euler 35 NFE: b=1.0035");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmUH21, "es_edm_cifar10_uncond_heun_nfe21", "epsilon_scaling",
                                  (Config{{"b", "0.9985"}}),
                                  "EDM-ES CIFAR-10 uncond, Heun 21 NFE: b=0.9985");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmUE21, "es_edm_cifar10_uncond_euler_nfe21", "epsilon_scaling",
                                  (Config{{"b", "1.0043"}}),
                                  "EDM-ES CIFAR-10 uncond, Euler 21 NFE: b=1.0043");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmCH21, "es_edm_cifar10_cond_heun_nfe21", "epsilon_scaling",
                                  (Config{{"b", "0.9983"}}),
                                  "EDM-ES CIFAR-10 cond, Heun 21 NFE: b=0.9983");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmCE21, "es_edm_cifar10_cond_euler_nfe21", "epsilon_scaling",
                                  (Config{{"b", "1.0045"}}),
                                  "EDM-ES CIFAR-10 cond, Euler 21 NFE: b=1.0045");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmUH13, "es_edm_cifar10_uncond_heun_nfe13", "epsilon_scaling",
                                  (Config{{"b", "1.0060"}}),
                                  "EDM-ES CIFAR-10 uncond, Heun 13 NFE: b=1.0060");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmUE13, "es_edm_cifar10_uncond_euler_nfe13", "epsilon_scaling",
                                  (Config{{"b", "1.0048"}}),
                                  "EDM-ES CIFAR-10 uncond, Euler 13 NFE: b=1.0048");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmCH13, "es_edm_cifar10_cond_heun_nfe13", "epsilon_scaling",
                                  (Config{{"b", "1.0070"}}),
                                  "EDM-ES CIFAR-10 cond, Heun 13 NFE: b=1.0070");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsEdmCE13, "es_edm_cifar10_cond_euler_nfe13", "epsilon_scaling",
                                  (Config{{"b", "1.0051"}}),
                                  "EDM-ES CIFAR-10 cond, Euler 13 NFE: b=1.0051");
// Tool defaults.
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsComfyui, "es_comfyui", "epsilon_scaling",
                                  (Config{{"b", "1.005"}}),
                                  "ComfyUI Epsilon Scaling node default: b=1.005");
DIFFUSE_REGISTER_CORRECTION_ALIAS(EsTsdpmDdim, "es_tsdpm_ddim", "epsilon_scaling",
                                  (Config{{"b", "1.0012"}}),
                                  "TS-DPM README, DDIM-backbone ES example: b=1.0012");

}  // namespace diffuse
