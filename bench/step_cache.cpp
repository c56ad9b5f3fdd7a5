// SPDX-License-Identifier: Apache-2.0
// DiT step caching (diffuse::DiTStepCache, TeaCache-style) on the shipped Fashion-MNIST DiT: for
// each threshold, --num samples (class i % 10, seed i, as `diffuse sample`) with --sampler,
// --steps and CFG --cfg, timed, and their quality against the 10,000 test images in the shipped
// classifier's feature space (Frechet distance, precision, recall: training/evaluation.h). The
// thresholds run in alternating rounds (--rounds; the order reverses every round) and each keeps
// its fastest round, so that machine load hits every setting alike; every sample set of a
// threshold is the same in every round (deterministic), so quality is measured once. Prints one
// markdown table (docs/benchmarks.md, "Step caching").
//
//   diffuse_bench_step_cache [--thresholds 0,0.05,0.1,0.2,0.3] [--num 1000] [--batch 250]
//       [--sampler dpmpp_2m] [--steps 20] [--cfg 2] [--rounds 2] [--threads 2] [--max-reuse 0]
#include <diffuse/all.h>
#include <diffuse/training/data.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/evaluation.h>
#include <diffuse/training/model_file.h>

#include "timing.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using diffuse::Tensor;

struct Args {
  std::vector<double> thresholds{0, 0.05, 0.1, 0.2, 0.3};
  int64_t num = 1000, batch = 250, steps = 20, rounds = 2, max_reuse = 0;
  int threads = 2;
  double cfg = 2;
  std::string sampler = "dpmpp_2m";
};

struct Outcome {
  double seconds = 1e30;  // fastest round
  int64_t computed = 0, reused = 0;
  Tensor samples;
};

/// The samples of one threshold (0 = no cache at all: the plain network).
Outcome run(const Args& a, const diffuse::LoadedModel& model,
            const diffuse::NoiseSchedule& schedule, const diffuse::Sampler& sampler,
            double threshold) {
  Outcome o;
  std::vector<Tensor> parts;
  const auto t0 = diffuse::bench::Clock::now();
  for (int64_t start = 0; start < a.num; start += a.batch) {
    const int64_t m = std::min(a.batch, a.num - start);
    c10::InferenceMode inference;
    diffuse::SampleOptions so;
    so.num_steps = a.steps;
    so.seed = static_cast<uint64_t>(start);
    so.guidance = diffuse::make_guidance("cfg", {{"scale", diffuse::format_double(a.cfg)}});
    so.cond.value = at::arange(start, start + m, at::kLong).remainder(model.card.num_classes);
    so.uncond.value = at::full({m}, model.card.num_classes, at::TensorOptions(at::kLong));
    std::shared_ptr<diffuse::DiTStepCache> cache;
    if (threshold > 0) cache = std::make_shared<diffuse::DiTStepCache>(threshold, a.max_reuse);
    const diffuse::Denoiser denoiser(cache ? model.cached_network(cache) : model.network,
                                     model.denoiser_options());
    std::vector<int64_t> shape{m};
    shape.insert(shape.end(), model.card.sample_shape.begin(), model.card.sample_shape.end());
    parts.push_back(
        diffuse::sample(sampler, denoiser, schedule, diffuse::randn(shape, so.seed), so));
    if (cache) {
      o.computed += cache->computed();
      o.reused += cache->reused();
    }
  }
  o.seconds = diffuse::bench::seconds_since(t0);
  o.samples = at::cat(parts);
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  Args a;
  diffuse::bench::parse_key_values(
      argc, argv,
      {{"--thresholds",
        [&](const std::string& v) {
          a.thresholds.clear();
          for (const std::string& s : diffuse::bench::split_list(v, ','))
            a.thresholds.push_back(std::stod(s));
        }},
       {"--num", [&](const std::string& v) { a.num = std::stoll(v); }},
       {"--batch", [&](const std::string& v) { a.batch = std::stoll(v); }},
       {"--steps", [&](const std::string& v) { a.steps = std::stoll(v); }},
       {"--rounds", [&](const std::string& v) { a.rounds = std::stoll(v); }},
       {"--max-reuse", [&](const std::string& v) { a.max_reuse = std::stoll(v); }},
       {"--threads", [&](const std::string& v) { a.threads = std::stoi(v); }},
       {"--cfg", [&](const std::string& v) { a.cfg = std::stod(v); }},
       {"--sampler", [&](const std::string& v) { a.sampler = v; }}});
  diffuse::check(a.num >= 4 && a.batch >= 1 && a.steps >= 1 && a.rounds >= 1 && a.threads >= 1,
                 "--num must be >= 4 and --batch, --steps, --rounds, --threads >= 1");
  diffuse::check(!a.thresholds.empty(), "--thresholds is empty");
  for (double t : a.thresholds)
    diffuse::check(t >= 0, "--thresholds: ", t, " is negative (0 = no cache)");
  at::set_num_threads(a.threads);
  diffuse::enable_caching_cpu_allocator();

  const diffuse::LoadedModel model = diffuse::load_model(diffuse::default_model_path());
  diffuse::check(model.card.num_classes > 0, "the default model is not class-conditional");
  const std::shared_ptr<diffuse::NoiseSchedule> schedule = model.make_schedule();
  const std::unique_ptr<diffuse::Sampler> sampler = diffuse::sampler_from_spec(a.sampler);
  diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
  const diffuse::FashionReference ref =
      diffuse::make_fashion_reference(classifier, diffuse::load_fashion_mnist("test"));

  std::vector<Outcome> best(a.thresholds.size());
  for (int64_t r = 0; r < a.rounds; ++r) {
    for (size_t k = 0; k < a.thresholds.size(); ++k) {
      const size_t i = r % 2 ? a.thresholds.size() - 1 - k : k;
      Outcome o = run(a, model, *schedule, *sampler, a.thresholds[i]);
      std::fprintf(stderr, "round %lld threshold %g: %.2f s\n", static_cast<long long>(r + 1),
                   a.thresholds[i], o.seconds);
      if (o.seconds < best[i].seconds) best[i] = std::move(o);
    }
  }
  double base = 0;
  for (size_t i = 0; i < a.thresholds.size(); ++i)
    if (a.thresholds[i] == 0) base = best[i].seconds;
  std::printf(
      "%lld samples, %s, %lld steps, CFG %g (one batched network call per step), batches of %lld, "
      "%d threads; fastest of %lld alternating rounds; quality against the %lld test images\n\n",
      static_cast<long long>(a.num), a.sampler.c_str(), static_cast<long long>(a.steps), a.cfg,
      static_cast<long long>(a.batch), a.threads, static_cast<long long>(a.rounds),
      static_cast<long long>(ref.features.size(0)));
  std::printf(
      "| threshold | blocks run / network calls | time (s) | speed-up | FD | precision | recall "
      "| FD change |\n|---|---|---|---|---|---|---|---|\n");
  double fd0 = -1;
  char buf[32];
  auto fixed = [&buf](double v, const char* fmt) {
    std::snprintf(buf, sizeof buf, fmt, v);
    return std::string(buf);
  };
  for (size_t i = 0; i < a.thresholds.size(); ++i) {
    const Outcome& o = best[i];
    const diffuse::EvalResult e =
        diffuse::evaluate_fashion_mnist(o.samples.clamp(-1, 1), classifier, ref);
    if (a.thresholds[i] == 0) fd0 = e.fd;
    const int64_t calls = a.thresholds[i] > 0 ? o.computed + o.reused : 0;
    const std::string run_text = a.thresholds[i] > 0
                                     ? std::to_string(o.computed) + " / " + std::to_string(calls)
                                     : std::string("all (no cache)");
    std::printf("| %g | %s | %.2f | %s | %.2f | %.3f | %.3f | %s |\n", a.thresholds[i],
                run_text.c_str(), o.seconds,
                base > 0 ? fixed(base / o.seconds, "%.2fx").c_str() : "-", e.fd, e.precision,
                e.recall, fd0 >= 0 ? fixed(e.fd - fd0, "%+.2f").c_str() : "-");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "step_cache: %s\n", e.what());
  return 1;
}
