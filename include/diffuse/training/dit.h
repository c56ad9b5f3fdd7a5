// SPDX-License-Identifier: Apache-2.0
// DiT, the diffusion transformer with adaLN-Zero blocks, and its masked variant MaskDiT.
//   Peebles & Xie, "Scalable Diffusion Models with Transformers" (ICCV 2023), Sec. 3.2 (patchify,
//   adaLN-Zero block, final layer, Table 1 sizes).
//   Zheng, Nie, Vahdat, Anandkumar, "Fast Training of Diffusion Models with Masked Transformers"
//   (TMLR 2024), Sec. 3 (the encoder sees only the unmasked tokens; a small decoder restores the
//   full sequence with a learned mask token).
// Checked against: facebookresearch/DiT @ed81ce2 models.py (parameter names, initialisation,
//   timestep embedding, 2-D sin-cos position embedding, unpatchify order, qkv layout) and
//   Anima-Lab/MaskDiT @73cfb96 models/maskdit.py (decoder_layer, mask_token, decoder_pos_embed,
//   decoder_blocks conditioned by the encoder-width c, final layer at decoder width).
// Differences from the references, on purpose: pos_embed / decoder_pos_embed are buffers (the
//   references keep them as frozen nn.Parameters; state-dict keys are the same); class labels use
//   DiT's embedding table with the null row (MaskDiT uses a bias-free Linear on one-hot labels);
//   the mask is given by the caller (Conditioning.extra["mask"]) instead of drawn inside the model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/utils.h>  // torch::manual_seed, which seeds the initialisation

#include <diffuse/config.h>
#include <diffuse/denoiser.h>

namespace diffuse {

/// Architecture of a DiT (decoder_depth = 0) or MaskDiT (decoder_depth > 0).
struct DiTOptions {
  DiTOptions(int64_t input_size, int64_t in_channels)
      : input_size_(input_size), in_channels_(in_channels) {}
  /// Height = width of the input in pixels or latent cells. Required; > 0 and a multiple of
  /// patch_size.
  TORCH_ARG(int64_t, input_size);
  /// Input channels C. Required; > 0.
  TORCH_ARG(int64_t, in_channels);
  /// Patch side p; tokens N = (input_size / p)^2. Default 2; > 0.
  TORCH_ARG(int64_t, patch_size) = 2;
  /// Encoder width d. Default 384 (DiT-S); > 0, a multiple of 4 (2-D sin-cos embedding) and of
  /// num_heads.
  TORCH_ARG(int64_t, hidden_size) = 384;
  /// Encoder blocks. Default 12; >= 1.
  TORCH_ARG(int64_t, depth) = 12;
  /// Encoder attention heads. Default 6; >= 1, divides hidden_size.
  TORCH_ARG(int64_t, num_heads) = 6;
  /// MLP hidden width = int(d * mlp_ratio). Default 4; > 0.
  TORCH_ARG(double, mlp_ratio) = 4.0;
  /// Classes. Default 0 = unconditional (no label embedding). Otherwise the table has num_classes +
  /// 1 rows; label num_classes is the null class used for classifier-free guidance. Range >= 0.
  TORCH_ARG(int64_t, num_classes) = 0;
  /// Learned variance: output has 2C channels (eps, then the variance interpolation). Default
  /// false.
  TORCH_ARG(bool, learn_sigma) = false;
  /// MaskDiT decoder blocks after the encoder. Default 0 = plain DiT; MaskDiT uses 8. Range >= 0.
  TORCH_ARG(int64_t, decoder_depth) = 0;
  /// Decoder width. Default 512 (MaskDiT); > 0, a multiple of 4 and of decoder_num_heads. Unused
  /// when decoder_depth = 0.
  TORCH_ARG(int64_t, decoder_hidden_size) = 512;
  /// Decoder attention heads. Default 16 (MaskDiT); >= 1. Unused when decoder_depth = 0.
  TORCH_ARG(int64_t, decoder_num_heads) = 16;
};

/// Throws diffuse::Error naming the first invalid field.
void validate(const DiTOptions& o);

/// Named sizes. "S/2", "B/2", "L/2", "XL/2" are DiT's Table 1 (patch 2); "tiny" (d 64, depth 4,
/// 4 heads) and "mini" (d 128, depth 6, 4 heads) are CPU sizes of this library. Everything else
/// keeps its default (unconditional, no learned sigma, no decoder).
DiTOptions dit_preset(const std::string& name, int64_t input_size, int64_t in_channels);

/// DiTOptions from key=value pairs: `preset` (optional, a dit_preset name), `input_size` and
/// `in_channels` (required), and any other field by its name (patch_size, hidden_size, depth,
/// num_heads, mlp_ratio, num_classes, learn_sigma, decoder_depth, decoder_hidden_size,
/// decoder_num_heads), which override the preset. Unknown keys are errors; the result is validated.
DiTOptions dit_options_from_config(const Config& c);

/// Every field of `o` as key=value (no preset key); dit_options_from_config reads it back.
Config to_config(const DiTOptions& o);

namespace detail {

/// x * (1 + scale) + shift, with per-sample [B, D] modulation broadcast over tokens.
at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale);

/// LayerNorm without affine parameters, eps 1e-6 (DiT's norm1 / norm2 / norm_final).
at::Tensor plain_layer_norm(const at::Tensor& x);

/// 1-D sin-cos embedding of positions `pos` into `dim` (even) values: [sin(pos w_k), cos(pos w_k)],
/// w_k = 10000^(-k / (dim/2)), k < dim/2 (MAE / DiT get_1d_sincos_pos_embed_from_grid). Double.
at::Tensor sincos_1d(const at::Tensor& pos, int64_t dim);

}  // namespace detail

/// Fixed 2-D sin-cos position embedding [grid*grid, dim] (float64) for tokens in row-major order
/// (token i*grid + j is row i, column j). The first dim/2 values encode the column j, the last
/// dim/2 the row i, as DiT's get_2d_sincos_pos_embed (meshgrid with w first). dim must be a
/// multiple of 4.
at::Tensor dit_pos_embed_2d(int64_t dim, int64_t grid);

/// Sinusoidal time embedding [B, dim] of DiT / GLIDE: [cos(t f_k), sin(t f_k)],
/// f_k = exp(-ln(max_period) k / (dim/2)), k < dim/2 (a zero column is appended for odd dim).
/// Computed in float32 as the reference does (float64 when t is float64).
at::Tensor dit_timestep_embedding(const at::Tensor& t, int64_t dim, double max_period = 10000.0);

// ---- building blocks (named as DiT's modules so that state-dict keys match) ----

/// Patchify: Conv2d(C, d, kernel = stride = p), "x_embedder.proj"; [B,C,H,W] -> [B, N, d].
class DiTPatchEmbedImpl : public torch::nn::Cloneable<DiTPatchEmbedImpl> {
 public:
  DiTPatchEmbedImpl(int64_t in_channels, int64_t hidden, int64_t patch)
      : in_channels_(in_channels), hidden_(hidden), patch_(patch) {
    reset();
  }
  void reset() override;
  at::Tensor forward(const at::Tensor& x) { return proj->forward(x).flatten(2).transpose(1, 2); }
  torch::nn::Conv2d proj{nullptr};

 private:
  int64_t in_channels_, hidden_, patch_;
};
TORCH_MODULE(DiTPatchEmbed);

/// Timestep embedder: sinusoid(256) -> Linear -> SiLU -> Linear ("t_embedder.mlp.0" / "mlp.2").
class DiTTimestepEmbedderImpl : public torch::nn::Cloneable<DiTTimestepEmbedderImpl> {
 public:
  static constexpr int64_t kFrequencySize = 256;
  explicit DiTTimestepEmbedderImpl(int64_t hidden) : hidden_(hidden) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& t, at::ScalarType dtype);
  torch::nn::Sequential mlp{nullptr};

 private:
  int64_t hidden_;
};
TORCH_MODULE(DiTTimestepEmbedder);

/// Class-label table with num_classes + 1 rows ("y_embedder.embedding_table").
class DiTLabelEmbedderImpl : public torch::nn::Cloneable<DiTLabelEmbedderImpl> {
 public:
  DiTLabelEmbedderImpl(int64_t num_classes, int64_t hidden)
      : num_classes_(num_classes), hidden_(hidden) {
    reset();
  }
  void reset() override;
  at::Tensor forward(const at::Tensor& labels) { return embedding_table->forward(labels); }
  torch::nn::Embedding embedding_table{nullptr};

 private:
  int64_t num_classes_, hidden_;
};
TORCH_MODULE(DiTLabelEmbedder);

/// Multi-head self-attention with a fused qkv projection laid out (3, heads, head_dim) as timm's
/// Attention ("attn.qkv", "attn.proj").
class DiTAttentionImpl : public torch::nn::Cloneable<DiTAttentionImpl> {
 public:
  DiTAttentionImpl(int64_t dim, int64_t heads) : dim_(dim), heads_(heads) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t dim_, heads_;
};
TORCH_MODULE(DiTAttention);

/// fc1 -> GELU (tanh approximation) -> fc2 ("mlp.fc1", "mlp.fc2").
class DiTMlpImpl : public torch::nn::Cloneable<DiTMlpImpl> {
 public:
  DiTMlpImpl(int64_t dim, int64_t hidden) : dim_(dim), hidden_(hidden) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  int64_t dim_, hidden_;
};
TORCH_MODULE(DiTMlp);

/// adaLN-Zero block of width `dim`, conditioned by c of width `cond_dim` (the encoder width;
/// MaskDiT's decoder blocks have dim = decoder width and cond_dim = encoder width).
class DiTBlockImpl : public torch::nn::Cloneable<DiTBlockImpl> {
 public:
  DiTBlockImpl(int64_t dim, int64_t cond_dim, int64_t heads, double mlp_ratio)
      : dim_(dim), cond_dim_(cond_dim), heads_(heads), mlp_ratio_(mlp_ratio) {
    reset();
  }
  void reset() override;
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c);
  /// The six adaLN chunks of c: (shift, scale, gate) for attention, then for the MLP.
  std::vector<at::Tensor> modulation(const at::Tensor& c);
  /// forward() from its parts: m = modulation(c) and the attention's input modulate(norm(x), m[0],
  /// m[1]), computed already (DiTStepCache's decision needs it).
  at::Tensor forward_modulated(const at::Tensor& x, const std::vector<at::Tensor>& m,
                               const at::Tensor& attn_input);
  DiTAttention attn{nullptr};
  DiTMlp mlp{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};

 private:
  int64_t dim_, cond_dim_, heads_;
  double mlp_ratio_;
};
TORCH_MODULE(DiTBlock);

/// LayerNorm + adaLN (shift, scale) + Linear(dim -> out). The shift/scale Linear maps cond_dim ->
/// 2 * mod_dim. DiT's final_layer: mod_dim = dim. MaskDiT's decoder_layer: dim = mod_dim = encoder
/// width and out = decoder width; its final layer: dim = mod_dim = decoder width, cond_dim =
/// encoder width.
class DiTModulatedLinearImpl : public torch::nn::Cloneable<DiTModulatedLinearImpl> {
 public:
  DiTModulatedLinearImpl(int64_t dim, int64_t cond_dim, int64_t out)
      : dim_(dim), cond_dim_(cond_dim), out_(out) {
    reset();
  }
  void reset() override;
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c);
  torch::nn::Linear linear{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};

 private:
  int64_t dim_, cond_dim_, out_;
};
TORCH_MODULE(DiTModulatedLinear);

/// Step caching for a DiT's transformer blocks, TeaCache-style (Liu et al. 2024, "Timestep
/// Embedding Tells: It's Time to Cache for Video Diffusion Model"; the same idea as FORA, Selvaraju
/// et al. 2024, and Delta-DiT, Chen et al. 2024, with the decision made from the input instead of
/// a fixed period): adjacent sampling steps change the blocks' output residual (output - input of
/// the block stack) little, so a call may reuse the residual of an earlier call instead of running
/// the blocks. Which calls do is decided from the first block's timestep-modulated input
/// m = modulate(LayerNorm(h), shift, scale): its relative L1 change |m - m_prev|_1 / |m_prev|_1
/// from the previous call is accumulated, and while the sum stays below `threshold` (and at most
/// `max_reuse` calls in a row) the blocks are skipped; otherwise they run, the residual is stored
/// and the sum starts again from 0. TeaCache also rescales the change with a polynomial fitted per
/// model; this uses it as is. The embeddings and the final layer always run. Works with every
/// sampler (it lives in the network) and with classifier-free guidance (the batched branches are
/// one call). Threshold 0 never skips and gives the uncached output bit for bit.
///
/// One cache belongs to one sampling run at a time (it is the run's state; not thread-safe). A
/// call whose batch shape, dtype or device differs from the stored residual's runs the blocks, and
/// the first call of a new run (a large jump in t) nearly always does too; reset() forgets the
/// state and the counts.
class DiTStepCache {
 public:
  /// threshold >= 0 (0 = never skip); max_reuse >= 0 consecutive reuses at most (0 = no limit).
  explicit DiTStepCache(double threshold, int64_t max_reuse = 0);
  void reset();
  double threshold() const { return threshold_; }
  int64_t max_reuse() const { return max_reuse_; }
  /// Calls that ran the blocks / reused the residual since construction or reset().
  int64_t computed() const { return computed_; }
  int64_t reused() const { return reused_; }

 private:
  friend class DiTImpl;
  double threshold_;
  int64_t max_reuse_;
  at::Tensor previous_, residual_;  // the last call's modulated input; the stored residual
  double accumulated_ = 0;
  int64_t in_a_row_ = 0, computed_ = 0, reused_ = 0;
};

/// DiT / MaskDiT. Parameters are named as in the reference code (x_embedder.proj, t_embedder.mlp.0,
/// y_embedder.embedding_table, blocks.<i>.attn.qkv, ..., final_layer.linear; MaskDiT's
/// decoder_layer, mask_token, decoder_blocks.<i>...); pos_embed and decoder_pos_embed are buffers.
/// Initialisation follows the references and draws from LibTorch's global generator
/// (torch::manual_seed).
class DiTImpl : public torch::nn::Cloneable<DiTImpl> {
 public:
  explicit DiTImpl(DiTOptions options_) : options(std::move(options_)) { reset(); }

  void reset() override;

  /// The label embeddings [B, hidden_size] of int64 labels [B] in [0, num_classes] (undefined =
  /// the null class): what forward() adds to the time embedding. forward() also accepts them in
  /// place of the labels, so corrections that perturb the condition embedding (CADS) work on a DiT.
  at::Tensor label_embedding(const at::Tensor& labels, int64_t batch, const at::Device& device);

  /// x [B, C, H, W]; t [B] (model time, embedded as given); y int64 [B] in [0, num_classes] or
  /// undefined (= the null class; must be undefined for an unconditional model), or float
  /// [B, hidden_size] label embeddings (label_embedding()); mask bool [B, N],
  /// true = token dropped, the same count in every row, at least one token kept (needs a decoder).
  /// With a mask the encoder runs on the kept tokens only; the decoder puts the mask token at the
  /// dropped positions. Returns [B, out_channels(), H, W].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y = {},
                     const at::Tensor& mask = {});

  /// forward() without a mask, with the (encoder) blocks run or skipped as `cache` decides (see
  /// DiTStepCache); for inference (no autograd through the stored residual).
  at::Tensor forward_cached(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                            DiTStepCache& cache);

  /// Tokens per image, (input_size / patch_size)^2.
  int64_t num_tokens() const;
  /// The null (unconditional) class id, num_classes (0 for an unconditional model).
  int64_t null_class() const { return options.num_classes(); }
  /// Output channels: 2C with learn_sigma, else C.
  int64_t out_channels() const;

  DiTOptions options;
  DiTPatchEmbed x_embedder{nullptr};
  DiTTimestepEmbedder t_embedder{nullptr};
  DiTLabelEmbedder y_embedder{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  DiTModulatedLinear decoder_layer{nullptr};
  torch::nn::ModuleList decoder_blocks{nullptr};
  DiTModulatedLinear final_layer{nullptr};
  at::Tensor pos_embed, decoder_pos_embed, mask_token;

 private:
  void initialize_weights();

  at::Tensor labels_or_null(const at::Tensor& y, int64_t b, const at::Device& device) const;

  at::Tensor kept_indices(const at::Tensor& mask, int64_t b, int64_t n) const;

  at::Tensor unpatchify(const at::Tensor& h) const;

  at::Tensor forward_impl(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                          const at::Tensor& mask, DiTStepCache* cache);
  /// The encoder blocks on h, or the cached residual added to h (cache not null).
  at::Tensor run_blocks(const at::Tensor& h, const at::Tensor& c, DiTStepCache* cache);
};
TORCH_MODULE(DiT);

namespace detail {

/// A DiT of `options` for a loader that sets every parameter right away: built without drawing
/// initial weights, its Linear weights and biases are uninitialised memory (the patch, label and
/// time embeddings keep their cheap default draws). Options are validated as by the constructor.
/// Only for strict loads (every weight present, or an error and the model dropped).
DiT unloaded_dit(const DiTOptions& options);

}  // namespace detail

/// Wraps a DiT as a diffuse::Network. Conditioning.value = int64 class labels [B] in
/// [0, num_classes] (undefined = null class); an unconditional model ignores it, so a trainer may
/// pass dataset labels either way. Conditioning.extra["mask"], if present, is the token mask.
/// With learn_sigma only the first C output channels (the epsilon prediction) are returned, which
/// is how DiT samples with DDIM; with `keep_variance` all 2C are, for a Denoiser with
/// learned_variance (DiT's own DDPM sampler: ddpm:variance_type=learned_range).
Network as_network(DiT model, bool keep_variance = false);

/// as_network() with step caching (DiTStepCache): every call goes through model->forward_cached
/// with `cache` (not null). The Network then carries the run's state: one per concurrent run.
Network as_network(DiT model, bool keep_variance, std::shared_ptr<DiTStepCache> cache);

}  // namespace diffuse
