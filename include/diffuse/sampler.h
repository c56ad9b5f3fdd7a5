// SPDX-License-Identifier: Apache-2.0
// The sampler interface. Like spdlog's base_sink::log -> sink_it_, the base class owns the loop,
// the per-run history and the hooks; a concrete sampler writes one step(). History lives in the
// run, not in the object, so a Sampler is const and re-entrant: many threads may sample with one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/noise.h>
#include <diffuse/registry.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

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
  /// Set by a sampler for its model call: the linear update it makes from the prediction, which
  /// the model function may compute in its conversion pass (Prediction::update; make_model_fn
  /// does for epsilon networks without clipping or corrections). Null: none. A ModelFn that wraps
  /// another and changes the prediction must pass null down (or clear Prediction::update).
  const LinearUpdate* update = nullptr;
};

/// The context of step i on `grid` (index, num_steps, now = grid[i], next = grid[i + 1]); branch
/// and call keep their defaults.
StepContext step_context(const TimeGrid& grid, int64_t i, NoiseSource* noise);

/// The model as samplers see it: (x, time point, step) -> finished prediction.
using ModelFn =
    std::function<Prediction(const Tensor& x, const TimePoint& at, const StepContext& step)>;

/// A model call that asked for a linear update, and the update's result.
struct UpdatedPrediction {
  Prediction pred;  ///< the prediction, its `update` moved out (ready for the history)
  Tensor x_next;    ///< `update` applied: A * ca + B * cb (undefined when no update was asked)
};

/// Calls `model` at st.now with StepContext::update = `update` (null: none) and returns the
/// prediction and the update's result: the model function's (its conversion pass) where it
/// computed it, else lincomb of the form's tensors here, the same bits either way.
UpdatedPrediction predict_with_update(const ModelFn& model, const Tensor& x, const StepContext& st,
                                      const LinearUpdate* update);

/// What earlier steps of this run left behind, newest last: the time of each step's first model
/// call, its prediction, and the state x the step advanced from (StepResult::start when the
/// sampler set it, else the step's input).
struct History {
  std::vector<TimePoint> times;
  std::vector<Prediction> preds;
  std::vector<Tensor> xs;
  size_t size() const { return preds.size(); }
  bool empty() const { return preds.empty(); }
  /// Appends one step's record, keeping at most `keep` entries (none when keep == 0).
  void push(const TimePoint& at, const Prediction& pred, const Tensor& x, size_t keep);
};

struct StepResult {
  Tensor x;         ///< the state at step.next
  Prediction pred;  ///< the prediction at step.now (kept in History for multistep solvers)
  /// The state the step advanced from when the sampler replaced its input first (UniPC's
  /// corrector refines x at step.now with this step's prediction); undefined = the input x. The
  /// driver keeps it in History::xs.
  Tensor start{};
};

struct StepInfo {
  const StepContext& step;
  const Tensor& x;         ///< state after the step
  const Prediction& pred;  ///< prediction made at step.now
};

class BrownianTree;

/// Per-run state handed to samplers.
struct SampleContext {
  const NoiseSchedule* schedule = nullptr;  ///< may be null when sampling on a bare grid
  NoiseSource* noise = nullptr;             ///< required by stochastic samplers
  std::vector<Correction*>
      corrections;  ///< on_start / on_time / on_finish are called by the driver
  std::function<void(const StepInfo&)> on_step;
  /// RePaint's resampling (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion
  /// Probabilistic Models"): with resample_jump = J > 0 and resample_times = R > 1, the run goes
  /// back J grid points R - 1 times at each of the points n, n - J, n - 2J, ... (counted from the
  /// final point n, as RePaint's schedule counts from t = 0) that lie more than J points after the
  /// run's first step: the state at point p is taken to point p - J by the exact forward
  /// transition x' = (alpha' / alpha) x + sqrt(sigma'^2 - (alpha' sigma / alpha)^2) z (z from
  /// `noise`), the history is restored to what it was at p - J, and the steps from p - J are run
  /// again. The run then takes n - first_step + (jump points) (R - 1) J steps; on_step and the
  /// corrections see the repeated steps again. Defaults 0 and 1: off.
  int64_t resample_jump = 0;
  int64_t resample_times = 1;

  /// The only ways a sampler draws noise: the next draw shaped like x, or x += z c with it (the
  /// bits of add_scaled_(x, randn_like(x), c); the noise source may skip materialising z).
  Tensor randn_like(const Tensor& x);
  void add_randn_(Tensor& x, double c);

  /// The run's Brownian path (<diffuse/brownian.h>) for the samplers with Brownian-tree noise
  /// (dpmpp_sde, dpmpp_3m_sde); made by brownian_like's first call, reset by Sampler::sample.
  std::shared_ptr<const BrownianTree> brownian;
  /// (W(s1) - W(s0)) / sqrt(|s1 - s0|) shaped like x, on the run's Brownian tree over [lo, hi]
  /// (noise levels sigma_ve, as k-diffusion's BrownianTreeNoiseSampler). The tree's seeds, one per
  /// batch element, are drawn from `noise` at the first call: with per-sample noise each sample's
  /// path does not depend on the batch size, and any other step count sees the same path.
  Tensor brownian_like(const Tensor& x, double s0, double s1, double lo, double hi);
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
                int64_t first_step = 0) const;

  /// One step, for callers who drive the loop themselves (diffusers' scheduler.step()).
  StepResult step(const ModelFn& model, const Tensor& x, const StepContext& st,
                  const History& history, SampleContext& ctx) const {
    return step_impl(model, x, st, history, ctx);
  }

  /// How many past steps the solver needs (DPM-Solver++ 2M: 1, 3M: 2).
  virtual int64_t history_size() const { return 0; }
  /// True when the sampler draws noise.
  virtual bool is_stochastic() const { return false; }
  /// True when the number of network evaluations depends on the model (adaptive step-size
  /// control, dopri5): model_calls() is then the count of a run whose every interval needs one
  /// step, and a run may make more.
  virtual bool adaptive() const { return false; }
  /// Network evaluations for a run of num_steps steps (without guidance doubling).
  virtual int64_t model_calls(int64_t num_steps) const { return num_steps; }
  /// Network evaluations for a run over `grid` (without guidance doubling), for samplers whose
  /// count depends on the grid itself (restart); default model_calls(grid.size() - 1).
  virtual int64_t model_calls_on(const TimeGrid& grid) const {
    return model_calls(static_cast<int64_t>(grid.size()) - 1);
  }
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
std::unique_ptr<Sampler> make_sampler(const std::string& name, const Config& options = {});
/// One name per distinct sampler configuration: every key, plus the aliases whose preset options
/// make a different sampler (dpmpp_2m = dpm_solver_pp:order=2), each once. Of several names for
/// the same configuration the ComfyUI-style one (lower case, no A1111 "k_" prefix) is kept.
std::vector<std::string> distinct_sampler_names();

/// A sampler spec split into the sampler and the spacing its name carries, if any.
struct SamplerSpacingSpec {
  std::string sampler;  ///< "name" or "name:key=value,..." of the sampler registry
  std::string spacing;  ///< the spacing registry key the name selects ("karras", ...); "" = none
};

/// A1111 sampler names carry the spacing: "DPM++ 2M Karras", "DPM++ 2M SDE Exponential",
/// "Euler a Karras". The table of suffixes A1111 used before it split samplers from schedulers,
/// with the spacing each selects.
const std::vector<std::pair<std::string, std::string>>& sampler_spacing_suffixes();

/// Splits "<sampler name><suffix>[:options]" (suffix from sampler_spacing_suffixes(), the rest a
/// registered sampler name) into {"<sampler name>[:options]", spacing key}. Any other spec comes
/// back unchanged with spacing "" (an unknown name is left for sampler_from_spec to report).
SamplerSpacingSpec split_sampler_spacing(const std::string& spec);

/// "name" or "name:key=value,...". A name that also selects a spacing ("DPM++ 2M Karras") is
/// refused here, since a sampler alone cannot honour it: split it with split_sampler_spacing().
std::unique_ptr<Sampler> sampler_from_spec(const std::string& spec);

}  // namespace diffuse

#define DIFFUSE_REGISTER_SAMPLER(Type, key, summary) \
  DIFFUSE_REGISTER(::diffuse::Sampler, Type, key, summary)
#define DIFFUSE_REGISTER_SAMPLER_ALIAS(tag, alias, key, preset, summary) \
  DIFFUSE_REGISTER_ALIAS(::diffuse::Sampler, tag, alias, key, preset, summary)
