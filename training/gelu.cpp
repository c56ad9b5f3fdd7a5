// SPDX-License-Identifier: Apache-2.0
#include <diffuse/training/gelu.h>

#include <ATen/Parallel.h>
#include <torch/autograd.h>

namespace diffuse::detail {
namespace {

/// Elements per task of the parallel loops (each element is about 30 vector-lane operations).
constexpr int64_t kGeluGrain = 16384;

bool gelu_takes(const at::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && x.layout() == at::kStrided;
}

at::Tensor gelu_forward_tensor(const at::Tensor& x_in) {
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  const float* px = x.data_ptr<float>();
  float* py = y.data_ptr<float>();
  at::parallel_for(0, x.numel(), kGeluGrain,
                   [&](int64_t s, int64_t e) { gelu_tanh_forward(px + s, py + s, e - s); });
  return y;
}

at::Tensor gelu_backward_tensor(const at::Tensor& x_in, const at::Tensor& g_in) {
  const at::Tensor x = x_in.contiguous();
  const at::Tensor g = g_in.to(at::kFloat).contiguous();
  at::Tensor dx = at::empty_like(x, at::MemoryFormat::Contiguous);
  const float *px = x.data_ptr<float>(), *pg = g.data_ptr<float>();
  float* pd = dx.data_ptr<float>();
  at::parallel_for(0, x.numel(), kGeluGrain, [&](int64_t s, int64_t e) {
    gelu_tanh_backward(px + s, pg + s, pd + s, e - s);
  });
  return dx;
}

struct GeluTanh : torch::autograd::Function<GeluTanh> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return gelu_forward_tensor(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    if (!grad[0].defined()) return {at::Tensor()};
    // A backward that is itself differentiated (create_graph) takes LibTorch's formula.
    if (at::GradMode::is_enabled()) return {at::gelu_backward(grad[0], x, "tanh")};
    return {gelu_backward_tensor(x, grad[0])};
  }
};

}  // namespace
}  // namespace diffuse::detail

namespace diffuse {

at::Tensor gelu_tanh(const at::Tensor& x) {
  if (!detail::gelu_takes(x)) return at::gelu(x, "tanh");
  if (x.requires_grad() && at::GradMode::is_enabled()) return detail::GeluTanh::apply(x);
  return detail::gelu_forward_tensor(x);
}

}  // namespace diffuse
