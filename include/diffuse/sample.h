// SPDX-License-Identifier: Apache-2.0
// The one composition point: schedule + spacing -> grid, corrections, guidance (conditional and
// unconditional branches batched into one network call), denoiser, sampler. No other code knows
// how the pieces combine.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/correction.h>
#include <diffuse/denoiser.h>
#include <diffuse/guidance.h>
#include <diffuse/noise.h>
#include <diffuse/registry.h>
#include <diffuse/sampler.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>

namespace diffuse {

struct SampleOptions {
  /// Number of solver steps (>= 1). Ignored when `grid` is given.
  int64_t num_steps = 50;
  /// Which times to visit; null: the schedule's default spacing.
  std::shared_ptr<const TimestepSpacing> spacing;
  /// An explicit grid (num_steps + 1 points, final point last); overrides spacing and num_steps.
  TimeGrid grid;
  /// Classifier-free guidance or similar; null: one network call per model evaluation.
  std::shared_ptr<const Guidance> guidance;
  /// Passed to the network (uncond: to the unconditional branch of `guidance`). Every defined
  /// tensor needs one row per sample: size(0) == the batch size of the noise.
  Conditioning cond, uncond;
  /// Applied in list order at every hook.
  std::vector<std::shared_ptr<Correction>> corrections;
  /// Where noise comes from. Null: per-sample generators seeded with `seed` (sample i gets
  /// seed + i; independent of the batch size), continued past one draw of the starting noise's
  /// shape: that draw is randn(shape, seed), so a run started from randn(shape, seed) with this
  /// seed is diffusers' pipeline with generator=[Generator().manual_seed(seed + i), ...] (latents,
  /// then the steps' noise from the same generators) and never draws its starting noise again.
  std::shared_ptr<NoiseSource> noise;
  uint64_t seed = 0;
  /// Check every network output for NaN/Inf and throw naming the first bad step and network call,
  /// and the result once at the end (NaN/Inf from the update, or overflow of a float16 result).
  /// Default true. The per-call check runs on the device without a host sync: each call adds one
  /// flag (two small ops), and sample() reads all flags once, after the loop, then throws for the
  /// first bad call. A run with a bad output therefore finishes its remaining steps on NaN/Inf
  /// first (and on_step sees them); if the sampler throws on the way, the NaN/Inf error is
  /// reported instead.
  bool check_finite = true;
  std::function<void(const StepInfo&)> on_step;
  /// img2img (diffusers' `strength`): the clean image to start from, in the model's space and
  /// shaped like the noise. The run then takes the last floor(n * strength) of the grid's n steps
  /// (step indices stay the whole grid's), starting from alpha init_image + sigma noise at their
  /// first point. Undefined (default): generate from noise.
  Tensor init_image;
  /// Share of the grid run from init_image, in (0, 1]. Default 1: the whole grid (for inpainting).
  double strength = 1.0;
  /// Inpainting for models without an inpainting input: broadcastable to the noise, 1 where the
  /// image is generated and 0 where init_image is kept (values in between blend). Before every
  /// model call the kept region of x is replaced by alpha init_image + sigma noise (the run's own
  /// noise, as ComfyUI's KSamplerX0Inpaint and diffusers' inpainting pipeline for ordinary models
  /// do), the prediction's x0 there is init_image, and the result is blended once more at the
  /// last point. Needs init_image.
  Tensor mask;
  /// RePaint's resampling jumps (SampleContext::resample_jump / resample_times): every
  /// resample_jump grid points, counted from the end, the run is noised back resample_jump points
  /// and re-run, resample_times - 1 times, which lets the generated region agree with the kept one
  /// when inpainting (RePaint: jump 10, 10 times, on 250 steps). Works with any run and sampler.
  /// Defaults 0 and 1: off.
  int64_t resample_jump = 0;
  int64_t resample_times = 1;
};

/// Builds a schedule / spacing from a registry name ("discrete", "karras", ...) and options.
std::unique_ptr<NoiseSchedule> make_schedule(const std::string& name, const Config& options = {});
std::unique_ptr<TimestepSpacing> make_spacing(const std::string& name, const Config& options = {});

/// The grid sample() will visit for these options (after the corrections' on_grid hooks, run on
/// per-run copies as in sample()).
TimeGrid make_grid(const NoiseSchedule& schedule, const SampleOptions& options);

/// Draws an initial N(0, I) tensor from `seed` with the per-sample convention of sample(); pass
/// the same seed in SampleOptions::seed and the run's noise continues these generators.
Tensor randn(c10::IntArrayRef shape, uint64_t seed, const c10::TensorOptions& options = {});

namespace detail {

/// make_grid with the run's correction objects (detail::CorrectionRun).
TimeGrid make_grid(const NoiseSchedule& schedule, const SampleOptions& o,
                   const std::vector<Correction*>& corrections);

/// The finiteness check of network outputs without a host sync per call. record() adds one
/// device flag per call: sum(out * 0), which is 0 when every entry of out is finite and NaN when
/// one is NaN or +-Inf (Inf * 0 = NaN), exactly, whatever the magnitudes (every term is 0, so
/// nothing can overflow); contiguous float32/float64 CPU outputs are read at once by one fused
/// pass (detail/fused.h), or come already read from the pass that converts them to (x0, eps)
/// (record_known). check() reads all device flags with one host transfer and throws naming the
/// first bad call's step; a run without records costs nothing.
class FiniteLog {
 public:
  struct Call {
    int64_t index, num_steps;  ///< the sampler step of the call
    double t;                  ///< that step's time (StepContext::now.t)
    double at;                 ///< where the call evaluated the network
    int64_t flag = -1;         ///< its flag tensor's index in flags_, or -1: known already
    bool nonfinite = false;    ///< the known flag (flag == -1)
  };

  /// Adds the flag of one network output.
  void record(const Tensor& out, const StepContext& step, const TimePoint& at);
  /// Adds a flag already read on the host (by the fused conversion pass): no tensor, no pass.
  void record_known(bool nonfinite, const StepContext& step, const TimePoint& at);

  size_t size() const { return calls_.size(); }

  /// Throws (NumericalError) for the first recorded call whose output was not finite, then
  /// forgets the records.
  void check();

 private:
  std::vector<Tensor> flags_;  ///< the flags still to read, of the calls that have one
  std::vector<Call> calls_;
};

}  // namespace detail

/// The ModelFn sample() runs: conditioning hooks, batched guidance branches, conversion to
/// (x0, eps), on_prediction hooks, clipping, and the finiteness check. With `deferred` null the
/// check (when options.check_finite) throws at the call itself (one host sync per call); sample()
/// passes its run's log instead and checks it once at the end.
ModelFn make_model_fn(const Denoiser& denoiser, const SampleOptions& options,
                      const std::vector<Correction*>& corrections,
                      detail::FiniteLog* deferred = nullptr);

/// Samples from `noise` ~ N(0, I) (any shape [B, ...], the caller's dtype and device): scales it by
/// sqrt(alpha^2 + sigma^2) of the first grid point and runs the sampler over the grid.
Tensor sample(const Sampler& sampler, const Denoiser& denoiser, const NoiseSchedule& schedule,
              const Tensor& noise, const SampleOptions& options = {});

}  // namespace diffuse
