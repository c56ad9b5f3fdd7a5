// SPDX-License-Identifier: Apache-2.0
// Shared discrete-beta maths: the beta schedules of DDPM / Stable Diffusion / iDDPM, the
// zero-terminal-SNR rescale (Lin et al. 2024, Algorithm 1) and alphas_cumprod. Written once here
// instead of once per scheduler. Computed with ATen ops in the requested dtype, so float32 mode
// reproduces diffusers' float32 tables bit for bit. Implementation: schedules/detail/betas.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <diffuse/schedules/beta_schedule.h>
#include <diffuse/tensor.h>

namespace diffuse::detail {

/// The largest num_train_timesteps a discrete schedule accepts (1e6; models use 1000 to 4000).
inline constexpr int64_t kMaxTrainTimesteps = 1000000;

/// betas for `kind` with T steps (2 <= T <= kMaxTrainTimesteps), as a 1-D tensor of `dtype`.
at::Tensor make_betas(BetaSchedule kind, int64_t T, double beta_start, double beta_end,
                      at::ScalarType dtype);

/// Lin et al. 2024, Algorithm 1: shift and scale sqrt(alphas_cumprod) so the last one is 0 and the
/// first is unchanged; returns the new betas (the last beta becomes 1).
at::Tensor rescale_zero_terminal_snr(const at::Tensor& betas);

/// The values of a tensor as doubles.
std::vector<double> to_vector(const at::Tensor& t);

}  // namespace diffuse::detail
