// SPDX-License-Identifier: Apache-2.0
// A consumer of the installed diffuse::training: a tiny DiT, one objective loss, and the shipped
// classifier found at its installed location (share/diffuse).
#include <diffuse/training.h>

#include <cstdio>

int main() {
  diffuse::DiT model(diffuse::DiTOptions(8, 1).patch_size(2).hidden_size(32).depth(1).num_heads(2));
  auto objective = diffuse::make_objective("ddpm_ip");
  auto schedule = diffuse::make_schedule("discrete");
  at::Generator gen = at::detail::createCPUGenerator(0);
  diffuse::Batch batch{at::zeros({2, 1, 8, 8}), {}};
  const diffuse::Tensor loss =
      objective->loss(diffuse::as_network(model), *schedule, batch, gen).loss;
  if (loss.sizes() != c10::IntArrayRef({2}) || !at::isfinite(loss).all().item<bool>()) {
    std::fprintf(stderr, "training consumer: bad loss\n");
    return 1;
  }
  diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
  std::printf("training consumer: loss %s, classifier with %zu parameter tensors\n",
              c10::str(loss.sizes()).c_str(), classifier->parameters().size());
  return 0;
}
