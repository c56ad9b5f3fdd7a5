// SPDX-License-Identifier: Apache-2.0
// Elementwise tensor arithmetic for sampler and correction authors, rounded exactly like the plain
// LibTorch expressions they stand for (same bits), but faster on the sampler hot path: contiguous
// float32/float64 CPU tensors go through fused single-pass loops (internal, detail/fused.h), and
// other float32 tensors get their coefficient as a 0-dim float32 operand instead of a double
// Scalar (see scaled()). Every coefficient is rounded to the tensor's dtype first, as `t * c` does.
#pragma once

#include <diffuse/tensor.h>

namespace diffuse {

/// `t * c` in a fresh tensor, with the bits of the plain expression. Contiguous float32/float64 CPU
/// tensors go through a fused loop. Otherwise, for float32 tensors the factor goes in as a 0-dim
/// float32 CPU tensor: a double Scalar operand (what `t * c` passes) sends LibTorch 1.13's CPU
/// kernels through their dtype-casting loop, about 1 us more per [4, 4, 32, 32] op, while the
/// product is the same (both round c to float32 first). Other dtypes use the Scalar as before
/// (double needs no cast; half and bfloat16 multiply by the unrounded factor in float). A CPU 0-dim
/// operand is allowed next to CUDA tensors and passed as a kernel argument: no copy, no sync.
Tensor scaled(const Tensor& t, double c);

/// `t / c` in a fresh tensor, with the bits of the plain expression (see scaled()).
Tensor divided(const Tensor& t, double c);

/// In place `t *= c` on a tensor the caller owns (see scaled()); returns t.
Tensor& scale_(Tensor& t, double c);

/// In place `t /= c` on a tensor the caller owns; returns t.
Tensor& divide_(Tensor& t, double c);

/// a * ca + b * cb in a fresh tensor, rounded exactly like that expression (two products, then one
/// sum; at::add with alpha or addcmul would fuse a multiply-add and change the last bit).
Tensor lincomb(const Tensor& a, double ca, const Tensor& b, double cb);

/// (a * ca + b * cb) / d in a fresh tensor, rounded like that expression.
Tensor lincomb_divided(const Tensor& a, double ca, const Tensor& b, double cb, double d);

/// In place `x += e * c` (x.add_(scaled(e, c))) on a tensor x the caller owns; e is not changed.
Tensor& add_scaled_(Tensor& x, const Tensor& e, double c);

/// In place `x -= e * c` (x.sub_(scaled(e, c))) on a tensor x the caller owns.
Tensor& sub_scaled_(Tensor& x, const Tensor& e, double c);

/// (a - b) * c in a fresh tensor: the rounded difference, then the rounded product.
Tensor diff_scaled(const Tensor& a, const Tensor& b, double c);

/// (a - b) / c in a fresh tensor: the rounded difference, then the rounded quotient.
Tensor diff_divided(const Tensor& a, const Tensor& b, double c);

/// (x - u * cu) / d in a fresh tensor, rounded like that expression.
Tensor solve(const Tensor& x, const Tensor& u, double cu, double d);

/// DPM-Solver++ 3M's third-order terms, added in place to its update x (a tensor the caller owns):
/// with e0 = diff_scaled(m0, m1, c0) and e1 = diff_scaled(m1, m2, c1),
/// first = scaled(e0, cw1) - e1 * cw (sub_scaled_), x += first * ca (add_scaled_), then
/// x -= diff_scaled(e0, e1, 1) * cb (sub_scaled_): those bits, in one pass over the four tensors
/// where they are fusable (else by those calls).
Tensor& add_dpm3_terms_(Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& m2, double c0,
                        double c1, double cw1, double cw, double ca, double cb);

}  // namespace diffuse
