// SPDX-License-Identifier: Apache-2.0
#include <diffuse/training/vae.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/utils.h>
#include <nlohmann/json.hpp>

#include <diffuse/config.h>
#include <diffuse/training/safetensors.h>

#include "unloaded_layers.h"

namespace diffuse {

// ---------------------------------------------------------------- options

int64_t AutoencoderKLOptions::downscale() const {
  return int64_t{1} << (static_cast<int64_t>(block_out_channels().size()) - 1);
}

void check_vae_options(const AutoencoderKLOptions& o) {
  check(o.in_channels() > 0, "vae: in_channels must be > 0, got ", o.in_channels());
  check(o.out_channels() > 0, "vae: out_channels must be > 0, got ", o.out_channels());
  check(o.latent_channels() > 0, "vae: latent_channels must be > 0, got ", o.latent_channels());
  check(!o.block_out_channels().empty() && o.block_out_channels().size() <= 8,
        "vae: block_out_channels must have 1 to 8 levels, got ", o.block_out_channels().size());
  check(o.norm_num_groups() >= 1, "vae: norm_num_groups must be >= 1, got ", o.norm_num_groups());
  for (int64_t c : o.block_out_channels())
    check(c > 0 && c % o.norm_num_groups() == 0, "vae: block_out_channels value ", c,
          " must be > 0 and a multiple of norm_num_groups ", o.norm_num_groups());
  check(o.layers_per_block() >= 1 && o.layers_per_block() <= 64,
        "vae: layers_per_block must be in [1, 64], got ", o.layers_per_block());
  check(std::isfinite(o.scaling_factor()) && o.scaling_factor() > 0,
        "vae: scaling_factor must be finite and > 0, got ", o.scaling_factor());
  check(std::isfinite(o.shift_factor()), "vae: shift_factor must be finite, got ",
        o.shift_factor());
  check(o.sample_size() > 0, "vae: sample_size must be > 0, got ", o.sample_size());
}

AutoencoderKLOptions vae_preset(const std::string& name) {
  AutoencoderKLOptions o;
  if (name == "sd") return o;
  if (name == "sdxl") return o.scaling_factor(0.13025).sample_size(1024);
  if (name == "sd3" || name == "flux") {
    o.latent_channels(16).use_quant_conv(false).use_post_quant_conv(false).sample_size(1024);
    if (name == "sd3") return o.scaling_factor(1.5305).shift_factor(0.0609);
    return o.scaling_factor(0.3611).shift_factor(0.1159);
  }
  if (name == "tiny")
    return o.block_out_channels({32, 64}).layers_per_block(1).norm_num_groups(8).sample_size(64);
  throw ConfigError(
      detail::cat("vae: unknown preset '", name, "'; known: ", detail::join(vae_preset_names())));
}

std::vector<std::string> vae_preset_names() { return {"sd", "sdxl", "sd3", "flux", "tiny"}; }

namespace {

std::string channels_text(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "x" : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

Config vae_to_config(const AutoencoderKLOptions& o) {
  auto i = [](int64_t v) { return std::to_string(v); };
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  return {{"in_channels", i(o.in_channels())},
          {"out_channels", i(o.out_channels())},
          {"latent_channels", i(o.latent_channels())},
          {"block_out_channels", channels_text(o.block_out_channels())},
          {"layers_per_block", i(o.layers_per_block())},
          {"norm_num_groups", i(o.norm_num_groups())},
          {"use_quant_conv", b(o.use_quant_conv())},
          {"use_post_quant_conv", b(o.use_post_quant_conv())},
          {"mid_block_add_attention", b(o.mid_block_add_attention())},
          {"scaling_factor", format_double(o.scaling_factor())},
          {"shift_factor", format_double(o.shift_factor())},
          {"sample_size", i(o.sample_size())},
          {"force_upcast", b(o.force_upcast())}};
}

AutoencoderKLOptions vae_options_from_config(const Config& c) {
  ConfigReader r(c, "vae");
  AutoencoderKLOptions o = vae_preset(r.get_string("preset", "sd"));
  o.in_channels(r.get_int("in_channels", o.in_channels()));
  o.out_channels(r.get_int("out_channels", o.out_channels()));
  o.latent_channels(r.get_int("latent_channels", o.latent_channels()));
  if (r.has("block_out_channels")) {
    std::vector<int64_t> ch;
    std::stringstream ss(c.at("block_out_channels"));
    std::string item;
    while (std::getline(ss, item, 'x')) {
      try {
        size_t used = 0;
        ch.push_back(std::stoll(item, &used));
        check(used == item.size(), "");
      } catch (const std::exception&) {
        throw ConfigError(detail::cat("vae: block_out_channels must be like 128x256x512x512, got '",
                                      c.at("block_out_channels"), "'"));
      }
    }
    o.block_out_channels(ch);
  }
  o.layers_per_block(r.get_int("layers_per_block", o.layers_per_block()));
  o.norm_num_groups(r.get_int("norm_num_groups", o.norm_num_groups()));
  o.use_quant_conv(r.get_bool("use_quant_conv", o.use_quant_conv()));
  o.use_post_quant_conv(r.get_bool("use_post_quant_conv", o.use_post_quant_conv()));
  o.mid_block_add_attention(r.get_bool("mid_block_add_attention", o.mid_block_add_attention()));
  o.scaling_factor(r.get_double("scaling_factor", o.scaling_factor()));
  o.shift_factor(r.get_double("shift_factor", o.shift_factor()));
  o.sample_size(r.get_int("sample_size", o.sample_size()));
  o.force_upcast(r.get_bool("force_upcast", o.force_upcast()));
  r.finish();
  check_vae_options(o);
  return o;
}

AutoencoderKLOptions vae_options_from_diffusers_config(const std::string& json_text,
                                                       const std::string& origin) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(json_text);
  } catch (const std::exception& e) {
    throw IOError(detail::cat(origin, ": not valid JSON: ", e.what()));
  }
  check_io(j.is_object(), origin, ": a diffusers config must be a JSON object");
  AutoencoderKLOptions o;
  auto where = [&](const std::string& key) { return detail::cat(origin, ": \"", key, "\""); };
  auto integer = [&](const std::string& key, const json& v) {
    check(v.is_number_integer(), where(key), " must be an integer, got ", v.dump());
    return v.get<int64_t>();
  };
  auto number = [&](const std::string& key, const json& v) {
    check(v.is_number(), where(key), " must be a number, got ", v.dump());
    return v.get<double>();
  };
  auto boolean = [&](const std::string& key, const json& v) {
    check(v.is_boolean(), where(key), " must be true or false, got ", v.dump());
    return v.get<bool>();
  };
  size_t down_types = 0, up_types = 0;
  for (const auto& [key, v] : j.items()) {
    if (!key.empty() && key[0] == '_') continue;  // _class_name, _diffusers_version, _name_or_path
    if (key == "in_channels") {
      o.in_channels(integer(key, v));
    } else if (key == "out_channels") {
      o.out_channels(integer(key, v));
    } else if (key == "latent_channels") {
      o.latent_channels(integer(key, v));
    } else if (key == "block_out_channels") {
      check(v.is_array(), where(key), " must be a list of integers, got ", v.dump());
      std::vector<int64_t> ch;
      for (const json& c : v) ch.push_back(integer(key, c));
      o.block_out_channels(ch);
    } else if (key == "layers_per_block") {
      o.layers_per_block(integer(key, v));
    } else if (key == "norm_num_groups") {
      o.norm_num_groups(integer(key, v));
    } else if (key == "act_fn") {
      check(v == "silu", where(key),
            " must be \"silu\" (the only activation of AutoencoderKL "
            "checkpoints), got ",
            v.dump());
    } else if (key == "down_block_types" || key == "up_block_types") {
      const bool down = key == "down_block_types";
      check(v.is_array(), where(key), " must be a list, got ", v.dump());
      for (const json& t : v)
        check(t == (down ? "DownEncoderBlock2D" : "UpDecoderBlock2D"), where(key), " entry ",
              t.dump(), " is not supported (only ",
              down ? "DownEncoderBlock2D" : "UpDecoderBlock2D", ")");
      (down ? down_types : up_types) = v.size();
    } else if (key == "use_quant_conv") {
      o.use_quant_conv(boolean(key, v));
    } else if (key == "use_post_quant_conv") {
      o.use_post_quant_conv(boolean(key, v));
    } else if (key == "mid_block_add_attention") {
      o.mid_block_add_attention(boolean(key, v));
    } else if (key == "scaling_factor") {
      o.scaling_factor(number(key, v));
    } else if (key == "shift_factor") {
      if (!v.is_null()) o.shift_factor(number(key, v));
    } else if (key == "sample_size") {
      if (v.is_array()) {
        check(!v.empty(), where(key), " must not be empty");
        o.sample_size(integer(key, v[0]));
      } else {
        o.sample_size(integer(key, v));
      }
    } else if (key == "force_upcast") {
      o.force_upcast(boolean(key, v));
    } else if (key == "latents_mean" || key == "latents_std") {
      check(v.is_null(), where(key),
            " (per-channel latent statistics) is not supported; only scaling_factor / "
            "shift_factor");
    } else {
      throw ConfigError(detail::cat(where(key),
                                    " is not an AutoencoderKL option this library "
                                    "knows"));
    }
  }
  const size_t levels = o.block_out_channels().size();
  check(down_types == 0 || down_types == levels, origin, ": ", down_types, " down_block_types for ",
        levels, " block_out_channels");
  check(up_types == 0 || up_types == levels, origin, ": ", up_types, " up_block_types for ", levels,
        " block_out_channels");
  try {
    check_vae_options(o);
  } catch (const Error& e) {
    throw ConfigError(detail::cat(origin, ": ", e.what()));
  }
  return o;
}

// ---------------------------------------------------------------- modules

namespace vae_modules {

using torch::nn::Conv2d;
using torch::nn::Conv2dOptions;
using torch::nn::GroupNorm;
using torch::nn::GroupNormOptions;
using torch::nn::Linear;
using torch::nn::ModuleList;

GroupNorm vae_norm(int64_t groups, int64_t channels) {
  return GroupNorm(GroupNormOptions(groups, channels).eps(1e-6));
}

Conv2d conv3(int64_t in, int64_t out, int64_t stride = 1, int64_t padding = 1) {
  return detail::conv2d_layer(Conv2dOptions(in, out, 3).stride(stride).padding(padding));
}

class VaeResnetImpl : public torch::nn::Module {
 public:
  VaeResnetImpl(int64_t in, int64_t out, int64_t groups) {
    norm1 = register_module("norm1", vae_norm(groups, in));
    conv1 = register_module("conv1", conv3(in, out));
    norm2 = register_module("norm2", vae_norm(groups, out));
    conv2 = register_module("conv2", conv3(out, out));
    if (in != out)
      conv_shortcut =
          register_module("conv_shortcut", detail::conv2d_layer(Conv2dOptions(in, out, 1)));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = conv1->forward(at::silu(norm1->forward(x)));
    h = conv2->forward(at::silu(norm2->forward(h)));
    return conv_shortcut ? conv_shortcut->forward(x) + h : x + h;
  }
  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(VaeResnet);

// Single-head self-attention over the H*W positions with a residual (diffusers' Attention with
// group_norm, heads = 1, softmax in float32 for reduced precision).
class VaeAttentionImpl : public torch::nn::Module {
 public:
  VaeAttentionImpl(int64_t channels, int64_t groups) {
    group_norm = register_module("group_norm", vae_norm(groups, channels));
    to_q = register_module("to_q", detail::linear_layer(channels, channels));
    to_k = register_module("to_k", detail::linear_layer(channels, channels));
    to_v = register_module("to_v", detail::linear_layer(channels, channels));
    to_out = register_module("to_out", ModuleList());
    to_out->push_back(detail::linear_layer(channels, channels));
  }
  at::Tensor forward(const at::Tensor& x) {
    const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    at::Tensor t = group_norm->forward(x).reshape({b, c, h * w}).transpose(1, 2);
    at::Tensor q = to_q->forward(t), k = to_k->forward(t), v = to_v->forward(t);
    at::Tensor scores =
        at::baddbmm(at::empty({b, h * w, h * w}, q.options()), q, k.transpose(1, 2), /*beta=*/0.0,
                    /*alpha=*/1.0 / std::sqrt(static_cast<double>(c)));
    at::Tensor probs = scores.scalar_type() == at::kFloat || scores.scalar_type() == at::kDouble
                           ? at::softmax(scores, -1)
                           : at::softmax(scores, -1, at::kFloat).to(scores.scalar_type());
    at::Tensor out = to_out[0]->as<torch::nn::Linear>()->forward(at::bmm(probs, v));
    return out.transpose(1, 2).reshape({b, c, h, w}) + x;
  }
  GroupNorm group_norm{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  ModuleList to_out{nullptr};
};
TORCH_MODULE(VaeAttention);

// Downsample2D of diffusers' VAE (padding 0): zero-pad right and bottom by one, 3x3 stride 2.
class VaeDownsampleImpl : public torch::nn::Module {
 public:
  explicit VaeDownsampleImpl(int64_t c) { conv = register_module("conv", conv3(c, c, 2, 0)); }
  at::Tensor forward(const at::Tensor& x) {
    return conv->forward(at::constant_pad_nd(x, {0, 1, 0, 1}, 0.0));
  }
  Conv2d conv{nullptr};
};
TORCH_MODULE(VaeDownsample);

// Upsample2D: nearest-neighbour x2, then a 3x3 convolution.
class VaeUpsampleImpl : public torch::nn::Module {
 public:
  explicit VaeUpsampleImpl(int64_t c) { conv = register_module("conv", conv3(c, c)); }
  at::Tensor forward(const at::Tensor& x) {
    return conv->forward(at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)}));
  }
  Conv2d conv{nullptr};
};
TORCH_MODULE(VaeUpsample);

// One resolution level: resnets, then an optional resampler ("downsamplers.0" / "upsamplers.0").
class VaeLevelImpl : public torch::nn::Module {
 public:
  VaeLevelImpl(int64_t in, int64_t out, int64_t layers, int64_t groups, int resample) {
    resnets = register_module("resnets", ModuleList());
    for (int64_t i = 0; i < layers; ++i)
      resnets->push_back(VaeResnet(i == 0 ? in : out, out, groups));
    if (resample < 0) {
      down = VaeDownsample(out);
      register_module("downsamplers", ModuleList(down));
    } else if (resample > 0) {
      up = VaeUpsample(out);
      register_module("upsamplers", ModuleList(up));
    }
  }
  at::Tensor forward(at::Tensor x) {
    for (const auto& r : *resnets) x = r->as<VaeResnetImpl>()->forward(x);
    if (down) x = down->forward(x);
    if (up) x = up->forward(x);
    return x;
  }
  ModuleList resnets{nullptr};
  VaeDownsample down{nullptr};
  VaeUpsample up{nullptr};
};
TORCH_MODULE(VaeLevel);

class VaeMidImpl : public torch::nn::Module {
 public:
  VaeMidImpl(int64_t c, int64_t groups, bool attention) {
    resnets =
        register_module("resnets", ModuleList(VaeResnet(c, c, groups), VaeResnet(c, c, groups)));
    if (attention) {
      attn = VaeAttention(c, groups);
      register_module("attentions", ModuleList(attn));
    }
  }
  at::Tensor forward(at::Tensor x) {
    x = resnets[0]->as<VaeResnetImpl>()->forward(x);
    if (attn) x = attn->forward(x);
    return resnets[1]->as<VaeResnetImpl>()->forward(x);
  }
  ModuleList resnets{nullptr};
  VaeAttention attn{nullptr};
};
TORCH_MODULE(VaeMid);

}  // namespace vae_modules

using namespace vae_modules;  // NOLINT(google-build-using-namespace): this file's own modules

class VaeEncoderImpl : public torch::nn::Module {
 public:
  explicit VaeEncoderImpl(const AutoencoderKLOptions& o) {
    const auto& ch = o.block_out_channels();
    const int64_t g = o.norm_num_groups();
    conv_in = register_module("conv_in", conv3(o.in_channels(), ch[0]));
    down_blocks = register_module("down_blocks", ModuleList());
    for (size_t i = 0; i < ch.size(); ++i)
      down_blocks->push_back(VaeLevel(i == 0 ? ch[0] : ch[i - 1], ch[i], o.layers_per_block(), g,
                                      i + 1 < ch.size() ? -1 : 0));
    mid_block = register_module("mid_block", VaeMid(ch.back(), g, o.mid_block_add_attention()));
    conv_norm_out = register_module("conv_norm_out", vae_norm(g, ch.back()));
    conv_out = register_module("conv_out", conv3(ch.back(), 2 * o.latent_channels()));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = conv_in->forward(x);
    for (const auto& level : *down_blocks) h = level->as<VaeLevelImpl>()->forward(h);
    h = mid_block->forward(h);
    return conv_out->forward(at::silu(conv_norm_out->forward(h)));
  }
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  ModuleList down_blocks{nullptr};
  VaeMid mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};
};

class VaeDecoderImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderImpl(const AutoencoderKLOptions& o) {
    std::vector<int64_t> ch = o.block_out_channels();
    std::reverse(ch.begin(), ch.end());
    const int64_t g = o.norm_num_groups();
    conv_in = register_module("conv_in", conv3(o.latent_channels(), ch[0]));
    mid_block = register_module("mid_block", VaeMid(ch[0], g, o.mid_block_add_attention()));
    up_blocks = register_module("up_blocks", ModuleList());
    for (size_t i = 0; i < ch.size(); ++i)
      up_blocks->push_back(VaeLevel(i == 0 ? ch[0] : ch[i - 1], ch[i], o.layers_per_block() + 1, g,
                                    i + 1 < ch.size() ? 1 : 0));
    conv_norm_out = register_module("conv_norm_out", vae_norm(g, ch.back()));
    conv_out = register_module("conv_out", conv3(ch.back(), o.out_channels()));
  }
  at::Tensor forward(const at::Tensor& z) {
    at::Tensor h = mid_block->forward(conv_in->forward(z));
    for (const auto& level : *up_blocks) h = level->as<VaeLevelImpl>()->forward(h);
    return conv_out->forward(at::silu(conv_norm_out->forward(h)));
  }
  Conv2d conv_in{nullptr}, conv_out{nullptr};
  ModuleList up_blocks{nullptr};
  VaeMid mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};
};

AutoencoderKLImpl::AutoencoderKLImpl(AutoencoderKLOptions options) : options_(std::move(options)) {
  check_vae_options(options_);
  encoder = register_module("encoder", std::make_shared<VaeEncoderImpl>(options_));
  decoder = register_module("decoder", std::make_shared<VaeDecoderImpl>(options_));
  const int64_t l = options_.latent_channels();
  if (options_.use_quant_conv())
    quant_conv =
        register_module("quant_conv", detail::conv2d_layer(Conv2dOptions(2 * l, 2 * l, 1)));
  if (options_.use_post_quant_conv())
    post_quant_conv =
        register_module("post_quant_conv", detail::conv2d_layer(Conv2dOptions(l, l, 1)));
}

// ---------------------------------------------------------------- encode / decode

at::Tensor LatentDistribution::stddev() const { return at::exp(0.5 * logvar); }

at::Tensor LatentDistribution::sample(NoiseSource& noise) const {
  return mean + stddev() * noise.randn(mean.sizes(), mean.options());
}

namespace {

void check_images(const at::Tensor& x, int64_t channels, int64_t factor, const char* what,
                  const char* unit) {
  check(x.defined() && x.dim() == 4, "vae: ", what, " must be [B, C, H, W], got ",
        x.defined() ? detail::cat(x.sizes()) : std::string("an undefined tensor"));
  check(x.size(0) >= 1, "vae: ", what, " batch must not be empty");
  check(x.size(1) == channels, "vae: ", what, " must have ", channels, " channels, got ", x.size(1),
        " (shape ", x.sizes(), ")");
  check(x.size(2) >= 1 && x.size(3) >= 1 && x.size(2) % factor == 0 && x.size(3) % factor == 0,
        "vae: ", what, " side ", x.size(2), "x", x.size(3), " ", unit,
        " must be a positive multiple of ", factor);
  check(at::isFloatingType(x.scalar_type()), "vae: ", what, " must be floating point, got ",
        x.scalar_type());
}

struct Tiling {
  int64_t tile = 0, overlap = 0;
};

Tiling resolve_tiling(const VaeTiling& t, int64_t factor) {
  if (t.tile == 0) return {};
  check(t.tile > 0 && t.tile % factor == 0, "vae: tile ", t.tile,
        " must be 0 (no tiling) or a positive multiple of the downscale factor ", factor);
  int64_t overlap = t.overlap;
  if (overlap < 0) overlap = (t.tile / 4) / factor * factor;
  check(overlap % factor == 0 && overlap < t.tile, "vae: tile overlap ", t.overlap,
        " must be a multiple of the downscale factor ", factor, " and less than the tile ", t.tile);
  return {t.tile, overlap};
}

}  // namespace

at::Tensor AutoencoderKLImpl::moments(const at::Tensor& images) {
  at::Tensor h = encoder->forward(images);
  return quant_conv ? quant_conv->as<torch::nn::Conv2d>()->forward(h) : h;
}

LatentDistribution AutoencoderKLImpl::encode_distribution(const at::Tensor& images,
                                                          const VaeTiling& tiling) {
  const int64_t f = options_.downscale();
  check_images(images, options_.in_channels(), f, "images", "pixels");
  const at::Tensor& p = encoder->conv_in->weight;
  const at::Tensor x = images.to(p.device(), p.scalar_type());
  const Tiling t = resolve_tiling(tiling, f);
  at::Tensor m = t.tile == 0
                     ? moments(x)
                     : detail::tiled_apply(x, t.tile / f * f, t.overlap, 1, f,
                                           [&](const at::Tensor& tile) { return moments(tile); });
  auto parts = m.to(at::kFloat).chunk(2, 1);
  return {parts[0], at::clamp(parts[1], -30.0, 20.0)};
}

at::Tensor AutoencoderKLImpl::scale_latents(const at::Tensor& z) const {
  return (z - options_.shift_factor()) * options_.scaling_factor();
}

at::Tensor AutoencoderKLImpl::unscale_latents(const at::Tensor& latents) const {
  return latents / options_.scaling_factor() + options_.shift_factor();
}

at::Tensor AutoencoderKLImpl::encode(const at::Tensor& images, NoiseSource* noise,
                                     const VaeTiling& tiling) {
  LatentDistribution d = encode_distribution(images, tiling);
  return scale_latents(noise ? d.sample(*noise) : d.mode());
}

at::Tensor AutoencoderKLImpl::decode_unscaled(const at::Tensor& z) {
  at::Tensor h = post_quant_conv ? post_quant_conv->as<torch::nn::Conv2d>()->forward(z) : z;
  return decoder->forward(h);
}

at::Tensor AutoencoderKLImpl::decode_tile(const at::Tensor& z, VaeDecodeReport& report) {
  ++report.tiles;
  at::Tensor out = decode_unscaled(z);
  if (out.scalar_type() == at::kFloat || out.scalar_type() == at::kDouble ||
      at::isfinite(out).all().item<bool>())
    return out;
  if (!float32_copy_) {
    float32_copy_ = std::make_shared<AutoencoderKLImpl>(options_);
    torch::NoGradGuard no_grad;
    auto src = named_parameters(true);
    for (auto& kv : float32_copy_->named_parameters(true))
      kv.value().copy_(src[kv.key()].to(at::kFloat));
    float32_copy_->to(z.device());
    float32_copy_->train(is_training());
  }
  ++report.float32_fallbacks;
  spdlog::warn(
      "vae: the {} decode of tile {} ({}x{} latent cells) is not finite (overflow); decoded it "
      "again in float32",
      c10::toString(out.scalar_type()), report.tiles, z.size(2), z.size(3));
  return float32_copy_->decode_unscaled(z.to(at::kFloat));  // float32
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& latents, const VaeTiling& tiling,
                                     VaeDecodeReport* report) {
  check_images(latents, options_.latent_channels(), 1, "latents", "cells");
  const int64_t f = options_.downscale();
  const at::Tensor& p = decoder->conv_in->weight;
  const at::Tensor z = unscale_latents(latents.to(p.device(), p.scalar_type()));
  VaeDecodeReport local;
  VaeDecodeReport& r = report ? *report : local;
  const Tiling t = resolve_tiling(tiling, f);
  if (t.tile == 0) return decode_tile(z, r).to(at::kFloat);
  return detail::tiled_apply(z, t.tile / f, t.overlap / f, f, 1,
                             [&](const at::Tensor& tile) { return decode_tile(tile, r); });
}

namespace detail {

namespace {

std::vector<int64_t> tile_starts(int64_t length, int64_t tile, int64_t overlap) {
  if (length <= tile) return {0};
  std::vector<int64_t> starts;
  for (int64_t s = 0;; s += tile - overlap) {
    if (s + tile >= length) {
      starts.push_back(length - tile);
      break;
    }
    starts.push_back(s);
  }
  return starts;
}

// Blend weights along one axis of a tile [start, start + size) of an axis of `length`: a linear
// ramp over `overlap` cells on each side that has a neighbour, 1 elsewhere.
at::Tensor ramp(int64_t start, int64_t size, int64_t length, int64_t overlap) {
  std::vector<float> w(static_cast<size_t>(size), 1.0f);
  for (int64_t k = 0; k < overlap && k < size; ++k) {
    const float v = static_cast<float>(k + 1) / static_cast<float>(overlap + 1);
    if (start > 0) w[k] = std::min(w[k], v);
    if (start + size < length) w[size - 1 - k] = std::min(w[size - 1 - k], v);
  }
  return at::tensor(w, at::kFloat);
}

}  // namespace

at::Tensor tiled_apply(const at::Tensor& input, int64_t tile, int64_t overlap, int64_t up,
                       int64_t down, const std::function<at::Tensor(const at::Tensor&)>& fn) {
  check(tile > 0 && overlap >= 0 && overlap < tile, "tiled_apply: tile ", tile, ", overlap ",
        overlap);
  const int64_t h = input.size(2), w = input.size(3);
  if (h <= tile && w <= tile) return fn(input);
  auto out_len = [&](int64_t n) { return n * up / down; };
  const std::vector<int64_t> ys = tile_starts(h, tile, overlap), xs = tile_starts(w, tile, overlap);
  at::Tensor acc, weight;
  for (int64_t y0 : ys) {
    for (int64_t x0 : xs) {
      const int64_t th = std::min(tile, h), tw = std::min(tile, w);
      at::Tensor piece = fn(input.narrow(2, y0, th).narrow(3, x0, tw));
      const int64_t oy = out_len(y0), ox = out_len(x0), oh = out_len(th), ow = out_len(tw);
      check(piece.dim() == 4 && piece.size(2) == oh && piece.size(3) == ow,
            "tiled_apply: a tile's output has shape ", piece.sizes(), ", expected side ", oh, "x",
            ow);
      if (!acc.defined()) {
        acc = at::zeros({piece.size(0), piece.size(1), out_len(h), out_len(w)},
                        piece.options().dtype(at::kFloat));
        weight = at::zeros({out_len(h), out_len(w)}, piece.options().dtype(at::kFloat));
      }
      const int64_t ov = out_len(overlap);
      at::Tensor wt =
          at::outer(ramp(oy, oh, out_len(h), ov), ramp(ox, ow, out_len(w), ov)).to(piece.device());
      acc.narrow(2, oy, oh).narrow(3, ox, ow).add_(piece.to(at::kFloat) * wt);
      weight.narrow(0, oy, oh).narrow(1, ox, ow).add_(wt);
    }
  }
  return acc.div_(weight);
}

}  // namespace detail

// ---------------------------------------------------------------- names and loading

std::map<std::string, at::Tensor> vae_state_dict(AutoencoderKL& vae) {
  std::map<std::string, at::Tensor> out;
  for (const auto& kv : vae->named_parameters(true)) out.emplace(kv.key(), kv.value().detach());
  return out;
}

namespace {

// "a.b.c" -> {"a", "b", "c"}
std::vector<std::string> dotted(const std::string& s) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : s) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

std::string undotted(const std::vector<std::string>& parts, size_t from = 0) {
  std::string s;
  for (size_t i = from; i < parts.size(); ++i) s += (i > from ? "." : "") + parts[i];
  return s;
}

// The ldm name of a mid-block part: resnets.0/1 -> block_1/2; attentions.0.x -> attn_1.x'.
std::string ldm_mid(const std::vector<std::string>& p, size_t i) {
  // p[i] = "resnets" | "attentions", p[i+1] = index, rest = parameter path
  if (p.size() < i + 3) return "";
  if (p[i] == "resnets") {
    const std::string tail = undotted(p, i + 2);
    std::string t = tail;
    if (t.rfind("conv_shortcut.", 0) == 0) t = "nin_shortcut." + t.substr(14);
    return (p[i + 1] == "0" ? "mid.block_1." : "mid.block_2.") + t;
  }
  if (p[i] == "attentions") {
    const std::string part = p[i + 2];
    static const std::map<std::string, std::string> kAttn = {
        {"group_norm", "norm"}, {"to_q", "q"}, {"to_k", "k"}, {"to_v", "v"}};
    if (part == "to_out" && p.size() == i + 5) return "mid.attn_1.proj_out." + p[i + 4];
    auto it = kAttn.find(part);
    if (it == kAttn.end() || p.size() != i + 4) return "";
    return "mid.attn_1." + it->second + "." + p[i + 3];
  }
  return "";
}

std::string resnet_tail(const std::string& tail) {
  if (tail.rfind("conv_shortcut.", 0) == 0) return "nin_shortcut." + tail.substr(14);
  return tail;
}

}  // namespace

std::string vae_ldm_name(const std::string& name, int64_t levels) {
  const std::vector<std::string> p = dotted(name);
  if (p.size() < 2) return "";
  if (p[0] == "quant_conv" || p[0] == "post_quant_conv") return name;
  if (p[0] != "encoder" && p[0] != "decoder") return "";
  const std::string& part = p[1];
  const std::string prefix = p[0] + ".";
  if (part == "conv_in" || part == "conv_out") return name;
  if (part == "conv_norm_out") return prefix + "norm_out." + undotted(p, 2);
  if (part == "mid_block") {
    const std::string m = ldm_mid(p, 2);
    return m.empty() ? "" : prefix + m;
  }
  if ((part == "down_blocks" || part == "up_blocks") && p.size() >= 5) {
    int64_t level = 0;
    try {
      level = std::stoll(p[2]);
    } catch (const std::exception&) {
      return "";
    }
    const bool up = part == "up_blocks";
    const std::string ldm_level = std::to_string(up ? levels - 1 - level : level);
    const std::string head = prefix + (up ? "up." : "down.") + ldm_level + ".";
    if (p[3] == "resnets" && p.size() >= 6)
      return head + "block." + p[4] + "." + resnet_tail(undotted(p, 5));
    if ((p[3] == "downsamplers" || p[3] == "upsamplers") && p[4] == "0" && p.size() >= 6)
      return head + (up ? "upsample." : "downsample.") + undotted(p, 5);
  }
  return "";
}

std::string vae_legacy_name(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> kRenames = {
      {".to_q.", ".query."},
      {".to_k.", ".key."},
      {".to_v.", ".value."},
      {".to_out.0.", ".proj_attn."}};
  if (name.find(".attentions.") == std::string::npos) return "";
  for (const auto& [now, before] : kRenames) {
    const size_t at = name.find(now);
    if (at != std::string::npos) return name.substr(0, at) + before + name.substr(at + now.size());
  }
  return "";
}

namespace {

// The checks of load_vae_state_dict; the (our name, file tensor, reshaped to ours) pairs to set.
std::map<std::string, at::Tensor> match_vae_state_dict(AutoencoderKL& vae,
                                                       const std::map<std::string, at::Tensor>& sd,
                                                       const std::string& origin) {
  std::map<std::string, at::Tensor> targets = vae_state_dict(vae);
  const int64_t levels = static_cast<int64_t>(vae->options().block_out_channels().size());
  const std::string kPrefix = "first_stage_model.";
  bool prefixed = false;
  for (const auto& kv : sd)
    if (kv.first.rfind(kPrefix, 0) == 0) prefixed = true;
  // Candidate file names of every target, in each naming; the file's naming is the one that
  // names the most targets.
  std::map<std::string, std::string> by_file_name;  // file key -> our name
  for (const auto& kv : targets) {
    const std::string& ours = kv.first;
    const std::string ldm = vae_ldm_name(ours, levels);
    const std::string legacy = vae_legacy_name(ours);
    const std::string p = prefixed ? kPrefix : "";
    for (const std::string& cand : {ours, legacy, ldm})
      if (!cand.empty()) by_file_name.emplace(p + detail::strip_wrapper_prefixes(cand), ours);
  }
  std::map<std::string, std::pair<std::string, at::Tensor>> found;
  detail::StateDictProblems pr;
  for (const auto& [key, value] : sd) {
    if (prefixed && key.rfind(kPrefix, 0) != 0)
      continue;  // the UNet / text encoder of a checkpoint
    auto it = by_file_name.find(prefixed ? key : detail::strip_wrapper_prefixes(key));
    if (it == by_file_name.end()) {
      pr.unexpected.push_back(key);
      continue;
    }
    if (found.count(it->second)) {
      pr.duplicated.push_back(key + " (also " + found[it->second].first + ")");
      continue;
    }
    found[it->second] = {key, value};
  }
  for (const auto& [name, target] : targets) {
    auto it = found.find(name);
    if (it == found.end()) {
      pr.missing.push_back(name);
      continue;
    }
    at::Tensor v = it->second.second;
    if (!v.defined() || !at::isFloatingType(v.scalar_type())) {
      pr.bad_dtype.push_back(detail::cat(
          it->second.first, " (", v.defined() ? c10::toString(v.scalar_type()) : "undefined", ")"));
      continue;
    }
    // ldm's attention projections are 1x1 convolutions.
    if (target.dim() == 2 && v.dim() == 4 && v.size(2) == 1 && v.size(3) == 1)
      v = v.reshape({v.size(0), v.size(1)});
    if (v.sizes() != target.sizes()) {
      pr.mismatched.push_back(
          detail::cat(it->second.first, " ", v.sizes(), " vs model ", target.sizes()));
      continue;
    }
    it->second.second = v;
  }
  std::string problems = pr.text("duplicated (under two namings)");
  if (problems.empty() && found.empty()) problems = "no VAE tensor found";
  if (!problems.empty())
    throw ConfigError(detail::cat(
        origin, ": the VAE weights do not fit the architecture (", levels,
        " levels, block_out_channels ", channels_text(vae->options().block_out_channels()),
        ", latent_channels ", vae->options().latent_channels(), "): ", problems));
  std::map<std::string, at::Tensor> matched;
  for (auto& [name, kv] : found) matched.emplace(name, std::move(kv.second));
  return matched;
}

}  // namespace

void load_vae_state_dict(AutoencoderKL& vae, const std::map<std::string, at::Tensor>& sd,
                         const std::string& origin) {
  const std::map<std::string, at::Tensor> matched = match_vae_state_dict(vae, sd, origin);
  std::map<std::string, at::Tensor> targets = vae_state_dict(vae);
  torch::NoGradGuard no_grad;
  for (const auto& [name, value] : matched) targets.at(name).copy_(value);
}

namespace {

const char* const kVaeMetadataKey = "diffuse_vae";

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check_io(in.good(), path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

AutoencoderKL load_vae(const std::string& path, const LoadVaeOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  check_io(fs::exists(path, ec), path,
           ": no such file or folder (a VAE is a diffusers folder with "
           "config.json and diffusion_pytorch_model.safetensors, or a .safetensors file)");
  AutoencoderKLOptions o;
  std::string weights = path;
  SafetensorsFile file;
  if (fs::is_directory(path, ec)) {
    fs::path dir = path;
    if (!fs::exists(dir / "config.json") && fs::exists(dir / "vae" / "config.json")) dir /= "vae";
    const fs::path config = dir / "config.json";
    check_io(fs::exists(config), path, ": a VAE folder needs config.json (diffusers format)");
    o = vae_options_from_diffusers_config(read_text_file(config.string()), config.string());
    weights = (dir / "diffusion_pytorch_model.safetensors").string();
    if (!fs::exists(weights) && fs::exists(dir / "diffusion_pytorch_model.fp16.safetensors"))
      weights = (dir / "diffusion_pytorch_model.fp16.safetensors").string();
    check_io(fs::exists(weights), dir.string(),
             ": no diffusion_pytorch_model.safetensors (the .bin form is a Python pickle: convert "
             "it with scripts/convert_checkpoint.py)");
    file = read_safetensors(weights);
  } else {
    // Only the VAE part of a single-file checkpoint is copied into memory.
    file = read_safetensors(path, [](const std::string& k) {
      return k.rfind("first_stage_model.", 0) == 0 || k.rfind("encoder.", 0) == 0 ||
             k.rfind("decoder.", 0) == 0 || k.rfind("quant_conv.", 0) == 0 ||
             k.rfind("post_quant_conv.", 0) == 0;
    });
    auto it = file.metadata.find(kVaeMetadataKey);
    if (it != file.metadata.end()) {
      try {
        o = vae_options_from_config(parse_config(it->second));
      } catch (const Error& e) {
        throw ConfigError(detail::cat(path, ": metadata '", kVaeMetadataKey, "': ", e.what()));
      }
    } else {
      o = vae_preset(options.preset);
    }
  }
  if (options.scaling_factor) {
    o.scaling_factor(*options.scaling_factor);
    check_vae_options(o);
  }
  // Built without initial weights: the strict match below finds every one (or throws, and the
  // model is dropped).
  AutoencoderKL vae = [&] {
    const detail::UnloadedScope unloaded;
    return AutoencoderKL(o);
  }();
  {
    // The file's tensors become the VAE's where they can (no second copy while loading).
    std::map<std::string, at::Tensor> matched = match_vae_state_dict(vae, file.tensors, weights);
    file.tensors.clear();
    std::vector<std::pair<at::Tensor, at::Tensor>> work;
    for (const auto& kv : vae->named_parameters(true))
      work.emplace_back(kv.value(), std::move(matched.at(kv.key())));
    detail::adopt_or_copy(work);
  }
  vae->eval();
  return vae;
}

void save_vae(const std::string& path, AutoencoderKL& vae,
              std::map<std::string, std::string> metadata) {
  check(!metadata.count(kVaeMetadataKey), "save_vae: metadata key '", kVaeMetadataKey,
        "' is reserved for the architecture");
  metadata[kVaeMetadataKey] = format_config(vae_to_config(vae->options()));
  write_safetensors(path, vae_state_dict(vae), metadata);
}

}  // namespace diffuse
