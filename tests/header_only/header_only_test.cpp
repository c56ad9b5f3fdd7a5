// SPDX-License-Identifier: Apache-2.0
// Smoke test of diffuse::header_only: the umbrella header alone registers and runs a sampler.
#include <diffuse/all.h>

#include <cstdio>

int main() {
  auto schedule = diffuse::make_schedule("discrete");
  auto sampler = diffuse::make_sampler("ddim");
  diffuse::Denoiser denoiser([](const diffuse::Tensor& x, const diffuse::Tensor&, const diffuse::Conditioning&) {
    return x * 0.5;
  });
  diffuse::SampleOptions o;
  o.num_steps = 5;
  auto x = diffuse::sample(*sampler, denoiser, *schedule, diffuse::randn({2, 3}, 0), o);
  if (x.sizes() != at::IntArrayRef({2, 3}) || !at::isfinite(x).all().item<bool>()) {
    std::fprintf(stderr, "header-only smoke test failed\n");
    return 1;
  }
  std::printf("header-only smoke test passed\n");
  return 0;
}
