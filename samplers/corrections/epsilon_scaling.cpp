// SPDX-License-Identifier: Apache-2.0
// Implementation of <diffuse/samplers/corrections/epsilon_scaling.h>.
#include <diffuse/samplers/corrections/epsilon_scaling.h>

#include <cmath>

#include <diffuse/registry.h>

namespace diffuse {

namespace {

const std::vector<std::pair<std::string, EpsilonScalingDirection>>& direction_names() {
  static const std::vector<std::pair<std::string, EpsilonScalingDirection>> names{
      {"from_last", EpsilonScalingDirection::kFromLast},
      {"from_first", EpsilonScalingDirection::kFromFirst}};
  return names;
}

}  // namespace

EpsilonScaling::EpsilonScaling(EpsilonScalingOptions o) : options(std::move(o)) {
  check(std::isfinite(options.b()) && options.b() > 0,
        "EpsilonScalingOptions.b must be finite and > 0, got ", options.b());
  check(std::isfinite(options.k()), "EpsilonScalingOptions.k must be finite, got ", options.k());
  check(options.direction() == EpsilonScalingDirection::kFromLast ||
            options.direction() == EpsilonScalingDirection::kFromFirst,
        "EpsilonScalingOptions.direction must be kFromLast or kFromFirst, got ",
        static_cast<int>(options.direction()));
}

std::unique_ptr<Correction> EpsilonScaling::from_config(const Config& c) {
  ConfigReader r(c, "epsilon_scaling");
  EpsilonScalingOptions o;
  o.b(r.get_double("b", o.b()));
  o.k(r.get_double("k", o.k()));
  o.direction(r.get_enum("direction", o.direction(), direction_names()));
  r.finish();
  auto made = std::make_unique<EpsilonScaling>(o);  // validates the values given first
  // Asked for by name, a correction must act: b = 1, k = 0 (the options' default) is the identity.
  check(c.count("b") > 0 || c.count("k") > 0,
        "epsilon_scaling needs b (and optionally k), e.g. epsilon_scaling:b=1.005 (ComfyUI's "
        "default, also the "
        "preset es_comfyui); the published settings are the presets es_adm_* and es_edm_* (see "
        "--list); b=1 "
        "is the identity");
  return made;
}

Config EpsilonScaling::to_config() const {
  return {{"b", format_double(options.b())},
          {"k", format_double(options.k())},
          {"direction", enum_name(options.direction(), direction_names())}};
}

std::unique_ptr<Correction> EpsilonScaling::clone() const {
  return std::make_unique<EpsilonScaling>(*this);
}

double EpsilonScaling::lambda(int64_t index, int64_t num_steps) const {
  const int64_t i =
      options.direction() == EpsilonScalingDirection::kFromLast ? num_steps - 1 - index : index;
  return options.k() * static_cast<double>(i) + options.b();
}

void EpsilonScaling::on_grid(TimeGrid& grid, const NoiseSchedule&) {
  check_positive(static_cast<int64_t>(grid.size()) - 1);
}

void EpsilonScaling::on_prediction(Prediction& p, const Tensor& x, const StepContext& step) {
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

void EpsilonScaling::check_positive(int64_t num_steps) const {
  for (int64_t index : {int64_t{0}, num_steps - 1}) {
    const double lam = lambda(index, num_steps);
    check(lam > 0, "epsilon_scaling: lambda = k*i + b = ", lam, " <= 0 at step ", index, " of ",
          num_steps, " (b=", options.b(), ", k=", options.k(),
          ", direction=", enum_name(options.direction(), direction_names()),
          "); lambda must stay > 0 over the run");
  }
}

DIFFUSE_REGISTER_CORRECTION(
    EpsilonScaling, "epsilon_scaling",
    "Epsilon Scaling (Ning et al. 2024): eps / lambda, lambda = k*i + b (set b; b=1, k=0: off)");
// ADM-ES, constant b (ADM-ES @54ad3ad datasets/ADM-ES_results.png).
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
