// SPDX-License-Identifier: Apache-2.0
// Build a schedule + spacing + sampler + denoiser options from a HuggingFace diffusers scheduler
// class name and its config (the keys of scheduler_config.json), so that sampling reproduces that
// scheduler: same timesteps, same sigmas, same final sample (diffusers 58eb52c).
//
//   auto s = diffuse::from_diffusers("DPMSolverMultistepScheduler",
//                                    {{"beta_schedule", "scaled_linear"}, {"beta_start",
//                                    "0.00085"},
//                                     {"beta_end", "0.012"}, {"use_karras_sigmas", "true"}});
//   diffuse::TimeGrid grid = s.grid(20);               // what set_timesteps(20) would visit
//   diffuse::Denoiser d = s.denoiser(my_network);
//
// Supported classes: DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler (also
// algorithm_type=dpmsolver), DPMSolverSinglestepScheduler (both also with use_flow_sigmas and
// flow_prediction), UniPCMultistepScheduler, DEISMultistepScheduler, EulerDiscreteScheduler,
// EulerAncestralDiscreteScheduler, HeunDiscreteScheduler, LMSDiscreteScheduler (step()'s order as
// a key), KDPM2DiscreteScheduler, KDPM2AncestralDiscreteScheduler, PNDMScheduler (leading spacing),
// LCMScheduler, TCDScheduler (the lcm
// spacing; TCD's eta as a key), EDMEulerScheduler, EDMDPMSolverMultistepScheduler (the edm
// schedule with DenoiserOptions::edm_preconditioning), FlowMatchEulerDiscreteScheduler (shift,
// dynamic shifting, shift_terminal, Karras / exponential / beta sigmas, stochastic_sampling),
// FlowMatchHeunDiscreteScheduler. Each accepts exactly its __init__ keys (plus the step() /
// set_timesteps() arguments: eta for DDIM and TCD, s_churn/s_tmin/s_tmax/s_noise for Euler, mu for
// dynamic shifting); keys starting with '_' (e.g. _class_name) are ignored; other unknown keys are
// errors unless strict=false. Features diffusers has and diffuse does not (learned variances,
// singlestep SDE-DPM-Solver++, lambda_min_clipped with trailing spacing, inverted flow
// sigmas, UniPC's solver_p, DPM-Solver's final_sigmas_type=sigma_min with flow sigmas) are rejected
// with an error naming the key.
// Euler's interpolation_type=log_linear is reproduced with its mismatch of model time and noise
// level (the log_linear spacing).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/sample.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

namespace diffuse {

struct DiffusersScheduler {
  std::string class_name;
  std::shared_ptr<const NoiseSchedule> schedule;
  std::shared_ptr<const TimestepSpacing> spacing;
  std::shared_ptr<const Sampler> sampler;
  DenoiserOptions denoiser_options;
  /// diffusers' init_noise_sigma convention, as a factor on the VP-native state: the initial
  /// latent is noise * init_noise_sigma in diffusers' own units.
  bool init_noise_is_sigma_max = false;
  /// Flow-matching schedulers start from the noise itself (init_noise_sigma = 1).
  bool init_noise_is_one = false;

  /// The points set_timesteps(num_steps) makes the scheduler visit (last = where it lands).
  TimeGrid grid(int64_t num_steps) const;
  /// A Denoiser of `net` with this scheduler's prediction type and clipping.
  Denoiser denoiser(Network net) const;
  /// The pipeline's initial state for N(0, I) `noise` (latents * init_noise_sigma, as x_t).
  Tensor initial_state(const Tensor& noise, int64_t num_steps) const;
  /// SampleOptions preset with this scheduler's spacing.
  SampleOptions sample_options(int64_t num_steps) const;
};

/// The supported scheduler class names.
std::vector<std::string> diffusers_scheduler_classes();
/// The schedule, spacing, sampler and denoiser options of diffusers' `class_name` with `config`.
DiffusersScheduler from_diffusers(const std::string& class_name, const Config& config,
                                  bool strict = true);

}  // namespace diffuse
