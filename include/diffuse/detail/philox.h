// SPDX-License-Identifier: Apache-2.0
// The kernels behind make_philox_noise (<diffuse/noise.h>), for tests and benchmarks; no LibTorch.
#pragma once

#include <cstdint>

namespace diffuse {
namespace detail {

/// One Philox4x32-10 block: the 4 words for counter `ctr` under key `key`.
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/// The 4 normals of one block's words (the float32 Box-Muller of make_philox_noise): from the
/// pairs (words[0], words[1]) and (words[2], words[3]), r cos and r sin of each.
void philox_box_muller(const uint32_t words[4], float z[4]);

/// Normals first .. first + n of make_philox_noise(seed)'s stream for batch element `sample` in
/// draw `draw` (first a multiple of 4), by the kernels of fused::kernel_isa().
void philox_normal(float* out, int64_t n, uint64_t seed, uint64_t sample, uint64_t draw,
                   int64_t first = 0);

/// x[i] = x[i] + z_i * c for those normals z (the bits of add_scaled_ on a float32 tensor of
/// them), without storing them anywhere else.
void philox_add_normal(float* x, float c, int64_t n, uint64_t seed, uint64_t sample, uint64_t draw,
                       int64_t first = 0);

}  // namespace detail
}  // namespace diffuse
