// SPDX-License-Identifier: Apache-2.0
// The DiT MLP's activation: diffuse::gelu_tanh (our float32 kernels) against LibTorch's
// at::gelu(x, "tanh"), forward alone and forward + backward through autograd, on the hidden
// activations of the tiny DiT's training batch ([64 x 49 tokens, 256]) and of DiT-S/2 ([4 x 256
// tokens, 1536]). Blocks of the two contenders alternate; medians of the rounds, each the best of 5
// calls.
//
//   diffuse_bench_gelu [--rounds 9] [--threads 1]
#include <diffuse/detail/kernel_isa.h>
#include <diffuse/training/gelu.h>

#include "timing.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) try {
  int rounds = 9, threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--rounds")
      rounds = std::stoi(argv[i + 1]);
    else if (k == "--threads")
      threads = std::stoi(argv[i + 1]);
    else
      throw diffuse::Error("unknown option '" + k + "'");
  }
  diffuse::check(rounds >= 1 && threads >= 1, "--rounds and --threads must be positive");
  at::set_num_threads(threads);
  at::manual_seed(0);
  std::printf(
      "threads %d, %d rounds, kernels %s; ms, medians of the rounds (best of 5 calls each)\n",
      threads, rounds,
      diffuse::detail::fused::kernel_isa_name(diffuse::detail::fused::kernel_isa()));
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{64 * 49, 256}, std::vector<int64_t>{4 * 256, 1536}}) {
    const at::Tensor x = at::randn(shape).mul_(2.0f);
    const at::Tensor g = at::randn(shape);
    std::vector<double> tf, of, tb, ob;
    for (int r = 0; r < rounds; ++r) {
      const bool torch_first = r % 2 == 0;
      for (int side = 0; side < 2; ++side) {
        if ((side == 0) == torch_first) {
          tf.push_back(diffuse::bench::min_time(5, [&] { (void)at::gelu(x, "tanh"); }));
          tb.push_back(diffuse::bench::min_time(5, [&] {
            const at::Tensor xr = x.detach().requires_grad_(true);
            at::gelu(xr, "tanh").backward(g);
          }));
        } else {
          of.push_back(diffuse::bench::min_time(5, [&] { (void)diffuse::gelu_tanh(x); }));
          ob.push_back(diffuse::bench::min_time(5, [&] {
            const at::Tensor xr = x.detach().requires_grad_(true);
            diffuse::gelu_tanh(xr).backward(g);
          }));
        }
      }
    }
    using diffuse::bench::median_of;
    const double f_t = median_of(tf), f_o = median_of(of), b_t = median_of(tb), b_o = median_of(ob);
    std::printf(
        "[%lld, %lld] forward: at::gelu %.3f  gelu_tanh %.3f  (ratio %.2f)   forward + "
        "backward (autograd): at::gelu %.3f  gelu_tanh %.3f  (ratio %.2f)\n",
        static_cast<long long>(shape[0]), static_cast<long long>(shape[1]), f_t * 1e3, f_o * 1e3,
        f_t / f_o, b_t * 1e3, b_o * 1e3, b_t / b_o);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gelu: %s\n", e.what());
  return 1;
}
