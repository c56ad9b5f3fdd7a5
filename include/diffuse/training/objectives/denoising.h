// SPDX-License-Identifier: Apache-2.0
// Denoising score matching (the "simple" DDPM loss), with optional input perturbation.
//   Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models" (2020), Eq. (14), Algorithm 1;
//   v-prediction: Salimans & Ho, "Progressive Distillation" (2022), Sec. 4 / App. D;
//   input perturbation: Ning, Sangineto, Porrello, Calderara, Cucchiara, "Input Perturbation
//   Reduces Exposure Bias in Diffusion Models" (ICML 2023), Eq. (9) / Algorithm 1 (DDPM-IP).
// Checked against: forever208/DDPM-IP guided_diffusion/gaussian_diffusion.py training_losses
//   (noise drawn first, then xi = randn_like(noise); the network input uses noise + gamma * xi,
//   the epsilon target is the unperturbed noise; mse = mean_flat((target - output)^2)).
//
// Per example, with t and eps drawn as below (gamma = input_perturbation):
//   x_t    = alpha_t x0 + sigma_t (eps + gamma xi)    the network input
//   target = eps (epsilon) | alpha_t eps - sigma_t x0 (v_prediction) | x0 (sample)
//            | eps - x0 (flow_prediction: the velocity of x = (1 - sigma) x0 + sigma eps)
//   mse    = mean over all non-batch dims of (net(x_t, t, cond) - target)^2
//   loss   = w(t) mse                                  w from training/weighting.h
// Flow matching (Lipman et al. 2022; Liu et al. 2022; SD3, Esser et al. 2024) is this objective
// with flow_prediction on the flow schedule and logit-normal or mode noise levels: the alias
// "flow_matching". Input perturbation composes with it (the input leaves the forward marginal, the
// velocity target keeps the unperturbed eps).
// The target always uses the UNPERTURBED eps: DDPM-IP trains the network to remove the noise the
// forward process put in, while it sees an input that is slightly off the forward marginal (the
// exposure-bias simulation). For v and x0 targets this is the natural extension (x0 does not
// involve eps at all; v is built from the same eps as the epsilon target). With gamma = 0 the
// objective is the standard one, bit for bit, from the same generator.
//
// Draw order (all from the one generator, see training/time_sampling.h for the device rule):
//   1. t    [B]       (time sampling options)
//   2. eps  like x0   N(0, I)
//   3. xi   like x0   N(0, I), ONLY when input_perturbation > 0 (extra["xi"])
// so gamma = 0 consumes exactly the random numbers of the standard objective.
// Output terms: {"mse"} = the unweighted per-example mean squared error; loss = w(t) * mse.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/objective.h>
#include <diffuse/training/time_sampling.h>
#include <diffuse/training/weighting.h>

namespace diffuse {

namespace detail {
struct DenoisingCoreOptions;  // training/objectives/detail/denoising_core.h
}  // namespace detail

struct DenoisingOptions {
  /// What the network predicts: epsilon | v_prediction | sample | flow_prediction. Default
  /// epsilon.
  TORCH_ARG(Parameterization, prediction_type) = Parameterization::kEpsilon;
  /// How t is drawn: uniform (default), log_normal (p_mean, p_std), logit_normal (logit_mean,
  /// logit_std) or mode (mode_scale), the last two optionally shifted (shift).
  TORCH_ARG(TimeSamplingOptions, time_sampling) = {};
  /// Per-example loss weight: none (default), min_snr, snr, truncated_snr, edm.
  TORCH_ARG(WeightingOptions, weighting) = {};
  /// DDPM-IP gamma: the network input is built from eps + gamma xi. Default 0 (off); finite, >= 0.
  /// The paper's default is 0.1 (alias "ddpm_ip"); its README trains CIFAR-10 with 0.15.
  TORCH_ARG(double, input_perturbation) = 0.0;
};

class DenoisingObjective final : public Objective {
 public:
  explicit DenoisingObjective(DenoisingOptions o = {});

  /// Keys: prediction_type, time_sampling, p_mean, p_std, logit_mean, logit_std, mode_scale,
  /// shift, weighting, snr_gamma, sigma_data, input_perturbation.
  static std::unique_ptr<Objective> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "denoising"; }
  Parameterization prediction_type() const override { return options.prediction_type(); }

  /// Fills t, eps and (input_perturbation > 0 only) extra["xi"].
  ObjectiveDraw draw(const NoiseSchedule& s, const Batch& b, at::Generator& gen) const override;

  ObjectiveOutput evaluate(const Network& net, const NoiseSchedule& s, const Batch& b,
                           const ObjectiveDraw& d) const override;

  DenoisingOptions options;

 private:
  detail::DenoisingCoreOptions core() const;
};

}  // namespace diffuse
