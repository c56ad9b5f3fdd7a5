// SPDX-License-Identifier: Apache-2.0
// DDIM sampler. Song, Meng, Ermon, "Denoising Diffusion Implicit Models" (2020), Eq. (12), (16).
// Checked against: diffusers DDIMScheduler.step (58eb52c). Implementation: samplers/ddim.cpp.
// In the VP-native notation (alpha = sqrt(alphas_cumprod), sigma = sqrt(1 - alphas_cumprod)):
//   sigma_eta = eta * (sigma_next / sigma) * sqrt(1 - alpha^2 / alpha_next^2)      Eq. (16)
//   x_next    = alpha_next * x0 + sqrt(sigma_next^2 - sigma_eta^2) * eps + sigma_eta * z   Eq. (12)
// eta = 0 is the deterministic probability-flow solver (first order), eta = 1 has DDPM's
// posterior variance on the respaced chain.
#pragma once

#include <memory>
#include <string>

#include <torch/arg.h>

#include <diffuse/sampler.h>

namespace diffuse {

/// Where a DDIM step goes from grid point t.
enum class DdimPrevTimestep {
  kGrid,        ///< "grid" (default): the next grid point.
  kTrainStride  ///< "train_stride": t - T // num_steps (clean point below 0), as diffusers'
                ///< DDIMScheduler does for every spacing; differs from kGrid only for linspace
                ///< spacing, where it leaves the grid.
};

struct DdimOptions {
  /// Noise weight. Default 0 (deterministic); must be >= 0 (1 = DDPM posterior variance).
  TORCH_ARG(double, eta) = 0.0;
  TORCH_ARG(DdimPrevTimestep, prev_timestep) = DdimPrevTimestep::kGrid;
};

class DdimSampler final : public Sampler {
 public:
  explicit DdimSampler(DdimOptions o = {});
  /// Keys: eta, prev_timestep (grid | train_stride).
  static std::unique_ptr<Sampler> from_config(const Config& c);
  Config to_config() const override;
  std::string name() const override { return "ddim"; }
  bool is_stochastic() const override { return options.eta() > 0; }

  DdimOptions options;

 protected:
  StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st, const History&,
                       SampleContext& ctx) const override;
};

}  // namespace diffuse
