// SPDX-License-Identifier: Apache-2.0
// The sampler interface. Like spdlog's base_sink::log -> sink_it_, the base class owns the loop,
// the per-run history and the hooks; a concrete sampler writes one step(). History lives in the
// run, not in the object, so a Sampler is const and re-entrant: many threads may sample with one.
#pragma once

#include <algorithm>
#include <cctype>
#include <set>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/detail/aten.h>
#include <diffuse/noise.h>
#include <diffuse/registry.h>
#include <diffuse/schedule.h>

namespace diffuse {

enum class Branch { kCond, kUncond };

/// Where a sampler is: step `index` of `num_steps`, going from `now` to `next`.
struct StepContext {
  int64_t index = 0;
  int64_t num_steps = 0;
  TimePoint now, next;
  Branch branch = Branch::kCond;
  const TimeGrid* grid = nullptr;  ///< the whole grid of this run (after on_grid)
  NoiseSource* noise = nullptr;    ///< the run's noise source (for corrections that draw noise)
  /// In on_condition / on_prediction: the time point this model call evaluates at. The first call
  /// of a step is at `now`; a multi-stage solver's inner calls (Heun's corrector, DPM++ 2S's
  /// midpoint, Euler's churned sigma_hat) are elsewhere.
  TimePoint call;
};

/// The context of step i on `grid` (index, num_steps, now = grid[i], next = grid[i + 1]); branch and
/// call keep their defaults.
inline StepContext step_context(const TimeGrid& grid, int64_t i, NoiseSource* noise) {
  StepContext st;
  st.index = i;
  st.num_steps = static_cast<int64_t>(grid.size()) - 1;
  st.now = grid[i];
  st.next = grid[i + 1];
  st.grid = &grid;
  st.noise = noise;
  return st;
}

/// The model as samplers see it: (x, time point, step) -> finished prediction.
using ModelFn = std::function<Prediction(const Tensor& x, const TimePoint& at, const StepContext& step)>;

/// What earlier steps of this run left behind, newest last: the time of each step's first model
/// call, its prediction, and the state x the step started from.
struct History {
  std::vector<TimePoint> times;
  std::vector<Prediction> preds;
  std::vector<Tensor> xs;
  size_t size() const { return preds.size(); }
  bool empty() const { return preds.empty(); }
  /// Appends one step's record, keeping at most `keep` entries (none when keep == 0).
  void push(const TimePoint& at, const Prediction& pred, const Tensor& x, size_t keep) {
    if (keep == 0) return;
    times.push_back(at);
    preds.push_back(pred);
    xs.push_back(x);
    if (preds.size() > keep) {
      times.erase(times.begin());
      preds.erase(preds.begin());
      xs.erase(xs.begin());
    }
  }
};

struct StepResult {
  Tensor x;         ///< the state at step.next
  Prediction pred;  ///< the prediction at step.now (kept in History for multistep solvers)
};

struct StepInfo {
  const StepContext& step;
  const Tensor& x;          ///< state after the step
  const Prediction& pred;   ///< prediction made at step.now
};

/// Per-run state handed to samplers.
struct SampleContext {
  const NoiseSchedule* schedule = nullptr;  ///< may be null when sampling on a bare grid
  NoiseSource* noise = nullptr;             ///< required by stochastic samplers
  std::vector<Correction*> corrections;     ///< on_start / on_time / on_finish are called by the driver
  std::function<void(const StepInfo&)> on_step;

  /// The only way a sampler draws noise.
  Tensor randn_like(const Tensor& x) {
    check(noise != nullptr, "this sampler is stochastic and needs a noise source (seed or NoiseSource)");
    return noise->randn_like(x);
  }
};

class Sampler {
 public:
  static constexpr const char* kKindName = "sampler";
  virtual ~Sampler() = default;

  /// Runs the grid from state x (already at grid[first_step]'s noise level) to its last point and
  /// returns that state in x's dtype. first_step > 0 starts part-way (img2img, diffusers'
  /// `timesteps[k:]` loops): step indices stay those of the whole grid, so order rules such as
  /// lower_order_final see the same num_steps as a full run.
  Tensor sample(const ModelFn& model, Tensor x, const TimeGrid& grid, SampleContext& ctx,
                int64_t first_step = 0) const {
    check(static_cast<bool>(model), "sample(): the model function is empty");
    check(x.defined(), "sample(): the initial sample is undefined");
    check(x.dim() >= 1 && x.size(0) > 0, "sample(): the initial sample needs a non-empty batch dimension, got shape ",
          x.sizes());
    validate_grid(grid);
    const auto out_dtype = x.scalar_type();
    check(at::isFloatingType(out_dtype), "sample(): the initial sample must be floating point, got ", out_dtype);
    if (compute_dtype(out_dtype) != out_dtype) x = x.to(compute_dtype(out_dtype));
    History history;
    const int64_t n = static_cast<int64_t>(grid.size()) - 1;
    check(first_step >= 0 && first_step < n, "sample(): first_step=", first_step, " is outside [0, ", n,
          ") for a grid of ", n, " steps");
    const size_t keep = static_cast<size_t>(std::max<int64_t>(history_size(), 0));
    auto context_at = [&](int64_t i) { return step_context(grid, i, ctx.noise); };
    if (!ctx.corrections.empty()) {
      const StepContext first = context_at(first_step);
      for (Correction* c : ctx.corrections) c->on_start(x, first);
    }
    for (int64_t i = first_step; i < n; ++i) {
      StepContext st = context_at(i);
      for (Correction* c : ctx.corrections) c->on_time(x, st);
      StepResult r = step(model, x, st, history, ctx);
      if (!r.x.defined()) throw Error(detail::cat(name(), ": step ", i, " produced no sample"));
      history.push(st.now, r.pred, x, keep);
      x = std::move(r.x);
      if (ctx.on_step) ctx.on_step(StepInfo{st, x, r.pred});
    }
    if (!ctx.corrections.empty()) {
      const StepContext last = context_at(n - 1);
      for (Correction* c : ctx.corrections) c->on_finish(x, last);
    }
    return x.scalar_type() == out_dtype ? x : x.to(out_dtype);
  }

  /// One step, for callers who drive the loop themselves (diffusers' scheduler.step()).
  StepResult step(const ModelFn& model, const Tensor& x, const StepContext& st, const History& history,
                  SampleContext& ctx) const {
    return step_impl(model, x, st, history, ctx);
  }

  /// How many past steps the solver needs (DPM-Solver++ 2M: 1, 3M: 2).
  virtual int64_t history_size() const { return 0; }
  /// True when the sampler draws noise.
  virtual bool is_stochastic() const { return false; }
  /// Network evaluations for a run of num_steps steps (without guidance doubling).
  virtual int64_t model_calls(int64_t num_steps) const { return num_steps; }
  virtual std::string name() const = 0;
  virtual Config to_config() const = 0;

  /// Updates are computed in float32 for half types and in the input's type otherwise.
  static at::ScalarType compute_dtype(at::ScalarType t) {
    return (t == at::kDouble || t == at::kFloat) ? t : at::kFloat;
  }

 protected:
  virtual StepResult step_impl(const ModelFn& model, const Tensor& x, const StepContext& st,
                               const History& history, SampleContext& ctx) const = 0;
};

/// Builds a sampler from a registry name ("ddim", "dpmpp_2m", "euler_a", ...) and options.
inline std::unique_ptr<Sampler> make_sampler(const std::string& name, const Config& options = {}) {
  return Registry<Sampler>::get().make(name, options);
}
/// One name per distinct sampler configuration: every key, plus the aliases whose preset options
/// make a different sampler (dpmpp_2m = dpm_solver_pp:order=2), each once. Of several names for
/// the same configuration the ComfyUI-style one (lower case, no A1111 "k_" prefix) is kept.
inline std::vector<std::string> distinct_sampler_names() {
  const auto& registry = Registry<Sampler>::get();
  auto canonical = [](const std::string& n) {
    if (n.rfind("k_", 0) == 0) return false;
    for (char c : n)
      if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_'))
        return false;
    return true;
  };
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (int pass = 0; pass < 2; ++pass) {  // canonical names first, then any others still missing
    for (const std::string& name : registry.names()) {
      if ((pass == 0) != canonical(name)) continue;
      const auto resolved = registry.resolve(name, {});
      if (resolved.first != name && resolved.second.empty()) continue;  // a plain rename of a key
      if (seen.insert(resolved.first + ":" + format_config(resolved.second)).second) out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// A sampler spec split into the sampler and the spacing its name carries, if any.
struct SamplerSpacingSpec {
  std::string sampler;  ///< "name" or "name:key=value,..." of the sampler registry
  std::string spacing;  ///< the spacing registry key the name selects ("karras", ...); "" = none
};

/// A1111 sampler names carry the spacing: "DPM++ 2M Karras", "DPM++ 2M SDE Exponential",
/// "Euler a Karras". The table of suffixes A1111 used before it split samplers from schedulers,
/// with the spacing each selects.
inline const std::vector<std::pair<std::string, std::string>>& sampler_spacing_suffixes() {
  static const std::vector<std::pair<std::string, std::string>> table = {{" Karras", "karras"},
                                                                         {" Exponential", "exponential"}};
  return table;
}

/// Splits "<sampler name><suffix>[:options]" (suffix from sampler_spacing_suffixes(), the rest a
/// registered sampler name) into {"<sampler name>[:options]", spacing key}. Any other spec comes
/// back unchanged with spacing "" (an unknown name is left for sampler_from_spec to report).
inline SamplerSpacingSpec split_sampler_spacing(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string name = detail::trim(spec.substr(0, colon));
  const std::string options = colon == std::string::npos ? std::string() : spec.substr(colon);
  const auto& registry = Registry<Sampler>::get();
  if (!registry.contains(name)) {
    for (const auto& [suffix, spacing] : sampler_spacing_suffixes()) {
      if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const std::string base = detail::trim(name.substr(0, name.size() - suffix.size()));
      if (registry.contains(base)) return {base + options, spacing};
    }
  }
  return {spec, ""};
}

/// "name" or "name:key=value,...". A name that also selects a spacing ("DPM++ 2M Karras") is
/// refused here, since a sampler alone cannot honour it: split it with split_sampler_spacing().
inline std::unique_ptr<Sampler> sampler_from_spec(const std::string& spec) {
  const SamplerSpacingSpec split = split_sampler_spacing(spec);
  if (!split.spacing.empty()) {
    throw Error(detail::cat("sampler '", detail::trim(spec.substr(0, spec.find(':'))),
                            "' names a sampler and a spacing (sampler '", split.sampler, "', spacing '",
                            split.spacing, "'): select the spacing separately, or split the name with "
                            "split_sampler_spacing()"));
  }
  return Registry<Sampler>::get().make_from_spec(spec);
}

}  // namespace diffuse

#define DIFFUSE_REGISTER_SAMPLER(Type, key, summary) DIFFUSE_REGISTER(::diffuse::Sampler, Type, key, summary)
#define DIFFUSE_REGISTER_SAMPLER_ALIAS(tag, alias, key, preset, summary) \
  DIFFUSE_REGISTER_ALIAS(::diffuse::Sampler, tag, alias, key, preset, summary)
