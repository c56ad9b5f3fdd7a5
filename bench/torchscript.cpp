// SPDX-License-Identifier: Apache-2.0
// A TorchScript network as loaded by diffuse::load_model, frozen for inference (the default,
// LoadModelOptions::freeze_torchscript) against not frozen: time per network call at one batch
// size, the two loaded twice each and timed in alternating blocks (medians of the block times),
// and the largest difference of their outputs (freezing without numeric rewrites changes none).
// The module: bench/torchscript_model.py writes a traced DiT (the shipped model's size by default).
//
//   /usr/bin/python3 bench/torchscript_model.py --out /tmp/dit_ts.pt
//   diffuse_bench_torchscript --model /tmp/dit_ts.pt
//       [--card "sample_shape=1x28x28,num_classes=10"] [--batch 64] [--calls 20] [--rounds 7]
//       [--threads 2]
#include <diffuse/all.h>
#include <diffuse/training/model_file.h>

#include "timing.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) try {
  std::string model, card = "sample_shape=1x28x28,num_classes=10";
  int64_t batch = 64, calls = 20, rounds = 7;
  int threads = 2;
  diffuse::bench::parse_key_values(
      argc, argv,
      {{"--model", [&](const std::string& v) { model = v; }},
       {"--card", [&](const std::string& v) { card = v; }},
       {"--batch", [&](const std::string& v) { batch = std::stoll(v); }},
       {"--calls", [&](const std::string& v) { calls = std::stoll(v); }},
       {"--rounds", [&](const std::string& v) { rounds = std::stoll(v); }},
       {"--threads", [&](const std::string& v) { threads = std::stoi(v); }}});
  diffuse::check(!model.empty(), "--model is required (bench/torchscript_model.py writes one)");
  diffuse::check(batch >= 1 && calls >= 1 && rounds >= 1 && threads >= 1,
                 "--batch, --calls, --rounds and --threads must be positive");
  at::set_num_threads(threads);
  diffuse::enable_caching_cpu_allocator();

  diffuse::LoadModelOptions frozen_options, plain_options;
  frozen_options.card = plain_options.card = card;
  plain_options.freeze_torchscript = false;
  const diffuse::LoadedModel frozen = diffuse::load_model(model, frozen_options);
  const diffuse::LoadedModel plain = diffuse::load_model(model, plain_options);

  std::vector<int64_t> shape{batch};
  shape.insert(shape.end(), frozen.card.sample_shape.begin(), frozen.card.sample_shape.end());
  const diffuse::Tensor x = diffuse::randn(shape, 1);
  const diffuse::Tensor t = at::linspace(10, 990, batch);
  diffuse::Conditioning c;
  if (frozen.card.num_classes > 0)
    c.value = at::arange(batch, at::kLong).remainder(frozen.card.num_classes);

  c10::InferenceMode inference;
  const double diff = (frozen.network(x, t, c) - plain.network(x, t, c)).abs().max().item<double>();
  auto block = [&](const diffuse::LoadedModel& m) {
    for (int i = 0; i < 3; ++i) (void)m.network(x, t, c);  // warm-up (profiling executor)
    const auto t0 = diffuse::bench::Clock::now();
    for (int64_t i = 0; i < calls; ++i) (void)m.network(x, t, c);
    return diffuse::bench::seconds_since(t0) / static_cast<double>(calls);
  };
  std::vector<double> tf, tp;
  for (int64_t r = 0; r < rounds; ++r) {
    if (r % 2) {
      tp.push_back(block(plain));
      tf.push_back(block(frozen));
    } else {
      tf.push_back(block(frozen));
      tp.push_back(block(plain));
    }
  }
  const double mf = diffuse::bench::median_of(tf), mp = diffuse::bench::median_of(tp);
  std::printf(
      "%s (%s / %s), batch %lld, %d threads, %lld calls x %lld alternating rounds (medians)\n"
      "not frozen %.3f ms/call, frozen %.3f ms/call, frozen / not frozen %.3f; max |difference| "
      "of the outputs %.3g\n",
      model.c_str(), frozen.format.c_str(), plain.format.c_str(), static_cast<long long>(batch),
      threads, static_cast<long long>(calls), static_cast<long long>(rounds), mp * 1e3, mf * 1e3,
      mf / mp, diff);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "torchscript: %s\n", e.what());
  return 1;
}
