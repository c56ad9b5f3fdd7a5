// SPDX-License-Identifier: Apache-2.0
// The benchmark suites as lists of named cases, for `diffuse bench`. Each case measures one thing
// (one sampler's overhead, one sampler + correction, one training mode) with the same code as the
// standalone programs in bench/ (timing.h, training_step.h), repeating its measurement until a
// minimum time has passed. A case names a baseline case of the same suite; ratios in the tables
// are taken against that baseline, measured in the same run.
#pragma once

#include "scaling.h"
#include "timing.h"
#include "training_step.h"

#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace diffuse::bench {

/// One measured quantity of a case.
struct Value {
  std::string name;  ///< column header, e.g. "overhead µs/step"
  double value = 0;
  bool compare = false;  ///< also reported as a ratio to the baseline case's value
};

/// What a case measured.
struct Result {
  std::vector<Value> values;
  int64_t repetitions = 0;  ///< measurements taken (the reported value is their min or median)
  std::string note;         ///< extra context (e.g. parameter count), may be empty
  /// The value called `name`; NaN if absent.
  double get(const std::string& name) const {
    for (const auto& v : values)
      if (v.name == name) return v.value;
    return std::numeric_limits<double>::quiet_NaN();
  }
};

/// One benchmark.
struct Case {
  std::string name;                 ///< "<suite>/<...>": what --filter matches
  std::vector<std::string> labels;  ///< the key cells of its table row (one per Suite::key_columns)
  std::string baseline;  ///< the case its ratios are against (its own name for a baseline)
  /// Measures, repeating until at least min_time seconds of measurement have passed.
  std::function<Result(double min_time)> run;
};

/// A suite: its cases and how its table reads.
struct Suite {
  std::string name;
  std::string title;
  std::string description;               ///< a paragraph printed above the table
  std::vector<std::string> key_columns;  ///< the headers of Case::labels
  std::string plot_value;                ///< the value drawn in the suite's PNG
  std::vector<Case> cases;
};

namespace detail {

inline std::string code_label(const std::string& spec) {
  return spec.empty() ? "(none)" : "`" + spec + "`";
}

}  // namespace detail

/// Sampler overhead per step: every distinct registered sampler on a [4, 4, 32, 32] float32 batch,
/// `discrete` schedule, 50 steps, trivial network; baseline ddim.
inline Suite sampler_overhead_suite() {
  Suite s;
  s.name = "sampler_overhead";
  s.title = "Sampler overhead per step";
  s.description =
      "Time each sampler spends outside the network per step: diffuse::sample() on a [4, 4, 32, "
      "32] float32 CPU "
      "batch, `discrete` schedule, default spacing, 50 steps, network eps = 0.1 x timed from the "
      "inside; "
      "overhead = (total - network) / steps, the minimum over the runs. Baseline: ddim.";
  s.key_columns = {"sampler"};
  s.plot_value = "overhead µs/step";
  for (const std::string& key : distinct_sampler_names()) {
    Case c;
    c.name = "sampler_overhead/" + key;
    c.labels = {key};
    c.baseline = "sampler_overhead/ddim";
    c.run = [key](double budget) {
      const int64_t steps = 50;
      auto schedule = make_schedule("discrete");
      const Tensor noise = randn({4, 4, 32, 32}, 0, at::TensorOptions().dtype(at::kFloat));
      TimedNetwork timer;
      const Denoiser denoiser(timer.wrap(trivial_network()));
      auto sampler = Registry<Sampler>::get().make(key);
      timed_sample(*sampler, *schedule, timer, denoiser, noise, 2, 0);  // warm-up
      double best = 1e30, net = 0;
      int64_t calls = 0, r = 0;
      const int64_t reps = detail::repeat_for(budget, 1, 10000, [&] {
        const RunTime m = timed_sample(*sampler, *schedule, timer, denoiser, noise, steps,
                                       static_cast<uint64_t>(r++));
        if (m.total - m.network < best) {
          best = m.total - m.network;
          net = m.network;
        }
        calls = m.calls;
      });
      Result res;
      res.values = {{"overhead µs/step", best / steps * 1e6, true},
                    {"network µs/step", net / steps * 1e6, false},
                    {"NFE/step", static_cast<double>(calls) / steps, false}};
      res.repetitions = reps;
      return res;
    };
    s.cases.push_back(std::move(c));
  }
  return s;
}

/// Corrections: per sampler, the plain run (the baseline) and the run with each default correction;
/// time per step, trivial network, 50 steps.
inline Suite corrections_suite() {
  Suite s;
  s.name = "corrections";
  s.title = "Correction overhead per step";
  s.description =
      "diffuse::sample() on a [4, 4, 32, 32] float32 CPU batch, `discrete` schedule, 50 steps, "
      "trivial network, "
      "minimum over the runs; each sampler plain (the baseline) and with each correction. "
      "\"÷ baseline\" - 1 is the share a correction adds to a step whose network is free.";
  s.key_columns = {"sampler", "correction"};
  s.plot_value = "µs/step";
  for (const std::string key : {"ddim", "dpmpp_2m", "euler", "heun"}) {
    std::vector<std::string> specs{""};
    for (const auto& c : default_bench_corrections()) specs.push_back(c);
    for (const std::string& spec : specs) {
      Case c;
      c.name = "corrections/" + key + "/" + (spec.empty() ? std::string("none") : spec);
      c.labels = {key, detail::code_label(spec)};
      c.baseline = "corrections/" + key + "/none";
      c.run = [key, spec](double budget) {
        const int64_t steps = 50;
        auto schedule = make_schedule("discrete");
        const Denoiser denoiser(trivial_network());
        const Tensor noise = randn({4, 4, 32, 32}, 0);
        auto sampler = make_sampler(key);
        SampleOptions o;
        o.num_steps = steps;
        o.seed = 1;
        if (!spec.empty()) o.corrections = {correction_from_spec(spec)};
        diffuse::sample(*sampler, denoiser, *schedule, noise, o);  // warm-up
        double best = 1e30;
        const int64_t reps = detail::repeat_for(budget, 1, 10000, [&] {
          best = std::min(
              best, min_time(1, [&] { diffuse::sample(*sampler, denoiser, *schedule, noise, o); }));
        });
        Result res;
        res.values = {{"µs/step", best / steps * 1e6, true}};
        res.repetitions = reps;
        return res;
      };
      s.cases.push_back(std::move(c));
    }
  }
  return s;
}

/// Training: per model config, a training step without mask (the baseline) and with mask ratio 0.5;
/// median step time, exact tensor memory (one thread for a complete count).
inline Suite training_suite() {
  Suite s;
  s.name = "training";
  s.title = "Training step: MaskDiT mask 0.5 vs no mask";
  s.description =
      "One DiT encoder + MaskDiT decoder with AdamW; training steps (forward, MSE loss, backward, "
      "AdamW) without "
      "a mask (the baseline) and with a fresh random 50% mask each step; median step time after "
      "one warm-up "
      "step. Memory is exact tensor memory from the allocators' reports (complete with one "
      "thread): step peak = "
      "highest live bytes during a step minus those at its start.";
  s.key_columns = {"config", "mode"};
  s.plot_value = "ms/step";
  for (const TrainingConfig& cfg : training_configs()) {
    for (const bool masked : {false, true}) {
      Case c;
      c.name = "training/" + cfg.name + "/" + (masked ? "mask_0.5" : "no_mask");
      c.labels = {cfg.name, masked ? "mask 0.5" : "no mask"};
      c.baseline = "training/" + cfg.name + "/no_mask";
      c.run = [cfg, masked](double budget) {
        auto mem = std::make_shared<PeakMemory>(c10::DeviceType::CPU);
        c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, mem);
        TrainingBench tb(cfg, 0, mem, at::Device(at::kCPU));
        tb.step(masked);  // warm-up: allocates the gradients and the AdamW state
        std::vector<double> times;
        int64_t step_peak = 0, total_peak = 0;
        const int64_t reps = detail::repeat_for(budget, 3, 1000, [&] {
          const TrainingBench::Step st = tb.step(masked);
          times.push_back(st.seconds);
          step_peak = std::max(step_peak, st.step_peak);
          total_peak = std::max(total_peak, st.total_peak);
        });
        const double med = median_of(times);
        Result res;
        res.values = {{"ms/step", med * 1e3, true},
                      {"images/s", static_cast<double>(tb.batch()) / med, false},
                      {"step peak MiB", mib(step_peak), true},
                      {"total peak MiB", mib(total_peak), false}};
        res.repetitions = reps;
        res.note = cfg.description + ", " + std::to_string(tb.parameters()) + " parameters";
        return res;
      };
      s.cases.push_back(std::move(c));
    }
  }
  return s;
}

/// Scaling: sampling time, images/s and memory vs batch size (the shipped model) and vs resolution
/// (a DiT with patch 2), and training images/s vs batch size; baselines batch 1 and resolution 32.
inline Suite scaling_suite() {
  Suite s;
  s.name = "scaling";
  s.title = "Scaling with batch size and resolution";
  s.description =
      "Sampling: diffuse::sample() with `ddim` (deterministic), 10 steps, float32 CPU, no "
      "autograd; ms/step, images/s and ms/image (the whole 10-step sample per image) from the "
      "least CPU time of the runs (the compute a dedicated core needs with one intra-op thread; "
      "wall ms/step, the least wall time, also counts waiting for a core on a shared machine); "
      "network % = wall share inside the network. Batch rows: the shipped Fashion-MNIST model "
      "(28x28, 49 tokens); resolution rows: DiT mini with patch 2, batch 4. Training: unmasked "
      "steps (forward, loss, backward, AdamW), least CPU time, median wall time; ms/image = step "
      "/ batch. Peak MiB = exact tensor memory of a run/step above what was live at its start "
      "(complete with one thread). Baselines: batch 1, resolution 32.";
  s.key_columns = {"what", "model", "batch", "resolution"};
  s.plot_value = "images/s";
  const int64_t steps = 10;
  auto sampling_result = [steps](const SamplingScale& m, const SamplingModel& model) {
    Result res;
    res.values = {
        {"ms/step", m.ms_per_step(), true},        {"wall ms/step", m.wall_ms_per_step(), false},
        {"images/s", m.images_per_second(), true}, {"ms/image", m.ms_per_image(), false},
        {"peak MiB", mib(m.peak_bytes), true},     {"network %", 100.0 * m.network_share(), false}};
    res.repetitions = m.repetitions;
    res.note = model.description + ", " + std::to_string(steps) + " steps";
    return res;
  };
  for (const int64_t b : {1, 2, 4, 8, 16, 32}) {
    Case c;
    c.name = "scaling/sample_batch/" + std::to_string(b);
    c.labels = {"sample", "shipped", std::to_string(b), "28"};
    c.baseline = "scaling/sample_batch/1";
    c.run = [b, steps, sampling_result](double budget) {
      const SamplingModel model = shipped_model();
      return sampling_result(measure_sampling(model, b, steps, budget, 1), model);
    };
    s.cases.push_back(std::move(c));
  }
  for (const int64_t r : {16, 32, 64}) {
    Case c;
    c.name = "scaling/sample_resolution/" + std::to_string(r);
    c.labels = {"sample", "DiT mini/2", "4", std::to_string(r)};
    c.baseline = "scaling/sample_resolution/32";
    c.run = [r, steps, sampling_result](double budget) {
      const SamplingModel model = scaling_dit(r);
      return sampling_result(measure_sampling(model, 4, steps, budget, 1), model);
    };
    s.cases.push_back(std::move(c));
  }
  for (const TrainingConfig& cfg : scaling_training_configs()) {
    for (const int64_t b : {1, 2, 4, 8, 16, 32}) {
      Case c;
      c.name = "scaling/train_batch/" + cfg.name + "/" + std::to_string(b);
      c.labels = {"train", cfg.name, std::to_string(b), std::to_string(cfg.options.input_size())};
      c.baseline = "scaling/train_batch/" + cfg.name + "/1";
      c.run = [cfg, b](double budget) {
        const TrainingScale m = measure_training(cfg, b, budget, 3);
        Result res;
        res.values = {{"ms/step", m.cpu_seconds * 1e3, true},
                      {"wall ms/step", m.seconds * 1e3, false},
                      {"images/s", m.images_per_second(), true},
                      {"ms/image", m.cpu_seconds * 1e3 / static_cast<double>(b), false},
                      {"peak MiB", mib(m.peak_bytes), true},
                      {"network %", std::numeric_limits<double>::quiet_NaN(), false}};
        res.repetitions = m.repetitions;
        res.note = cfg.description + ", " + std::to_string(m.parameters) + " parameters";
        return res;
      };
      s.cases.push_back(std::move(c));
    }
  }
  return s;
}

/// The suites `diffuse bench --suite` accepts, in the order `all` runs them.
inline std::vector<std::string> suite_names() {
  return {"sampler_overhead", "corrections", "training", "scaling"};
}

/// A suite by name; an unknown name is a diffuse::Error listing the valid ones.
inline Suite make_suite(const std::string& name) {
  if (name == "sampler_overhead") return sampler_overhead_suite();
  if (name == "corrections") return corrections_suite();
  if (name == "training") return training_suite();
  if (name == "scaling") return scaling_suite();
  throw Error("unknown benchmark suite '" + name +
              "' (sampler_overhead, corrections, training, scaling, all)");
}

}  // namespace diffuse::bench
