// SPDX-License-Identifier: Apache-2.0
// GELU in its tanh form, x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))): the activation of the
// DiT's MLP (nn.GELU(approximate="tanh") in the reference code). For float32 CPU tensors, one pass
// of diffuse's own kernels forward and backward (training/gelu_kernels.cpp: the identity
// 1 + tanh(u) = 2 / (1 + exp(-2 u)), one exp and one division; about 5x faster than LibTorch
// 1.13's tanh-based kernel on one core); any other tensor, and a backward that is differentiated
// again (create_graph), goes to at::gelu. Against a double-precision gelu: within 1e-7 (1 + |x|),
// as at::gelu(x, "tanh") in float32.
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace diffuse::detail {

/// y[i] = gelu(x[i]), by the kernels of fused::kernel_isa() (every set gives the same bits).
void gelu_tanh_forward(const float* x, float* y, int64_t n);
/// dx[i] = g[i] gelu'(x[i]).
void gelu_tanh_backward(const float* x, const float* g, float* dx, int64_t n);

}  // namespace diffuse::detail

namespace diffuse {

/// gelu(x) in its tanh form, differentiable.
at::Tensor gelu_tanh(const at::Tensor& x);

}  // namespace diffuse
