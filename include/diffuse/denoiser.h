// SPDX-License-Identifier: Apache-2.0
// Turns any network (x_t, t, cond) -> tensor into the pair (x0, eps) that every sampler uses, for
// the prediction types epsilon, v_prediction, sample and flow_prediction, with optional x0 clipping
// and dynamic
// thresholding (Saharia et al. 2022). This is k-diffusion's external.py idea: the wrapper always
// returns both predictions, so samplers and corrections never re-derive them inconsistently.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <diffuse/config.h>
#include <diffuse/schedule.h>
#include <diffuse/tensor.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

/// What a network predicts, for x = alpha x0 + sigma eps:
///   kEpsilon  eps;
///   kSample   x0;
///   kVelocity v = alpha eps - sigma x0 (Salimans & Ho 2022; diffusers "v_prediction");
///   kFlow     v = eps - x0, the flow-matching velocity dx/dsigma of x = (1 - sigma) x0 + sigma eps
///             (diffusers "flow_prediction", SD3, Flux, SiT). On any schedule
///             x0 = (x - sigma v) / (alpha + sigma) and eps = (x + alpha v) / (alpha + sigma); on
///             the flow schedule alpha + sigma = 1, so x0 = x - sigma v, as in diffusers.
enum class Parameterization { kEpsilon, kSample, kVelocity, kFlow };

/// Names of Parameterization, the canonical one of each first ("epsilon", "v_prediction",
/// "sample", "flow_prediction"), then the aliases "eps", "v", "x0", "flow".
const EnumNames<Parameterization>& parameterization_names();
/// A name or alias of parameterization_names() (ConfigError naming `s` otherwise).
Parameterization parse_parameterization(const std::string& s);
/// The canonical name.
std::string to_string(Parameterization p);

/// What the network is conditioned on. An undefined `value` means unconditional.
struct Conditioning {
  Tensor value;
  std::map<std::string, Tensor> extra;
};

/// Both predictions at one point: x0 (data) and eps (noise), related by x = alpha*x0 + sigma*eps.
/// The linear update a sampler step makes right after a model call, which the model function may
/// compute in the same pass as the conversion to (x0, eps) (StepContext::update; the result comes
/// back in Prediction::update): out = A * ca + B * cb with the bits of lincomb(A, ca, B, cb), where
/// (A, B) is (x0, eps) (form kX0Eps: DDIM) or (x, x0) (form kXX0: Euler, DPM-Solver++), x being the
/// state the model was called on. Form kXX0 may add a second-order term: with `diff` set,
/// out += ((x0 - *diff) * c_diff) * c_out, the bits of add_scaled_(out, diff_scaled(x0, *diff,
/// c_diff), c_out) (DPM-Solver++ 2M's e0 term; `diff` is the previous step's x0).
struct LinearUpdate {
  enum class Form { kX0Eps, kXX0 };
  Form form = Form::kX0Eps;
  double ca = 0, cb = 0;
  const Tensor* diff = nullptr;
  double c_diff = 0, c_out = 0;
};

struct Prediction {
  Tensor x0, eps;
  /// The StepContext::update the step asked for, computed by the model function in its conversion
  /// pass; undefined when it could not (the step then computes it itself). Samplers move it out
  /// before the prediction is kept in the history.
  Tensor update = {};
  /// The network's variance output v in [-1, 1] (iDDPM's learned range, DiT's learn_sigma head)
  /// when DenoiserOptions::learned_variance, else undefined: the step's log variance is
  /// (v + 1) / 2 * log(beta) + (1 - v) / 2 * log(beta-tilde) (ddpm:variance_type=learned_range).
  Tensor variance = {};
};

/// A user network: (x_t, t of shape [B] in x's dtype, conditioning) -> output shaped like x_t.
using Network = std::function<Tensor(const Tensor& x_t, const Tensor& t, const Conditioning& c)>;

struct DenoiserOptions {
  /// What the network predicts. Default epsilon.
  Parameterization prediction_type = Parameterization::kEpsilon;
  /// Clamp x0 to [-clip_sample_range, clip_sample_range] (pixel-space models). Default off.
  bool clip_sample = false;
  double clip_sample_range = 1.0;
  /// Dynamic thresholding: per sample, s = quantile(|x0|, ratio) clamped to [1, sample_max_value];
  /// x0 <- clamp(x0, -s, s) / s. Default off; ratio in (0, 1], sample_max_value finite and > 0.
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;
  /// After clipping/thresholding x0, re-derive eps from the clipped x0 (GLIDE/ADM). Default false,
  /// as in diffusers (DDIMScheduler.step's use_clipped_model_output): eps stays the model's own.
  bool use_clipped_model_output = false;
  /// EDM preconditioning (Karras et al. 2022, Table 1; diffusers' EDMEulerScheduler and
  /// EDMDPMSolverMultistepScheduler), for networks trained with it: with s = sigma_ve and
  /// x_ve = x / alpha, the network is fed c_in x_ve, c_in = 1 / sqrt(s^2 + sigma_data^2), at the
  /// time c_noise = ln(s) / 4 (not the time point's t), and its output F gives
  ///   x0 = c_skip x_ve + c_out F,  c_skip = sigma_data^2 / (s^2 + sigma_data^2),
  ///   c_out = s sigma_data / sqrt(s^2 + sigma_data^2)
  /// (negated for prediction_type v_prediction, as diffusers; epsilon and v_prediction only).
  /// Needs 0 < sigma_ve < inf at every model call. Default off.
  bool edm_preconditioning = false;
  /// sigma_data of the EDM preconditioning (default 0.5); finite and > 0.
  double sigma_data = 0.5;
  /// The dtype the network computes in (its weights' dtype), if it differs from the sampler's.
  /// Samplers compute float16 / bfloat16 runs in float32 (Sampler::compute_dtype, as diffusers'
  /// schedulers upcast); with this set, x_t is cast to it for each network call and the output cast
  /// back, while t stays in the sampler's dtype (bfloat16 cannot hold t = 999; diffusers also feeds
  /// float32 timesteps to half-precision models). Default unset: the network gets x_t as is.
  std::optional<at::ScalarType> network_dtype = std::nullopt;
  /// The network returns [B, 2C, ...]: its prediction, then the learned variance interpolation v
  /// (iDDPM's learned range; DiT's learn_sigma head kept: as_network(dit, true)). convert() puts
  /// v in Prediction::variance; with guidance only the prediction channels are combined and the
  /// conditional branch's v is kept (DiT's forward_with_cfg keeps each half's own). Samplers other
  /// than ddpm:variance_type=learned_range ignore it. Default false.
  bool learned_variance = false;
  /// With guidance, combine only the first guided_channels channels (dim 1) of the prediction;
  /// the others take the conditional branch's output. DiT's and SiT's forward_with_cfg guide 3 of
  /// their 4 latent channels ("for reproducibility", their comment), which their published
  /// samples and FIDs use: the cards of those checkpoints set 3. Default 0 = all channels; >= 0,
  /// and at most the sample's channel count at each call.
  int64_t guided_channels = 0;
};

/// Network + parameterisation. Stateless and const: safe to share between threads.
class Denoiser {
 public:
  /// Checks the options (ConfigError naming the bad one).
  Denoiser(Network net, DenoiserOptions options = {});

  const DenoiserOptions& options() const { return options_; }

  /// Calls the network at `at` and checks that its output has x's shape.
  Tensor call_network(const Tensor& x, const TimePoint& at, const Conditioning& c) const;

  /// Raw network output -> (x0, eps) at `at`, without clipping. Returns fresh tensors except the
  /// one that is `out` itself (eps for epsilon, x0 for sample prediction); never writes to `out` or
  /// x.
  Prediction convert(const Tensor& out, const Tensor& x, const TimePoint& at) const;

  /// convert(), and whether `out` has a NaN/Inf entry, read in the same pass over `out` where the
  /// conversion has one (x and out contiguous float32/float64 CPU tensors of one shape, no
  /// learned-variance channels): *out_nonfinite = 1 (some entry NaN/Inf) or 0; -1 when it was
  /// not read (the caller checks `out` itself then). The same bits as convert().
  Prediction convert_checked(const Tensor& out, const Tensor& x, const TimePoint& at,
                             int8_t* out_nonfinite) const;

  /// convert_checked() that also computes `update` (when not null) into Prediction::update in the
  /// same pass, where it can: an epsilon network without EDM preconditioning, clipping,
  /// thresholding or learned variance, on fusable tensors; otherwise Prediction::update stays
  /// undefined. The bits of convert() and of lincomb().
  Prediction convert_checked(const Tensor& out, const Tensor& x, const TimePoint& at,
                             int8_t* out_nonfinite, const LinearUpdate* update) const;

  /// Clipping / thresholding of x0 (eps re-derived from the clipped x0 if
  /// use_clipped_model_output).
  void finalize(Prediction& p, const Tensor& x, const TimePoint& at) const;

  /// The finished prediction for one branch.
  Prediction operator()(const Tensor& x, const TimePoint& at, const Conditioning& c) const;

  /// Dynamic thresholding of x0 (see DenoiserOptions::thresholding).
  Tensor threshold(const Tensor& x0) const;

 private:
  Network net_;
  DenoiserOptions options_;
};

namespace detail {
/// Checks that every defined tensor of `c` has one row per sample: dim >= 1 and size(0) == batch.
/// `which` names the conditioning in the error ("cond", "uncond").
void check_conditioning_batch(const Conditioning& c, int64_t batch, const char* which);
}  // namespace detail

}  // namespace diffuse
