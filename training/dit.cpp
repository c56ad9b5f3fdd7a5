// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/dit.h>.
#include <diffuse/training/dit.h>
#include <diffuse/training/gelu.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/utils.h>

#include <diffuse/config.h>
#include <diffuse/detail/aten.h>

#include "unloaded_layers.h"

namespace diffuse {

void validate(const DiTOptions& o) {
  check(o.input_size() > 0, "DiTOptions.input_size must be > 0, got ", o.input_size());
  check(o.in_channels() > 0, "DiTOptions.in_channels must be > 0, got ", o.in_channels());
  check(o.patch_size() > 0, "DiTOptions.patch_size must be > 0, got ", o.patch_size());
  check(o.input_size() % o.patch_size() == 0, "DiTOptions.input_size (", o.input_size(),
        ") must be a multiple of patch_size (", o.patch_size(), ")");
  check(o.hidden_size() > 0 && o.hidden_size() % 4 == 0,
        "DiTOptions.hidden_size must be a positive multiple of 4 (2-D sin-cos position embedding), "
        "got ",
        o.hidden_size());
  check(o.depth() >= 1, "DiTOptions.depth must be >= 1, got ", o.depth());
  check(o.num_heads() >= 1 && o.hidden_size() % o.num_heads() == 0, "DiTOptions.num_heads (",
        o.num_heads(), ") must be >= 1 and divide hidden_size (", o.hidden_size(), ")");
  // The MLP width int(width * mlp_ratio) must be a representable, sane layer size; checked in
  // double before any cast (a huge ratio would overflow int64_t).
  const auto mlp_width_ok = [&](int64_t width) {
    const double w = static_cast<double>(width) * o.mlp_ratio();
    return w >= 1.0 && w <= static_cast<double>(int64_t{1} << 31);
  };
  check(std::isfinite(o.mlp_ratio()) && o.mlp_ratio() > 0 && mlp_width_ok(o.hidden_size()),
        "DiTOptions.mlp_ratio must be > 0 and give an MLP width int(hidden_size * mlp_ratio) in "
        "[1, 2^31], got mlp_ratio = ",
        format_double(o.mlp_ratio()), " with hidden_size = ", o.hidden_size());
  check(o.num_classes() >= 0, "DiTOptions.num_classes must be >= 0 (0 = unconditional), got ",
        o.num_classes());
  check(o.decoder_depth() >= 0, "DiTOptions.decoder_depth must be >= 0 (0 = no decoder), got ",
        o.decoder_depth());
  if (o.decoder_depth() > 0) {
    check(o.decoder_hidden_size() > 0 && o.decoder_hidden_size() % 4 == 0,
          "DiTOptions.decoder_hidden_size must be a positive multiple of 4, got ",
          o.decoder_hidden_size());
    check(o.decoder_num_heads() >= 1 && o.decoder_hidden_size() % o.decoder_num_heads() == 0,
          "DiTOptions.decoder_num_heads (", o.decoder_num_heads(),
          ") must be >= 1 and divide decoder_hidden_size (", o.decoder_hidden_size(), ")");
    check(mlp_width_ok(o.decoder_hidden_size()),
          "DiTOptions.mlp_ratio must give a decoder MLP width int(decoder_hidden_size * mlp_ratio) "
          "in [1, 2^31], got mlp_ratio = ",
          format_double(o.mlp_ratio()), " with decoder_hidden_size = ", o.decoder_hidden_size());
  }
}

DiTOptions dit_preset(const std::string& name, int64_t input_size, int64_t in_channels) {
  DiTOptions o(input_size, in_channels);
  auto set = [&](int64_t d, int64_t depth, int64_t heads) {
    o.hidden_size(d).depth(depth).num_heads(heads);
  };
  if (name == "tiny")
    set(64, 4, 4);
  else if (name == "mini")
    set(128, 6, 4);
  else if (name == "S/2")
    set(384, 12, 6);
  else if (name == "B/2")
    set(768, 12, 12);
  else if (name == "L/2")
    set(1024, 24, 16);
  else if (name == "XL/2")
    set(1152, 28, 16);
  else
    throw Error("unknown DiT preset '" + name + "'; valid: tiny, mini, S/2, B/2, L/2, XL/2");
  return o;
}

DiTOptions dit_options_from_config(const Config& c) {
  ConfigReader r(c, "dit");
  const int64_t input_size = r.get_int("input_size", -1);
  const int64_t in_channels = r.get_int("in_channels", -1);
  check(input_size > 0, "dit: input_size (> 0) is required, got ", input_size);
  check(in_channels > 0, "dit: in_channels (> 0) is required, got ", in_channels);
  const std::string preset = r.get_string("preset", "");
  DiTOptions o = preset.empty() ? DiTOptions(input_size, in_channels)
                                : dit_preset(preset, input_size, in_channels);
  o.patch_size(r.get_int("patch_size", o.patch_size()));
  o.hidden_size(r.get_int("hidden_size", o.hidden_size()));
  o.depth(r.get_int("depth", o.depth()));
  o.num_heads(r.get_int("num_heads", o.num_heads()));
  o.mlp_ratio(r.get_double("mlp_ratio", o.mlp_ratio()));
  o.num_classes(r.get_int("num_classes", o.num_classes()));
  o.learn_sigma(r.get_bool("learn_sigma", o.learn_sigma()));
  o.decoder_depth(r.get_int("decoder_depth", o.decoder_depth()));
  o.decoder_hidden_size(r.get_int("decoder_hidden_size", o.decoder_hidden_size()));
  o.decoder_num_heads(r.get_int("decoder_num_heads", o.decoder_num_heads()));
  r.finish();
  validate(o);
  return o;
}

Config to_config(const DiTOptions& o) {
  auto i = [](int64_t v) { return std::to_string(v); };
  return {{"input_size", i(o.input_size())},
          {"in_channels", i(o.in_channels())},
          {"patch_size", i(o.patch_size())},
          {"hidden_size", i(o.hidden_size())},
          {"depth", i(o.depth())},
          {"num_heads", i(o.num_heads())},
          {"mlp_ratio", format_double(o.mlp_ratio())},
          {"num_classes", i(o.num_classes())},
          {"learn_sigma", o.learn_sigma() ? "true" : "false"},
          {"decoder_depth", i(o.decoder_depth())},
          {"decoder_hidden_size", i(o.decoder_hidden_size())},
          {"decoder_num_heads", i(o.decoder_num_heads())}};
}

namespace detail {

at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  return x * (scale.unsqueeze(1) + 1) + shift.unsqueeze(1);
}

at::Tensor plain_layer_norm(const at::Tensor& x) {
  return at::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6);
}

at::Tensor sincos_1d(const at::Tensor& pos, int64_t dim) {
  const int64_t half = dim / 2;
  at::Tensor omega = at::pow(10000.0, -at::arange(half, pos.options()) / static_cast<double>(half));
  at::Tensor out = pos.unsqueeze(1) * omega.unsqueeze(0);
  return at::cat({at::sin(out), at::cos(out)}, 1);
}

}  // namespace detail

at::Tensor dit_pos_embed_2d(int64_t dim, int64_t grid) {
  check(dim > 0 && dim % 4 == 0, "dit_pos_embed_2d: dim must be a positive multiple of 4, got ",
        dim);
  check(grid > 0, "dit_pos_embed_2d: grid must be > 0, got ", grid);
  at::Tensor idx = at::arange(grid * grid, at::TensorOptions().dtype(at::kDouble));
  at::Tensor col = at::remainder(idx, static_cast<double>(grid));
  at::Tensor row = at::floor(idx / static_cast<double>(grid));
  return at::cat({detail::sincos_1d(col, dim / 2), detail::sincos_1d(row, dim / 2)}, 1);
}

at::Tensor dit_timestep_embedding(const at::Tensor& t, int64_t dim, double max_period) {
  check(t.dim() == 1, "dit_timestep_embedding: t must have shape [B], got ", t.sizes());
  check(dim >= 2, "dit_timestep_embedding: dim must be >= 2, got ", dim);
  const auto dtype = t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t half = dim / 2;
  at::Tensor freqs =
      at::exp(at::arange(half, t.options().dtype(dtype)) * (-std::log(max_period)) / half);
  at::Tensor args = t.to(dtype).unsqueeze(1) * freqs.unsqueeze(0);
  at::Tensor emb = at::cat({at::cos(args), at::sin(args)}, 1);
  if (dim % 2) emb = at::cat({emb, at::zeros_like(emb.narrow(1, 0, 1))}, 1);
  return emb;
}

Network as_network(DiT model, bool keep_variance) {
  return as_network(std::move(model), keep_variance, nullptr);
}

Network as_network(DiT model, bool keep_variance, std::shared_ptr<DiTStepCache> cache) {
  return [model, keep_variance, cache](const Tensor& x, const Tensor& t,
                                       const Conditioning& c) mutable -> Tensor {
    Tensor y = model->options.num_classes() > 0 ? c.value : Tensor();
    auto it = c.extra.find("mask");
    const Tensor mask = it != c.extra.end() ? it->second : Tensor();
    check(!cache || !mask.defined(), "DiT: step caching does not take a token mask");
    Tensor out = cache ? model->forward_cached(x, t, y, *cache) : model->forward(x, t, y, mask);
    if (model->options.learn_sigma() && !keep_variance)
      out = out.narrow(1, 0, model->options.in_channels());
    return out;
  };
}

DiTStepCache::DiTStepCache(double threshold, int64_t max_reuse)
    : threshold_(threshold), max_reuse_(max_reuse) {
  check(std::isfinite(threshold) && threshold >= 0,
        "DiTStepCache: threshold must be finite and >= 0, got ", threshold);
  check(max_reuse >= 0, "DiTStepCache: max_reuse must be >= 0, got ", max_reuse);
}

void DiTStepCache::reset() {
  previous_ = Tensor();
  residual_ = Tensor();
  accumulated_ = 0;
  in_a_row_ = computed_ = reused_ = 0;
}

void DiTPatchEmbedImpl::reset() {
  proj = register_module(
      "proj",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels_, hidden_, patch_).stride(patch_)));
}

void DiTTimestepEmbedderImpl::reset() {
  mlp = register_module(
      "mlp", torch::nn::Sequential(detail::linear_layer(kFrequencySize, hidden_), torch::nn::SiLU(),
                                   detail::linear_layer(hidden_, hidden_)));
}

at::Tensor DiTTimestepEmbedderImpl::forward(const at::Tensor& t, at::ScalarType dtype) {
  return mlp->forward(dit_timestep_embedding(t, kFrequencySize).to(dtype));
}

void DiTLabelEmbedderImpl::reset() {
  embedding_table =
      register_module("embedding_table", torch::nn::Embedding(num_classes_ + 1, hidden_));
}

void DiTAttentionImpl::reset() {
  qkv = register_module("qkv", detail::linear_layer(dim_, 3 * dim_));
  proj = register_module("proj", detail::linear_layer(dim_, dim_));
}

at::Tensor DiTAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), n = x.size(1);
  at::Tensor qkv_ =
      qkv->forward(x).reshape({b, n, 3, heads_, dim_ / heads_}).permute({2, 0, 3, 1, 4});
  at::Tensor o = detail::attention(qkv_[0], qkv_[1], qkv_[2]);  // [B, heads, N, head_dim]
  return proj->forward(o.transpose(1, 2).reshape({b, n, dim_}));
}

void DiTMlpImpl::reset() {
  fc1 = register_module("fc1", detail::linear_layer(dim_, hidden_));
  fc2 = register_module("fc2", detail::linear_layer(hidden_, dim_));
}

at::Tensor DiTMlpImpl::forward(const at::Tensor& x) {
  return fc2->forward(gelu_tanh(fc1->forward(x)));
}

void DiTBlockImpl::reset() {
  attn = register_module("attn", DiTAttention(dim_, heads_));
  mlp = register_module("mlp",
                        DiTMlp(dim_, static_cast<int64_t>(static_cast<double>(dim_) * mlp_ratio_)));
  adaLN_modulation = register_module(
      "adaLN_modulation",
      torch::nn::Sequential(torch::nn::SiLU(), detail::linear_layer(cond_dim_, 6 * dim_)));
}

std::vector<at::Tensor> DiTBlockImpl::modulation(const at::Tensor& c) {
  return adaLN_modulation->forward(c).chunk(6, 1);
}

at::Tensor DiTBlockImpl::forward_modulated(const at::Tensor& x, const std::vector<at::Tensor>& m,
                                           const at::Tensor& attn_input) {
  at::Tensor h = x + m[2].unsqueeze(1) * attn->forward(attn_input);
  return h + m[5].unsqueeze(1) *
                 mlp->forward(detail::modulate(detail::plain_layer_norm(h), m[3], m[4]));
}

at::Tensor DiTBlockImpl::forward(const at::Tensor& x, const at::Tensor& c) {
  const std::vector<at::Tensor> m = modulation(c);
  return forward_modulated(x, m, detail::modulate(detail::plain_layer_norm(x), m[0], m[1]));
}

void DiTModulatedLinearImpl::reset() {
  linear = register_module("linear", detail::linear_layer(dim_, out_));
  adaLN_modulation = register_module(
      "adaLN_modulation",
      torch::nn::Sequential(torch::nn::SiLU(), detail::linear_layer(cond_dim_, 2 * dim_)));
}

at::Tensor DiTModulatedLinearImpl::forward(const at::Tensor& x, const at::Tensor& c) {
  std::vector<at::Tensor> m = adaLN_modulation->forward(c).chunk(2, 1);
  return linear->forward(detail::modulate(detail::plain_layer_norm(x), m[0], m[1]));
}

void DiTImpl::reset() {
  validate(options);
  const DiTOptions& o = options;
  const int64_t d = o.hidden_size(), grid = o.input_size() / o.patch_size();
  x_embedder = register_module("x_embedder", DiTPatchEmbed(o.in_channels(), d, o.patch_size()));
  t_embedder = register_module("t_embedder", DiTTimestepEmbedder(d));
  y_embedder = nullptr;
  if (o.num_classes() > 0)
    y_embedder = register_module("y_embedder", DiTLabelEmbedder(o.num_classes(), d));
  pos_embed = register_buffer("pos_embed", dit_pos_embed_2d(d, grid).to(at::kFloat).unsqueeze(0));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.depth(); ++i)
    blocks->push_back(DiTBlock(d, d, o.num_heads(), o.mlp_ratio()));
  int64_t final_dim = d;
  decoder_layer = nullptr;
  decoder_blocks = nullptr;
  mask_token = decoder_pos_embed = at::Tensor();
  if (o.decoder_depth() > 0) {
    const int64_t dd = o.decoder_hidden_size();
    decoder_pos_embed = register_buffer("decoder_pos_embed",
                                        dit_pos_embed_2d(dd, grid).to(at::kFloat).unsqueeze(0));
    decoder_layer = register_module("decoder_layer", DiTModulatedLinear(d, d, dd));
    decoder_blocks = register_module("decoder_blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.decoder_depth(); ++i)
      decoder_blocks->push_back(DiTBlock(dd, d, o.decoder_num_heads(), o.mlp_ratio()));
    mask_token = register_parameter("mask_token", at::zeros({1, 1, dd}));
    final_dim = dd;
  }
  final_layer = register_module(
      "final_layer",
      DiTModulatedLinear(final_dim, d, o.patch_size() * o.patch_size() * out_channels()));
  if (!detail::building_unloaded()) initialize_weights();
}

DiT detail::unloaded_dit(const DiTOptions& options) {
  const UnloadedScope unloaded;
  return DiT(options);
}

at::Tensor DiTImpl::label_embedding(const at::Tensor& labels, int64_t batch,
                                    const at::Device& device) {
  check(options.num_classes() > 0,
        "DiT: the model is unconditional (num_classes = 0): no label embedding");
  return y_embedder->forward(labels_or_null(labels, batch, device));
}

at::Tensor DiTImpl::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                            const at::Tensor& mask) {
  return forward_impl(x, t, y, mask, nullptr);
}

at::Tensor DiTImpl::forward_cached(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                                   DiTStepCache& cache) {
  return forward_impl(x, t, y, {}, &cache);
}

at::Tensor DiTImpl::run_blocks(const at::Tensor& h_in, const at::Tensor& c, DiTStepCache* cache) {
  at::Tensor h = h_in;
  if (cache == nullptr || blocks->is_empty()) {
    for (const auto& blk : *blocks) h = blk->as<DiTBlockImpl>()->forward(h, c);
    return h;
  }
  // The first block's modulated input decides (see DiTStepCache).
  auto* first = (*blocks)[0]->as<DiTBlockImpl>();
  const std::vector<at::Tensor> m = first->modulation(c);
  const at::Tensor now = detail::modulate(detail::plain_layer_norm(h), m[0], m[1]);
  DiTStepCache& k = *cache;
  bool reuse = false;
  if (k.residual_.defined() && k.previous_.defined() && k.residual_.sizes() == h.sizes() &&
      k.residual_.scalar_type() == h.scalar_type() && k.residual_.device() == h.device() &&
      k.previous_.sizes() == now.sizes()) {
    const double base = k.previous_.abs().mean().item<double>();
    const double change = (now - k.previous_).abs().mean().item<double>();
    k.accumulated_ += base > 0 ? change / base : std::numeric_limits<double>::infinity();
    reuse = k.accumulated_ < k.threshold_ && (k.max_reuse_ == 0 || k.in_a_row_ < k.max_reuse_);
  }
  k.previous_ = now.detach();
  if (reuse) {
    ++k.reused_;
    ++k.in_a_row_;
    return h + k.residual_;
  }
  // Computed: the first block goes on from its modulation and input, already at hand.
  h = first->forward_modulated(h, m, now);
  for (size_t i = 1; i < blocks->size(); ++i) h = (*blocks)[i]->as<DiTBlockImpl>()->forward(h, c);
  k.residual_ = (h - h_in).detach();
  k.accumulated_ = 0;
  k.in_a_row_ = 0;
  ++k.computed_;
  return h;
}

at::Tensor DiTImpl::forward_impl(const at::Tensor& x, const at::Tensor& t, const at::Tensor& y,
                                 const at::Tensor& mask, DiTStepCache* cache) {
  const DiTOptions& o = options;
  check(x.defined() && x.dim() == 4, "DiT: x must have shape [B, C, H, W], got ",
        x.defined() ? x.sizes() : at::IntArrayRef{});
  check(x.size(1) == o.in_channels() && x.size(2) == o.input_size() && x.size(3) == o.input_size(),
        "DiT: x has shape ", x.sizes(), " but the model takes [B, ", o.in_channels(), ", ",
        o.input_size(), ", ", o.input_size(), "]");
  const int64_t b = x.size(0), n = num_tokens();
  check(t.defined() && t.dim() == 1 && t.size(0) == b, "DiT: t must have shape [", b, "], got ",
        t.defined() ? t.sizes() : at::IntArrayRef{});
  const auto dtype = x.scalar_type();

  at::Tensor c = t_embedder->forward(t, dtype);
  if (o.num_classes() > 0 && y.defined() && y.is_floating_point()) {
    // An already-embedded condition (label_embedding(), possibly annealed by CADS).
    check(y.dim() == 2 && y.size(0) == b && y.size(1) == o.hidden_size(),
          "DiT: a floating-point condition must be a label embedding [", b, ", ", o.hidden_size(),
          "], got ", y.sizes(), " ", y.scalar_type());
    c = c + y.to(dtype);
  } else if (o.num_classes() > 0) {
    c = c + y_embedder->forward(labels_or_null(y, b, x.device()));
  } else {
    check(!y.defined(), "DiT: the model is unconditional (num_classes = 0) but got class labels");
  }

  at::Tensor h = x_embedder->forward(x) + pos_embed.to(dtype);
  at::Tensor keep;  // [B, K] kept token indices, row-major order
  if (mask.defined()) {
    keep = kept_indices(mask, b, n);
    h = at::gather(h, 1, keep.unsqueeze(-1).expand({b, keep.size(1), h.size(2)}));
  }
  h = run_blocks(h, c, cache);

  if (decoder_layer) {
    h = decoder_layer->forward(h, c);
    if (keep.defined()) {
      const int64_t dd = o.decoder_hidden_size();
      at::Tensor full = mask_token.to(dtype).expand({b, n, dd}).contiguous();
      h = full.scatter(1, keep.unsqueeze(-1).expand({b, keep.size(1), dd}), h);
    }
    h = h + decoder_pos_embed.to(dtype);
    for (const auto& blk : *decoder_blocks) h = blk->as<DiTBlockImpl>()->forward(h, c);
  }
  return unpatchify(final_layer->forward(h, c));
}

int64_t DiTImpl::num_tokens() const {
  const int64_t g = options.input_size() / options.patch_size();
  return g * g;
}

int64_t DiTImpl::out_channels() const {
  return options.learn_sigma() ? 2 * options.in_channels() : options.in_channels();
}

void DiTImpl::initialize_weights() {
  torch::NoGradGuard no_grad;
  namespace init = torch::nn::init;
  // Every Linear: xavier-uniform weight, zero bias.
  apply([](torch::nn::Module& m) {
    if (auto* lin = m.as<torch::nn::LinearImpl>()) {
      init::xavier_uniform_(lin->weight);
      if (lin->bias.defined()) init::zeros_(lin->bias);
    }
  });
  // Patch projection initialised like a Linear of fan-in C p^2.
  at::Tensor w = x_embedder->proj->weight;
  init::xavier_uniform_(w.view({w.size(0), -1}));
  init::zeros_(x_embedder->proj->bias);
  if (y_embedder) init::normal_(y_embedder->embedding_table->weight, 0.0, 0.02);
  for (int i : {0, 2})
    init::normal_(t_embedder->mlp[i]->as<torch::nn::LinearImpl>()->weight, 0.0, 0.02);
  auto zero_linear = [](torch::nn::Module& seq_or_linear) {
    auto* lin = seq_or_linear.as<torch::nn::LinearImpl>();
    init::zeros_(lin->weight);
    init::zeros_(lin->bias);
  };
  // adaLN-Zero: every modulation Linear and the output Linear start at zero.
  for (auto* list : {&blocks, &decoder_blocks}) {
    if (!*list) continue;
    for (const auto& blk : **list) zero_linear(*blk->as<DiTBlockImpl>()->adaLN_modulation[1]);
  }
  zero_linear(*final_layer->adaLN_modulation[1]);
  zero_linear(*final_layer->linear);
  if (decoder_layer) {
    zero_linear(*decoder_layer->adaLN_modulation[1]);
    zero_linear(*decoder_layer->linear);
    init::normal_(mask_token, 0.0, 0.02);
  }
}

at::Tensor DiTImpl::labels_or_null(const at::Tensor& y, int64_t b, const at::Device& device) const {
  const int64_t k = options.num_classes();
  if (!y.defined()) return at::full({b}, k, at::TensorOptions().dtype(at::kLong).device(device));
  check(y.dim() == 1 && y.size(0) == b, "DiT: class labels must have shape [", b, "], got ",
        y.sizes());
  check(!at::isFloatingType(y.scalar_type()) && y.scalar_type() != at::kBool,
        "DiT: class labels must be an integer tensor, got ", y.scalar_type());
  at::Tensor labels = y.to(device, at::kLong);
  if (labels.is_cpu() && b > 0) {
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    check(lo >= 0 && hi <= k, "DiT: class labels must be in [0, ", k, "] (", k,
          " = null class), got values in [", lo, ", ", hi, "]");
  }
  return labels;
}

at::Tensor DiTImpl::kept_indices(const at::Tensor& mask, int64_t b, int64_t n) const {
  check(!decoder_layer.is_empty(),
        "DiT: a token mask needs the MaskDiT decoder (DiTOptions.decoder_depth > 0), "
        "but decoder_depth = 0");
  check(mask.scalar_type() == at::kBool, "DiT: mask must be a bool tensor (true = masked), got ",
        mask.scalar_type());
  check(mask.dim() == 2 && mask.size(0) == b && mask.size(1) == n, "DiT: mask must have shape [", b,
        ", ", n, "] (batch, tokens), got ", mask.sizes());
  at::Tensor keep_mask = mask.logical_not().to(at::kLong).sum(1).cpu();
  const int64_t k = b > 0 ? keep_mask[0].item<int64_t>() : n;
  check(k >= 1, "DiT: the mask drops all ", n, " tokens of row 0; at least one must be kept");
  const int64_t kmin = keep_mask.min().item<int64_t>(), kmax = keep_mask.max().item<int64_t>();
  check(kmin == kmax,
        "DiT: every mask row must drop the same number of tokens; kept counts range from ", kmin,
        " to ", kmax);
  // nonzero lists the kept (row, col) pairs in row-major order: K per row, columns ascending.
  return at::nonzero(mask.logical_not()).select(1, 1).reshape({b, k});
}

at::Tensor DiTImpl::unpatchify(const at::Tensor& h) const {
  const int64_t b = h.size(0), p = options.patch_size(), g = options.input_size() / p,
                c = out_channels();
  // Per token the linear output is laid out (p, q, c) as DiT's unpatchify expects.
  return h.reshape({b, g, g, p, p, c}).permute({0, 5, 1, 3, 2, 4}).reshape({b, c, g * p, g * p});
}

}  // namespace diffuse
