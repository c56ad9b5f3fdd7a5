// SPDX-License-Identifier: Apache-2.0
// Which instruction set's copy of the CPU kernels runs (the fused sampler kernels of
// <diffuse/detail/fused.h>, the Philox noise of <diffuse/detail/philox.h>); no LibTorch.
#pragma once

#include <string>
#include <vector>

namespace diffuse::detail::fused {

/// The instruction sets the kernels are compiled for (src/fused_kernels.cpp): the build's
/// baseline everywhere, AVX2 and AVX-512 as well with GCC on x86-64. Every set gives the same bits.
enum class KernelIsa { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

/// "baseline", "avx2", "avx512" (the values DIFFUSE_CPU_ISA takes).
const char* kernel_isa_name(KernelIsa isa);
/// The sets this build has and this CPU runs, baseline first.
std::vector<KernelIsa> supported_kernel_isas();
/// supported_kernel_isas() as "baseline, avx2, avx512".
std::string supported_kernel_isas_text();
/// The set in use: DIFFUSE_CPU_ISA when set (an unsupported value is an error), else the best one.
KernelIsa kernel_isa();
/// Switches the set in use (tests, benchmarks); not while kernels run on other threads.
void set_kernel_isa(KernelIsa isa);

}  // namespace diffuse::detail::fused
