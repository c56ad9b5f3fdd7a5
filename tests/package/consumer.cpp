// SPDX-License-Identifier: Apache-2.0
// The program both package consumer projects build: DDIM on a stand-in network.
#include <ATen/ATen.h>  // the tensor arithmetic of the stand-in network

#include <cstdio>

#include <diffuse/diffuse.h>  // the registrations live in libdiffuse

int main() {
  auto schedule = diffuse::make_schedule("discrete");
  auto sampler = diffuse::make_sampler("ddim");
  diffuse::Denoiser denoiser([](const diffuse::Tensor& x, const diffuse::Tensor&,
                                const diffuse::Conditioning&) { return x * 0.5; });
  diffuse::SampleOptions options;
  options.num_steps = 5;
  options.spacing = diffuse::make_spacing("trailing");
  const diffuse::Tensor x =
      diffuse::sample(*sampler, denoiser, *schedule, diffuse::randn({2, 3}, 0), options);
  if (x.sizes() != c10::IntArrayRef({2, 3}) || !at::isfinite(x).all().item<bool>()) {
    std::fprintf(stderr, "consumer: sampling failed\n");
    return 1;
  }
  std::printf("consumer: diffuse %s sampled with %s\n", DIFFUSE_VERSION_STRING,
              sampler->name().c_str());
  return 0;
}
