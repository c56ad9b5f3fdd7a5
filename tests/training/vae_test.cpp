// SPDX-License-Identifier: Apache-2.0
// AutoencoderKL: parity with diffusers' AutoencoderKL and CompVis/ldm's encoder/decoder (random
// weights, fixtures of tests/reference/latent_models.py), the name mapping of the real
// checkpoints' key lists, tiling, the float32 fallback of reduced-precision decodes, bad input.
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <diffuse/noise.h>
#include <diffuse/training/safetensors.h>
#include <diffuse/training/vae.h>

#include "../test_util.h"
#include "latent_fixtures.h"
#include "temp_dir.h"

namespace diffuse {
namespace {

using test::latent_fixture;
using test::read_key_list;
using test::relative_error;
using testing::fixture_path;

// Replays a recorded tensor as the "noise" of a posterior sample.
class RecordedNoise : public NoiseSource {
 public:
  explicit RecordedNoise(at::Tensor t) : t_(std::move(t)) {}
  at::Tensor randn(c10::IntArrayRef shape, const c10::TensorOptions& options) override {
    EXPECT_EQ(shape, t_.sizes());
    return t_.to(options);
  }

 private:
  at::Tensor t_;
};

void expect_vae_parity(AutoencoderKL vae, const std::string& io_file) {
  const SafetensorsFile io = read_safetensors(latent_fixture(io_file));
  torch::NoGradGuard no_grad;
  const LatentDistribution d = vae->encode_distribution(io.tensors.at("image"));
  EXPECT_LT(relative_error(d.mean, io.tensors.at("mean")), 1e-5) << io_file;
  EXPECT_LT(relative_error(d.logvar, io.tensors.at("logvar")), 1e-5) << io_file;
  RecordedNoise noise(io.tensors.at("noise"));
  EXPECT_LT(relative_error(d.sample(noise), io.tensors.at("sample")), 1e-5) << io_file;
  // decode_unscaled is the decoder of the references; decode() applies the latent scaling first.
  EXPECT_LT(relative_error(vae->decode_unscaled(io.tensors.at("latent")), io.tensors.at("decoded")),
            1e-5)
      << io_file;
  const at::Tensor scaled = vae->scale_latents(io.tensors.at("latent"));
  EXPECT_LT(relative_error(vae->decode(scaled), io.tensors.at("decoded")), 1e-5) << io_file;
  EXPECT_LT(relative_error(vae->encode(io.tensors.at("image")),
                           (io.tensors.at("mean") - vae->options().shift_factor()) *
                               vae->options().scaling_factor()),
            1e-5);
}

TEST(Vae, MatchesDiffusersAutoencoderKL) {
  AutoencoderKL vae = load_vae(latent_fixture("vae_tiny"));
  EXPECT_EQ(vae->options().block_out_channels(), (std::vector<int64_t>{8, 16, 16}));
  EXPECT_EQ(vae->options().norm_num_groups(), 4);
  EXPECT_DOUBLE_EQ(vae->options().scaling_factor(), 0.18215);
  expect_vae_parity(vae, "vae_tiny_io.safetensors");
}

TEST(Vae, MatchesDiffusersWithoutQuantConvsAndWithShift) {
  AutoencoderKL vae = load_vae(latent_fixture("vae_tiny_sd3"));
  EXPECT_FALSE(vae->options().use_quant_conv());
  EXPECT_EQ(vae->quant_conv, nullptr);
  EXPECT_EQ(vae->options().latent_channels(), 16);
  EXPECT_DOUBLE_EQ(vae->options().shift_factor(), 0.0609);
  expect_vae_parity(vae, "vae_tiny_sd3_io.safetensors");
}

TEST(Vae, MatchesCompVisLdmNamesOfASingleFileCheckpoint) {
  // The ldm fixture's architecture: ch 32, ch_mult 1,1, one ResNet block per level, 32 GroupNorm
  // groups (hard-coded in ldm).
  AutoencoderKLOptions arch;
  arch.block_out_channels({32, 32}).norm_num_groups(32).layers_per_block(1);
  AutoencoderKL vae(arch);
  const SafetensorsFile f = read_safetensors(latent_fixture("vae_tiny_ldm.safetensors"));
  ASSERT_TRUE(f.tensors.count("first_stage_model.encoder.down.0.block.0.conv1.weight"));
  load_vae_state_dict(vae, f.tensors, "vae_tiny_ldm.safetensors");
  vae->eval();
  expect_vae_parity(vae, "vae_tiny_ldm_io.safetensors");
}

// ldm's attention projections are 1x1 convolutions where diffusers has linear layers.
std::vector<int64_t> as_linear_if(std::vector<int64_t> s, size_t our_dims) {
  if (our_dims == 2 && s.size() == 4 && s[2] == 1 && s[3] == 1) s.resize(2);
  return s;
}

TEST(Vae, MapsEveryKeyOfTheRealStableDiffusionVae) {
  AutoencoderKL vae(vae_preset("sd"));
  const auto ours = vae_state_dict(vae);
  const auto diffusers_keys = read_key_list("sd_vae_diffusers_keys.txt");
  const auto ldm_keys = read_key_list("sd_vae_ldm_keys.txt");
  ASSERT_EQ(ours.size(), diffusers_keys.size());
  ASSERT_EQ(ours.size(), ldm_keys.size());
  int64_t params = 0;
  std::set<std::string> ldm_seen;
  for (const auto& [name, t] : ours) {
    params += t.numel();
    const std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
    ASSERT_TRUE(diffusers_keys.count(name)) << name;
    EXPECT_EQ(diffusers_keys.at(name), shape) << name;
    const std::string ldm = "first_stage_model." + vae_ldm_name(name, 4);
    ASSERT_TRUE(ldm_keys.count(ldm)) << name << " -> " << ldm;
    EXPECT_EQ(as_linear_if(ldm_keys.at(ldm), shape.size()), shape) << ldm;
    EXPECT_TRUE(ldm_seen.insert(ldm).second) << "two names map to " << ldm;
  }
  EXPECT_EQ(params, 83653863);  // diffusers AutoencoderKL (sd-vae-ft-ema config)
  // Loading under each naming (zeros of the listed shapes) succeeds strictly.
  for (const auto* keys : {&diffusers_keys, &ldm_keys}) {
    std::map<std::string, at::Tensor> sd;
    for (const auto& [k, s] : *keys) sd[k] = at::zeros(s);
    EXPECT_NO_THROW(load_vae_state_dict(vae, sd, "key list"));
  }
}

TEST(Vae, LoadsTheOlderDiffusersAttentionNames) {
  AutoencoderKL a = load_vae(latent_fixture("vae_tiny"));
  std::map<std::string, at::Tensor> legacy;
  for (const auto& [k, v] : vae_state_dict(a)) {
    const std::string old = vae_legacy_name(k);
    legacy[old.empty() ? k : old] = v.clone();
  }
  ASSERT_TRUE(legacy.count("encoder.mid_block.attentions.0.query.weight"));
  ASSERT_TRUE(legacy.count("decoder.mid_block.attentions.0.proj_attn.bias"));
  AutoencoderKL b(a->options());
  load_vae_state_dict(b, legacy, "legacy");
  for (const auto& [k, v] : vae_state_dict(b)) EXPECT_TRUE(v.equal(vae_state_dict(a).at(k))) << k;
}

TEST(Vae, LoadErrorsListMissingUnexpectedAndMisshapedTensors) {
  AutoencoderKL vae(vae_preset("tiny"));
  std::map<std::string, at::Tensor> sd = vae_state_dict(vae);
  sd.erase("decoder.conv_out.bias");
  sd["encoder.extra.weight"] = at::zeros({1});
  sd["encoder.conv_in.weight"] = at::zeros({5, 3, 3, 3});
  const std::string msg =
      testing::error_of([&] { load_vae_state_dict(vae, sd, "bad.safetensors"); });
  EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 missing: decoder.conv_out.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 unexpected: encoder.extra.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("encoder.conv_in.weight [5, 3, 3, 3] vs model [32, 3, 3, 3]"),
            std::string::npos)
      << msg;
}

TEST(Vae, SaveAndLoadRoundTripWithTheArchitectureInTheMetadata) {
  test::TempDir dir("vae_roundtrip");
  AutoencoderKLOptions o = vae_preset("tiny");
  o.scaling_factor(0.5).shift_factor(0.25).mid_block_add_attention(false);
  AutoencoderKL vae(o);
  save_vae(dir / "v.safetensors", vae);
  AutoencoderKL back = load_vae(dir / "v.safetensors");
  EXPECT_EQ(format_config(vae_to_config(back->options())), format_config(vae_to_config(o)));
  for (const auto& [k, v] : vae_state_dict(back))
    EXPECT_TRUE(v.equal(vae_state_dict(vae).at(k))) << k;
  // load_vae builds the modules without initial weights and takes the file's tensors over: each
  // parameter its own memory, still a trainable parameter, the same forward.
  std::set<const void*> seen;
  for (const auto& kv : back->named_parameters(true)) {
    EXPECT_TRUE(seen.insert(kv.value().data_ptr()).second) << kv.key() << " shares memory";
    EXPECT_TRUE(kv.value().requires_grad()) << kv.key();
    EXPECT_EQ(kv.value().scalar_type(), at::kFloat) << kv.key();
  }
  torch::NoGradGuard no_grad;
  const at::Tensor z = at::sin(at::arange(2 * 4 * 4 * 4, at::kFloat) * 0.3).reshape({2, 4, 4, 4});
  EXPECT_TRUE(at::equal(back->decode(z), vae->decode(z)));
}

TEST(Vae, DiffusersConfigErrorsNameTheKey) {
  EXPECT_ERROR_NAMING(vae_options_from_diffusers_config("{\"act_fn\": \"relu\"}", "c.json"),
                      "\"act_fn\" must be \"silu\"");
  EXPECT_ERROR_NAMING(
      vae_options_from_diffusers_config("{\"down_block_types\": [\"CrossAttnDownBlock2D\"]}", "c"),
      "CrossAttnDownBlock2D");
  EXPECT_ERROR_NAMING(vae_options_from_diffusers_config("{\"layers_per_block\": 2.5}", "c"),
                      "\"layers_per_block\" must be an integer");
  EXPECT_ERROR_NAMING(vae_options_from_diffusers_config("{\"block_out_channels\": [48]}", "c"),
                      "block_out_channels value 48");
  EXPECT_ERROR_NAMING(vae_options_from_diffusers_config("{\"frobnicate\": 1}", "c"), "frobnicate");
  EXPECT_ERROR_NAMING(vae_options_from_diffusers_config("{", "c.json"), "c.json: not valid JSON");
  EXPECT_ERROR_NAMING(vae_preset("sd4"), "unknown preset 'sd4'");
}

TEST(Vae, BadImagesAndLatentsAreErrorsNamingTheShape) {
  AutoencoderKL vae(vae_preset("tiny"));
  torch::NoGradGuard no_grad;
  EXPECT_ERROR_NAMING(vae->encode(at::zeros({1, 4, 8, 8})), "must have 3 channels, got 4");
  EXPECT_ERROR_NAMING(vae->encode(at::zeros({1, 3, 9, 8})), "side 9x8 pixels");
  EXPECT_ERROR_NAMING(vae->encode(at::zeros({3, 8, 8})), "must be [B, C, H, W]");
  EXPECT_ERROR_NAMING(vae->decode(at::zeros({1, 3, 4, 4})), "must have 4 channels, got 3");
  VaeTiling t;
  t.tile = 13;
  EXPECT_ERROR_NAMING(vae->decode(at::zeros({1, 4, 4, 4}), t), "tile 13");
  t.tile = 16;
  t.overlap = 16;
  EXPECT_ERROR_NAMING(vae->decode(at::zeros({1, 4, 4, 4}), t), "overlap 16");
}

TEST(Vae, TiledApplyReproducesPointwiseFunctionsExactly) {
  const at::Tensor x = at::randn({2, 3, 37, 53}, at::kDouble);
  const auto f = [](const at::Tensor& t) { return (t * 3 + 1).to(at::kFloat); };
  for (int64_t tile : {8, 16, 40}) {
    for (int64_t overlap : {0, 3, 7}) {
      const at::Tensor y = detail::tiled_apply(x, tile, overlap, 1, 1, f);
      EXPECT_LT((y - f(x)).abs().max().item<double>(), 1e-5) << tile << " " << overlap;
    }
  }
  // Spatially scaled outputs (a decoder's x8): nearest upsampling is pointwise per output pixel.
  const at::Tensor z = at::randn({1, 2, 12, 20});
  const auto up = [](const at::Tensor& t) {
    return at::upsample_nearest2d(t, {t.size(2) * 8, t.size(3) * 8});
  };
  EXPECT_LT((detail::tiled_apply(z, 8, 2, 8, 1, up) - up(z)).abs().max().item<double>(), 1e-6);
  const auto down = [](const at::Tensor& t) { return at::avg_pool2d(t, {8, 8}); };
  const at::Tensor big = at::randn({1, 2, 96, 160});
  EXPECT_LT((detail::tiled_apply(big, 64, 16, 1, 8, down) - down(big)).abs().max().item<double>(),
            1e-6);
}

TEST(Vae, TiledDecodeIsCloseAwayFromTheSeamsAndBoundedAtThem) {
  // Without mid-block attention the decoder is local except for its GroupNorm statistics, which a
  // stationary latent makes nearly the same in every tile; then the tiled decode must agree with
  // the whole-image one far from the tiles' borders, and stay bounded where tiles meet.
  torch::manual_seed(3);
  AutoencoderKLOptions o = vae_preset("tiny");
  o.mid_block_add_attention(false);
  AutoencoderKL vae(o);
  torch::NoGradGuard no_grad;
  const at::Tensor latents = at::randn({1, 4, 48, 48});
  const at::Tensor whole = vae->decode(latents);
  VaeTiling t;
  t.tile = 48;  // pixels = 24 latent cells; overlap 12 pixels = 6 cells
  VaeDecodeReport report;
  const at::Tensor tiled = vae->decode(latents, t, &report);
  EXPECT_EQ(report.tiles, 9);  // starts 0, 18, 24 latent cells per axis
  ASSERT_EQ(tiled.sizes(), whole.sizes());
  const double scale = whole.abs().max().item<double>();
  const at::Tensor err = (tiled - whole).abs();
  // Away from every tile border (the first tile's interior: pixels [0, 20) of both axes; the next
  // tile starts at 36).
  const double interior = err.narrow(2, 0, 20).narrow(3, 0, 20).max().item<double>() / scale;
  const double overall = err.max().item<double>() / scale;
  EXPECT_LT(interior, 0.05) << "interior " << interior << ", overall " << overall;
  EXPECT_LT(overall, 0.5) << overall;
  EXPECT_LT(interior, overall);
}

TEST(Vae, ReducedPrecisionDecodeThatOverflowsIsRedoneInFloat32) {
  // A decoder whose every output is 3.3895e38 + 1e36 = 3.3995e38: finite in float32 (largest
  // 3.4028e38), beyond bfloat16's range (largest 3.3895e38, next step 1.3e36), so the bfloat16
  // decode overflows to infinity as SD-XL's VAE does in float16 on a GPU (CPU LibTorch 1.13 has
  // no float16 convolution; scripts/gpu-check runs the float16 case).
  AutoencoderKLOptions o = vae_preset("tiny");
  o.scaling_factor(1.0);
  AutoencoderKL vae(o);
  {
    torch::NoGradGuard no_grad;
    auto p = vae->named_parameters(true);
    p["decoder.conv_norm_out.weight"].zero_();  // the normalised features become 1 everywhere
    p["decoder.conv_norm_out.bias"].fill_(1.0f);
    at::Tensor w = p["decoder.conv_out.weight"];  // [3, 32, 3, 3]; centre taps only
    w.zero_();
    w.select(3, 1).select(2, 1).fill_(1e36f / (32.0f * 0.7310586f));  // silu(1) = 0.7310586
    p["decoder.conv_out.bias"].fill_(3.3895313892515355e38f);         // bfloat16's largest, exact
  }
  const at::Tensor latents = at::randn({2, 4, 4, 4});
  torch::NoGradGuard no_grad;
  const at::Tensor reference = vae->decode(latents);
  ASSERT_TRUE(at::isfinite(reference).all().item<bool>());
  EXPECT_NEAR(reference.min().item<double>() / 3.3995e38, 1.0, 1e-4);
  vae->to(at::kBFloat16);
  const at::Tensor raw = vae->decode_unscaled(latents.to(at::kBFloat16));
  ASSERT_FALSE(at::isfinite(raw).any().item<bool>()) << "the bfloat16 decode should overflow";
  VaeDecodeReport report;
  const at::Tensor out = vae->decode(latents, {}, &report);
  EXPECT_EQ(report.tiles, 1);
  EXPECT_EQ(report.float32_fallbacks, 1);
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  EXPECT_LT(relative_error(out, reference), 1e-3);
  // Tiled: every tile overflows and is redone.
  VaeTiling t;
  t.tile = 8;  // pixels: 4 latent cells (the tiny VAE downscales by 2), overlap 2 cells
  t.overlap = 4;
  VaeDecodeReport tiled_report;
  const at::Tensor tiled = vae->decode(at::randn({1, 4, 6, 6}), t, &tiled_report);
  EXPECT_EQ(tiled_report.tiles, 4);
  EXPECT_EQ(tiled_report.float32_fallbacks, 4);
  EXPECT_TRUE(at::isfinite(tiled).all().item<bool>());
}

}  // namespace
}  // namespace diffuse
