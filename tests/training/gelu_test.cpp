// SPDX-License-Identifier: Apache-2.0
// diffuse::gelu_tanh (the DiT MLP's activation, our own float32 kernels) against LibTorch's
// at::gelu(x, "tanh") evaluated in double precision: values, derivatives, the ends of the range,
// the same bits from every instruction set and thread count, and LibTorch's path where ours does
// not apply.
#include <diffuse/detail/kernel_isa.h>
#include <diffuse/training/gelu.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

namespace diffuse {
namespace {

namespace fused = detail::fused;

// A dense grid over [-12, 12] (the clamp at +-9 and the region where LibTorch's 1 + tanh(u)
// cancels included) and a sample of wide normals.
at::Tensor test_inputs() {
  at::Tensor grid = at::linspace(-12.0, 12.0, 240001, at::kFloat);
  at::Tensor wide = at::randn({50000}, at::TensorOptions().dtype(at::kFloat)).mul_(4.0f);
  return at::cat({grid, wide});
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

TEST(GeluTanh, MatchesADoublePrecisionGelu) {
  at::manual_seed(1);
  const at::Tensor x = test_inputs();
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor ref = at::gelu(xd, "tanh");
  const at::Tensor ours = gelu_tanh(x).to(at::kDouble);
  // Absolute, scaled by 1 + |x| (float32 rounding of x itself is 6e-8 |x|).
  const double abs_err = ((ours - ref).abs() / (xd.abs() + 1)).max().item<double>();
  EXPECT_LT(abs_err, 1.5e-7);
  // Relative wherever the value is not tiny (LibTorch's float32 kernel misses this by 7 % at
  // x near -5: 1 + tanh(u) cancels).
  const at::Tensor big = ref.abs() > 1e-6;
  const double rel_err = ((ours - ref).abs() / ref.abs()).masked_select(big).max().item<double>();
  EXPECT_LT(rel_err, 5e-6);
  // The float32 kernel of LibTorch, to the same absolute bound.
  const at::Tensor theirs = at::gelu(x, "tanh").to(at::kDouble);
  EXPECT_LT(((ours - theirs).abs() / (xd.abs() + 1)).max().item<double>(), 3e-7);
}

TEST(GeluTanh, DerivativeMatchesADoublePrecisionBackward) {
  at::manual_seed(2);
  const at::Tensor x = test_inputs();
  const at::Tensor g = at::randn_like(x);
  const at::Tensor xd = x.to(at::kDouble).requires_grad_(true);
  at::gelu(xd, "tanh").backward(g.to(at::kDouble));
  const at::Tensor xf = x.clone().requires_grad_(true);
  const at::Tensor y = gelu_tanh(xf);
  ASSERT_TRUE(y.requires_grad());
  y.backward(g);
  const at::Tensor err =
      (xf.grad().to(at::kDouble) - xd.grad()).abs() / (g.to(at::kDouble).abs() + 1e-30);
  // gelu' is within [-0.17, 1.13]; float32 rounding of it is below 1.4e-7.
  EXPECT_LT(err.max().item<double>(), 5e-7);
}

TEST(GeluTanh, EndsOfTheRange) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor x = at::tensor(
      {0.0f, -0.0f, inf, -inf, nan, 1e-40f, -1e-40f, 3e38f, -3e38f, 9.5f, 100.0f, -9.5f, -100.0f});
  const at::Tensor y = gelu_tanh(x);
  const float* p = y.data_ptr<float>();
  EXPECT_EQ(p[0], 0.0f);
  EXPECT_FALSE(std::signbit(p[0]));
  EXPECT_EQ(p[1], 0.0f);
  EXPECT_TRUE(std::signbit(p[1]));
  EXPECT_EQ(p[2], inf);
  EXPECT_LT(std::fabs(p[3]), 1e-27f);  // gelu's limit is 0 (LibTorch's kernel gives NaN)
  EXPECT_TRUE(std::isnan(p[4]));
  EXPECT_EQ(p[5], 0.5f * 1e-40f);  // subnormals: x / 2, as LibTorch
  EXPECT_EQ(p[6], -0.5f * 1e-40f);
  EXPECT_EQ(p[7], 3e38f);  // large positive x: x itself
  EXPECT_LT(std::fabs(p[8]), 1e-27f);
  EXPECT_EQ(p[9], 9.5f);
  EXPECT_EQ(p[10], 100.0f);
  EXPECT_LT(std::fabs(p[11]), 1e-27f);
  EXPECT_LT(std::fabs(p[12]), 1e-27f);
  // The derivative stays finite and is 1 or 0 out there.
  const at::Tensor xg = at::tensor({3e38f, -3e38f, 50.0f, -50.0f}).requires_grad_(true);
  gelu_tanh(xg).sum().backward();
  const float* d = xg.grad().data_ptr<float>();
  EXPECT_EQ(d[0], 1.0f);
  EXPECT_LT(std::fabs(d[1]), 1e-25f);
  EXPECT_EQ(d[2], 1.0f);
  EXPECT_LT(std::fabs(d[3]), 1e-25f);
}

TEST(GeluTanh, EveryInstructionSetAndThreadCountGivesTheSameBits) {
  at::manual_seed(3);
  const at::Tensor x = test_inputs();
  const at::Tensor g = at::randn_like(x);
  const fused::KernelIsa before = fused::kernel_isa();
  const int threads = at::get_num_threads();
  at::Tensor y0, d0;
  for (fused::KernelIsa isa : fused::supported_kernel_isas()) {
    for (int t : {1, 2}) {
      SCOPED_TRACE(::testing::Message() << fused::kernel_isa_name(isa) << ", " << t << " threads");
      fused::set_kernel_isa(isa);
      at::set_num_threads(t);
      const at::Tensor xf = x.clone().requires_grad_(true);
      const at::Tensor y = gelu_tanh(xf);
      y.backward(g);
      if (!y0.defined()) {
        y0 = y.detach().clone();
        d0 = xf.grad().clone();
      } else {
        EXPECT_TRUE(same_bits(y.detach(), y0));
        EXPECT_TRUE(same_bits(xf.grad(), d0));
      }
    }
  }
  fused::set_kernel_isa(before);
  at::set_num_threads(threads);
}

TEST(GeluTanh, OtherTensorsAndDoubleBackwardTakeLibTorchsGelu) {
  at::manual_seed(4);
  const at::Tensor x = at::randn({64, 33}, at::TensorOptions().dtype(at::kDouble));
  EXPECT_TRUE(same_bits(gelu_tanh(x), at::gelu(x, "tanh")));
  // A non-contiguous float32 view: the same values as its contiguous copy.
  const at::Tensor f = at::randn({33, 64}).t();
  ASSERT_FALSE(f.is_contiguous());
  EXPECT_TRUE(same_bits(gelu_tanh(f), gelu_tanh(f.contiguous())));
  // Second derivative through create_graph: LibTorch's formula for the backward, so the
  // gradient of the gradient exists and matches at::gelu's.
  const at::Tensor a = at::randn({200}).requires_grad_(true);
  const at::Tensor ga = torch::autograd::grad({gelu_tanh(a).sum()}, {a}, {}, true, true)[0];
  ASSERT_TRUE(ga.requires_grad());
  const at::Tensor gga = torch::autograd::grad({ga.sum()}, {a})[0];
  const at::Tensor b = a.detach().clone().requires_grad_(true);
  const at::Tensor gb = torch::autograd::grad({at::gelu(b, "tanh").sum()}, {b}, {}, true, true)[0];
  const at::Tensor ggb = torch::autograd::grad({gb.sum()}, {b})[0];
  EXPECT_LT((gga - ggb).abs().max().item<double>(), 1e-6);
  // Without autograd (sampling): no graph, the same values.
  const at::Tensor r = at::randn({100}).requires_grad_(true);
  at::Tensor plain;
  {
    at::NoGradGuard no_grad;
    plain = gelu_tanh(r);
  }
  EXPECT_FALSE(plain.requires_grad());
  EXPECT_TRUE(same_bits(plain, gelu_tanh(r).detach()));
}

}  // namespace
}  // namespace diffuse
