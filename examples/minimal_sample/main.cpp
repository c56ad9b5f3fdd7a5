// SPDX-License-Identifier: Apache-2.0
// Sample with your own network: the README's quick-start example, built in CI.
#include <diffuse/all.h>

#include <iostream>

int main() {
  // A diffusers-style discrete schedule (Stable Diffusion's betas).
  auto schedule = diffuse::make_schedule(
      "discrete",
      {{"beta_schedule", "scaled_linear"}, {"beta_start", "0.00085"}, {"beta_end", "0.012"}});
  // Any callable (x_t, t, cond) -> prediction is a network; here a stand-in eps-predictor.
  diffuse::Network net = [](const diffuse::Tensor& x, const diffuse::Tensor& t,
                            const diffuse::Conditioning&) { return x * 0.1; };
  diffuse::Denoiser denoiser(net, {diffuse::Parameterization::kEpsilon});
  auto sampler = diffuse::make_sampler("ddim", {{"eta", "0.0"}});

  diffuse::SampleOptions options;
  options.num_steps = 20;
  options.spacing = diffuse::make_spacing("trailing");
  options.seed = 42;
  diffuse::Tensor noise = diffuse::randn({4, 4, 8, 8}, /*seed=*/42);
  diffuse::Tensor x0 = diffuse::sample(*sampler, denoiser, *schedule, noise, options);
  std::cout << "sampled " << x0.sizes() << ", mean |x0| = " << x0.abs().mean().item<double>()
            << "\n";
  return 0;
}
