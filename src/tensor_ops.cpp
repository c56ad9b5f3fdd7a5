// SPDX-License-Identifier: Apache-2.0
// The bodies of <diffuse/tensor_ops.h>: the fused kernels of detail/fused.h where they apply,
// otherwise the LibTorch expression (the rounding rules are documented in the header).
#include <diffuse/tensor_ops.h>

#include <diffuse/detail/aten.h>
#include <diffuse/detail/fused.h>

namespace diffuse {

namespace {

/// c as a 0-dim float32 CPU tensor: rounded to float32 to nearest (beyond the float range to
/// +-Inf, like the plain `t * c`; at::scalar_tensor itself would throw there).
Tensor float_factor(double c) {
  return at::scalar_tensor(detail::fused::coefficient<float>(c),
                           at::TensorOptions().dtype(at::kFloat));
}

}  // namespace

namespace fused = detail::fused;

Tensor scaled(const Tensor& t, double c) {
  if (fused::can_fuse(t)) return fused::mul(t, c);
  if (t.scalar_type() == at::kFloat) return at::mul(t, float_factor(c));
  return t * c;
}

Tensor divided(const Tensor& t, double c) {
  if (fused::can_fuse(t)) return fused::div(t, c);
  if (t.scalar_type() == at::kFloat) return at::div(t, float_factor(c));
  return t / c;
}

Tensor& scale_(Tensor& t, double c) {
  if (fused::can_fuse(t)) {
    fused::mul_(t, c);
  } else if (t.scalar_type() == at::kFloat) {
    t.mul_(float_factor(c));
  } else {
    t.mul_(c);
  }
  return t;
}

Tensor& divide_(Tensor& t, double c) {
  if (fused::can_fuse(t)) {
    fused::div_(t, c);
  } else if (t.scalar_type() == at::kFloat) {
    t.div_(float_factor(c));
  } else {
    t.div_(c);
  }
  return t;
}

Tensor lincomb(const Tensor& a, double ca, const Tensor& b, double cb) {
  if (fused::can_fuse(a, b)) return fused::lincomb(a, ca, b, cb);
  Tensor out = scaled(a, ca);
  if (out.scalar_type() != b.scalar_type() || out.device() != b.device() ||
      out.sizes() != b.sizes()) {
    return out + scaled(b, cb);
  }
  out.add_(scaled(b, cb));
  return out;
}

Tensor& add_scaled_(Tensor& x, const Tensor& e, double c) {
  if (fused::can_fuse_into(x, e)) {
    fused::add_scaled_(x, e, c, false);
  } else {
    x.add_(scaled(e, c));
  }
  return x;
}

Tensor& sub_scaled_(Tensor& x, const Tensor& e, double c) {
  if (fused::can_fuse_into(x, e)) {
    fused::add_scaled_(x, e, c, true);
  } else {
    x.sub_(scaled(e, c));
  }
  return x;
}

Tensor diff_scaled(const Tensor& a, const Tensor& b, double c) {
  if (fused::can_fuse(a, b)) return fused::diff_scaled(a, b, c, false);
  Tensor d = a - b;
  return scale_(d, c);
}

Tensor diff_divided(const Tensor& a, const Tensor& b, double c) {
  if (fused::can_fuse(a, b)) return fused::diff_scaled(a, b, c, true);
  Tensor d = a - b;
  return divide_(d, c);
}

Tensor solve(const Tensor& x, const Tensor& u, double cu, double d) {
  if (fused::can_fuse(x, u)) return fused::solve(x, u, cu, d);
  Tensor r = scaled(u, cu);
  // at::sub_out into r: only for one dtype, device and shape, and not under autograd (out= ops
  // do not record gradients).
  if (r.scalar_type() != x.scalar_type() || r.device() != x.device() || r.sizes() != x.sizes() ||
      r.requires_grad() || x.requires_grad()) {
    return divided(x - r, d);
  }
  at::sub_out(r, x, r);
  return divide_(r, d);
}

Tensor& add_dpm3_terms_(Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& m2, double c0,
                        double c1, double cw1, double cw, double ca, double cb) {
  if (fused::can_fuse_into(x, m0) && fused::can_fuse_into(x, m1) && fused::can_fuse_into(x, m2)) {
    fused::dpm3_terms_(x, m0, m1, m2, c0, c1, cw1, cw, ca, cb);
    return x;
  }
  const Tensor e0 = diff_scaled(m0, m1, c0);
  const Tensor e1 = diff_scaled(m1, m2, c1);
  Tensor first = scaled(e0, cw1);
  sub_scaled_(first, e1, cw);
  add_scaled_(x, first, ca);
  return sub_scaled_(x, diff_scaled(e0, e1, 1.0), cb);
}

Tensor lincomb_divided(const Tensor& a, double ca, const Tensor& b, double cb, double d) {
  if (fused::can_fuse(a, b)) return fused::lincomb_div(a, ca, b, cb, d);
  Tensor r = lincomb(a, ca, b, cb);
  return divide_(r, d);
}

}  // namespace diffuse
