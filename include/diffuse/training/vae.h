// SPDX-License-Identifier: Apache-2.0
// AutoencoderKL, the KL-regularised image autoencoder of latent diffusion (the "VAE" of Stable
// Diffusion 1.x / 2.x / XL, SD3 and Flux, and the one DiT, SiT and MaskDiT sample through).
//   Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (CVPR 2022),
//   Sec. 3.1 and App. G (encoder/decoder: ResNet blocks, mid-block self-attention, diagonal
//   Gaussian posterior).
// Checked against: huggingface/diffusers AutoencoderKL (models/autoencoders/autoencoder_kl.py,
//   vae.py: Encoder, Decoder, DiagonalGaussianDistribution) and CompVis/stable-diffusion
//   ldm/modules/diffusionmodules/model.py (the names inside single-file checkpoints), by the
//   parity fixtures of tests/reference/latent_models.py (random weights, float32, 1e-5).
//
//   diffuse::AutoencoderKL vae = diffuse::load_vae("sd-vae-ft-ema");   // a diffusers folder
//   at::Tensor latents = vae->encode(images, noise);   // images [B,3,H,W] in [-1,1] -> scaled
//   at::Tensor images2 = vae->decode(latents);         // scaled latents -> images in ~[-1,1]
//
// Module and parameter names are diffusers' (encoder.down_blocks.0.resnets.0.conv1.weight, ...),
// so a diffusers state dict loads one to one; load_vae_state_dict also maps the older diffusers
// attention names (query/key/value/proj_attn) and the CompVis/ldm names of single-file
// checkpoints (first_stage_model.encoder.down.0.block.0.conv1.weight, ...), explicitly, name by
// name (vae_ldm_name / vae_legacy_name).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <diffuse/config.h>
#include <diffuse/noise.h>

namespace diffuse {

/// Architecture and latent scaling of an AutoencoderKL, as diffusers' config.json names them.
struct AutoencoderKLOptions {
  /// Image channels in and out. Default 3; > 0.
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, out_channels) = 3;
  /// Latent channels (4 for SD 1.x/2.x/XL, 16 for SD3 / Flux). Default 4; > 0.
  TORCH_ARG(int64_t, latent_channels) = 4;
  /// Channels of each resolution level, highest resolution first; the image side shrinks by
  /// 2^(levels - 1). Default 128, 256, 512, 512 (factor 8); each a multiple of norm_num_groups.
  TORCH_ARG(std::vector<int64_t>, block_out_channels) = std::vector<int64_t>{128, 256, 512, 512};
  /// ResNet blocks per encoder level (the decoder has one more). Default 2; >= 1.
  TORCH_ARG(int64_t, layers_per_block) = 2;
  /// GroupNorm groups (eps 1e-6 everywhere). Default 32; >= 1.
  TORCH_ARG(int64_t, norm_num_groups) = 32;
  /// 1x1 convolutions after the encoder / before the decoder (absent in SD3 / Flux). Default true.
  TORCH_ARG(bool, use_quant_conv) = true;
  TORCH_ARG(bool, use_post_quant_conv) = true;
  /// Self-attention in the mid blocks. Default true.
  TORCH_ARG(bool, mid_block_add_attention) = true;
  /// Latent scaling: the diffusion model sees (z - shift_factor) * scaling_factor. Defaults
  /// 0.18215 (SD 1.x/2.x, sd-vae-ft-ema / -mse; SD-XL uses 0.13025) and 0; scaling_factor > 0.
  TORCH_ARG(double, scaling_factor) = 0.18215;
  TORCH_ARG(double, shift_factor) = 0.0;
  /// The image side the VAE was trained at; the default tile of tiled encode/decode. Default 512.
  TORCH_ARG(int64_t, sample_size) = 512;
  /// diffusers' hint that the VAE overflows in float16 (SD-XL's does). Informational: decode()
  /// detects non-finite float16 output itself. Default true.
  TORCH_ARG(bool, force_upcast) = true;

 public:
  /// The image side shrinks by this: 2^(levels - 1).
  int64_t downscale() const;
};

/// Named configurations: "sd" (SD 1.x/2.x, stabilityai/sd-vae-ft-ema / sd-vae-ft-mse, what DiT,
/// SiT and MaskDiT use), "sdxl" (SD-XL: scaling 0.13025, sample_size 1024), "sd3" (16 latent
/// channels, no quant convs, scaling 1.5305, shift 0.0609), "flux" (16 channels, scaling 0.3611,
/// shift 0.1159), "tiny" (a few thousand parameters, for tests: channels 32, 64; groups 8).
AutoencoderKLOptions vae_preset(const std::string& name);
/// The names vae_preset knows.
std::vector<std::string> vae_preset_names();

/// Options from a diffusers config.json text (keys in_channels, out_channels, latent_channels,
/// block_out_channels, layers_per_block, norm_num_groups, act_fn, down_block_types,
/// up_block_types, use_quant_conv, use_post_quant_conv, mid_block_add_attention, scaling_factor,
/// shift_factor, sample_size, force_upcast, plus diffusers' bookkeeping keys starting with '_').
/// Block types other than DownEncoderBlock2D / UpDecoderBlock2D, an activation other than silu,
/// unknown keys and bad values are errors naming `origin` and the key.
AutoencoderKLOptions vae_options_from_diffusers_config(const std::string& json_text,
                                                       const std::string& origin);
/// The options as "key=value,..." (Config form: block_out_channels as "128x256x512x512"), for model
/// cards and latent-shard metadata; vae_options_from_config reads it back.
Config vae_to_config(const AutoencoderKLOptions& o);
AutoencoderKLOptions vae_options_from_config(const Config& c);
/// Throws ConfigError naming the first bad option.
void check_vae_options(const AutoencoderKLOptions& o);

/// The posterior N(mean, exp(logvar)) of an encoder output (logvar clamped to [-30, 20], as both
/// references do).
struct LatentDistribution {
  at::Tensor mean, logvar;
  at::Tensor stddev() const;
  /// mean + std * noise, noise from `noise` (so a seeded source reproduces it).
  at::Tensor sample(NoiseSource& noise) const;
  const at::Tensor& mode() const { return mean; }
};

/// Tiled encode / decode: the image is cut into overlapping tiles processed one at a time and
/// blended linearly across the overlaps, so peak memory is that of one tile (plus the output).
/// GroupNorm statistics and mid-block attention are then per tile, so a tiled result is an
/// approximation of the whole-image one (as in every peer); the seams are blended, not hidden.
struct VaeTiling {
  /// Tile side in pixels (multiple of the downscale factor). 0 = no tiling. Default 0.
  int64_t tile = 0;
  /// Overlap of neighbouring tiles in pixels (multiple of the downscale factor, < tile).
  /// Default -1 = tile / 4 rounded down to the downscale factor.
  int64_t overlap = -1;
};

/// What decode() did: the tiles it decoded and how many of them it redid in float32 because the
/// float16 / bfloat16 result was not finite.
struct VaeDecodeReport {
  int64_t tiles = 0;
  int64_t float32_fallbacks = 0;
};

class VaeEncoderImpl;
class VaeDecoderImpl;

/// The autoencoder. Parameters are registered under diffusers' names. Any batch size, any image
/// side that is a multiple of downscale(); float32, float16 or bfloat16 parameters (module->to()).
/// Inputs are converted to the parameters' dtype and device; outputs (posterior, latents, images)
/// are float32 on that device whatever the parameters' dtype.
class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(AutoencoderKLOptions options);

  /// The posterior of images [B, in_channels, H, W] in [-1, 1] (unscaled latent space).
  LatentDistribution encode_distribution(const at::Tensor& images, const VaeTiling& tiling = {});
  /// Scaled latents (what a latent diffusion model sees): (z - shift) * scale with z the posterior
  /// sample (noise given) or its mean (noise == nullptr).
  at::Tensor encode(const at::Tensor& images, NoiseSource* noise = nullptr,
                    const VaeTiling& tiling = {});
  /// Images from scaled latents [B, latent_channels, h, w]: the decoder of z = latents / scale +
  /// shift. Not clamped. In float16 / bfloat16 a tile whose output is not finite is decoded again
  /// in float32 (a float32 copy of the decoder is made once and kept), with a warning; `report`
  /// (optional) counts it.
  at::Tensor decode(const at::Tensor& latents, const VaeTiling& tiling = {},
                    VaeDecodeReport* report = nullptr);
  /// The decoder on unscaled z (no tiling, no fallback).
  at::Tensor decode_unscaled(const at::Tensor& z);

  at::Tensor scale_latents(const at::Tensor& z) const;
  at::Tensor unscale_latents(const at::Tensor& latents) const;

  const AutoencoderKLOptions& options() const { return options_; }

  std::shared_ptr<VaeEncoderImpl> encoder;
  std::shared_ptr<VaeDecoderImpl> decoder;
  /// Undefined when the options turn them off.
  std::shared_ptr<torch::nn::Module> quant_conv, post_quant_conv;

 private:
  at::Tensor decode_tile(const at::Tensor& z, VaeDecodeReport& report);
  at::Tensor moments(const at::Tensor& images);

  AutoencoderKLOptions options_;
  std::shared_ptr<AutoencoderKLImpl> float32_copy_;
};
TORCH_MODULE(AutoencoderKL);

/// Every parameter under its diffusers name (detached views of the module's storage).
std::map<std::string, at::Tensor> vae_state_dict(AutoencoderKL& vae);

/// The CompVis / ldm name (as in single-file checkpoints, without "first_stage_model.") of a
/// diffusers parameter name of a VAE with `levels` resolution levels, e.g.
/// "decoder.up_blocks.0.resnets.2.conv_shortcut.weight" ->
/// "decoder.up.3.block.2.nin_shortcut.weight" (levels 4). Empty when the name has no ldm
/// counterpart.
std::string vae_ldm_name(const std::string& diffusers_name, int64_t levels);
/// The name older diffusers checkpoints (before the attention rename of diffusers 0.14, e.g.
/// stabilityai/sd-vae-ft-ema) use: "...attentions.0.to_q.weight" -> "...attentions.0.query.weight"
/// (key, value, proj_attn, group_norm unchanged). Empty when it is the same name.
std::string vae_legacy_name(const std::string& diffusers_name);

/// Loads a VAE state dict in any of the three namings (diffusers, legacy diffusers, ldm with or
/// without the "first_stage_model." prefix; the naming is recognised from the keys). ldm's 1x1
/// convolution attention weights [C, C, 1, 1] are reshaped to the linear [C, C]. Keys outside the
/// VAE (a full single-file checkpoint's UNet and text encoder) are ignored when the ldm prefix is
/// used; otherwise every key must be a VAE tensor. Missing, unexpected and mis-shaped tensors are
/// reported together in one error (the first few of each and their counts); the module is
/// modified only when there is none. Floating tensors are converted to the module's dtype.
void load_vae_state_dict(AutoencoderKL& vae, const std::map<std::string, at::Tensor>& sd,
                         const std::string& origin);

/// Where a VAE's weights and configuration come from, resolved by load_vae:
///  - a diffusers folder (config.json + diffusion_pytorch_model.safetensors, or a model folder with
///    a vae/ subfolder);
///  - a .safetensors file with diffusers or ldm names (e.g. vae-ft-mse-840000-ema-pruned
///    .safetensors, or a whole single-file SD checkpoint: its first_stage_model.* tensors are
///    read), whose architecture is `preset` (default "sd"; for SD-XL checkpoints "sdxl", which
///    differs only in its scaling factor);
///  - a .safetensors file written by save_vae (architecture in its metadata).
struct LoadVaeOptions {
  /// Architecture of a file without configuration. Default "sd".
  std::string preset = "sd";
  /// Overrides the scaling factor of the configuration when set.
  std::optional<double> scaling_factor;
};
AutoencoderKL load_vae(const std::string& path, const LoadVaeOptions& options = {});

/// Writes the VAE (diffusers names) with its options under the metadata key "diffuse_vae".
void save_vae(const std::string& path, AutoencoderKL& vae,
              std::map<std::string, std::string> metadata = {});

namespace detail {

/// Cuts `input` [B, C, H, W] into tiles of side `tile` overlapping by `overlap` (the last tile of a
/// row or column is moved back to end at the border), applies `fn` to each, and blends the outputs:
/// weights ramp linearly over the overlaps (1 / (overlap + 1), ..., 1) and are 1 elsewhere, and the
/// sum is normalised by the total weight (in float32; the result is float32). A pointwise `fn` is
/// reproduced exactly. The output side is the input side * up / down; tile, overlap and the sides
/// must be multiples of `down`.
at::Tensor tiled_apply(const at::Tensor& input, int64_t tile, int64_t overlap, int64_t up,
                       int64_t down, const std::function<at::Tensor(const at::Tensor&)>& fn);

}  // namespace detail

}  // namespace diffuse
