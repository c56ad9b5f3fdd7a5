// SPDX-License-Identifier: Apache-2.0
// DDPM ancestral sampler. Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models" (2020),
// Eq. (6), (7) and Algorithm 2; respaced chains as in Nichol & Dhariwal (2021), Appendix B.
// Checked against: diffusers DDPMScheduler.step / _get_variance (58eb52c).
//
// One step goes from grid point `now` (t) to `next` (s, the previous timestep in diffusers' words).
// Skipped training steps are handled by the respaced chain: with a = alpha_t / alpha_s,
//   beta'  = sigma_t^2 - a^2 sigma_s^2              (= 1 - abar_t / abar_s on VP schedules)
//   mean   = (alpha_s beta' / sigma_t^2) x0 + (a sigma_s^2 / sigma_t^2) x_t      Eq. (7)
//   var    = beta' sigma_s^2 / sigma_t^2            ("fixed_small", beta-tilde; clamped to 1e-20)
//          | beta'                                  ("fixed_large", Ho et al.'s sigma^2 = beta)
//   x_s    = mean + sqrt(var) z
// x0 is the denoiser's (possibly clipped or thresholded) prediction, so the mean is the
// x0-parameterised posterior mean, as in diffusers. No noise is added on the step onto the clean
// point (Algorithm 2, z = 0 at t = 1) unless diffusers_final_noise is set.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/detail/aten.h>  // until the module conversion (core headers are light now)
#include <diffuse/sampler.h>

namespace diffuse {

/// The posterior variance of DdpmSampler (diffusers' variance_type; see DdpmOptions).
enum class DdpmVarianceType {
  kFixedSmall,     ///< "fixed_small" (default): beta-tilde
  kFixedSmallLog,  ///< "fixed_small_log": the same value
  kFixedLarge,     ///< "fixed_large": beta'
  kLearnedRange    ///< "learned_range": the network's v interpolates the two logs (iDDPM, DiT)
};

struct DdpmOptions {
  /// Posterior variance. "fixed_small" (default): beta-tilde, the true posterior variance, clamped
  /// below at 1e-20 as diffusers does. "fixed_small_log": the same value, which diffusers computes
  /// as exp(0.5 * log(var)); identical here because coefficients are host doubles. "fixed_large":
  /// beta' itself (Ho et al.'s sigma_t^2 = beta_t; not clamped, and unlike ADM not replaced by
  /// beta-tilde at the last step). "learned_range" (Nichol & Dhariwal 2021, Eq. 15; ADM, DiT,
  /// diffusers): log variance = (v + 1) / 2 * log(beta') + (1 - v) / 2 * log(beta-tilde), with v
  /// the network's variance output per element (Prediction::variance; a Denoiser with
  /// learned_variance), so v = -1 is fixed_small and v = 1 fixed_large.
  TORCH_ARG(DdpmVarianceType, variance_type) = DdpmVarianceType::kFixedSmall;
  /// Also draw noise on the step onto the clean point when the current t > 0, as diffusers'
  /// DDPMScheduler.step does (its test is `t > 0`, not "not the last step"). Only grids that do not
  /// end at t = 0 see a difference (trailing spacing, steps_offset > 0): fixed_small then adds
  /// 1e-10 * z, fixed_large adds sqrt(1 - abar_t) * z to the final sample. Default false.
  TORCH_ARG(bool, diffusers_final_noise) = false;
};

class DdpmSampler final : public Sampler {
 public:
  /// The smallest variance diffusers lets through (_get_variance's torch.clamp(min=1e-20)).
  static constexpr double kMinVariance = 1e-20;

  explicit DdpmSampler(DdpmOptions o = {});
  /// Keys: variance_type (fixed_small | fixed_small_log | fixed_large | learned_range),
  /// diffusers_final_noise.
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "ddpm"; }
  bool is_stochastic() const override { return true; }

  /// Respaced beta' of the step now -> next: sigma_t^2 - (alpha_t/alpha_s)^2 sigma_s^2.
  static double step_beta(const TimePoint& now, const TimePoint& next);

  /// The variance of the step now -> next under `variance_type` (diffusers' _get_variance with
  /// previous_timestep = next).
  static double variance(const TimePoint& now, const TimePoint& next,
                         DdpmVarianceType variance_type);

  DdpmOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
