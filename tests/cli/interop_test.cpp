// SPDX-License-Identifier: Apache-2.0
// `diffuse sample` / `diffuse export` with other model formats: a TorchScript module exported from
// PyTorch (tests/training/fixtures/tiny_eps.pt, card in its diffuse_card attribute), modules of
// the wrong shape or signature, safetensors written by `diffuse export`.
#include "cli/cli_test_util.h"
#include "test_util.h"

#include <torch/script.h>
#include <torch/serialize.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include <diffuse/training/data.h>
#include <diffuse/training/image.h>
#include <diffuse/training/vae.h>

namespace {

using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;

using diffuse::testing::fixture_path;

void save_script(const std::string& path, const std::string& source) {
  torch::jit::Module m("m");
  m.define(source);
  m.save(path);
}

TEST(CliInterop, TorchScriptFromPyTorchSamples) {
  const std::string dir = cli_test_dir("interop_ts");
  auto r = run_cli({"sample", "--model", fixture_path("tiny_eps.pt"), "--steps", "3", "-n", "8",
                    "--save-tensor", "x.pt", "-o", "ts.png"},
                   dir);
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor x;
  torch::load(x, dir + "/x.pt");
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{8, 1, 8, 8}));  // sample_shape from the module's card
  EXPECT_TRUE(at::isfinite(x).all().item<bool>());
  // --model-card replaces the module's own card: an unconditional reading of the same module fails
  // cleanly (it needs labels, and num_classes=0 gives no null class): a card that does not fit the
  // model is a configuration error, exit 2.
  r = run_cli({"sample", "--model", fixture_path("tiny_eps.pt"), "--model-card",
               "sample_shape=1x8x8", "--steps", "2"},
              dir);
  expect_clean_error(r, {"tiny_eps.pt"}, 2);
  // CADS needs a condition embedding, which only our DiT exposes.
  expect_clean_error(run_cli({"sample", "--model", fixture_path("tiny_eps.pt"), "-c", "cads"}, dir),
                     {"cads", "TorchScript"}, 2);
}

// A module that does not fit the card or the denoiser's signature is a configuration error (exit
// 2); one whose forward fails when it runs, any other failure (exit 1).
TEST(CliInterop, WrongTorchScriptModelsFailCleanly) {
  const std::string dir = cli_test_dir("interop_ts_bad");
  const std::string card = "sample_shape=1x28x28,num_classes=10";
  save_script(dir + "/wrong_shape.pt",
              "def forward(self, x, t, y):\n  return x.repeat(1, 3, 1, 1)\n");
  expect_clean_error(run_cli({"sample", "--model", "wrong_shape.pt", "--model-card", card}, dir),
                     {"wrong_shape.pt", "[1, 3, 28, 28]", "expected [1, 1, 28, 28]"}, 2);
  save_script(dir + "/arity.pt", "def forward(self, x):\n  return x\n");
  expect_clean_error(run_cli({"sample", "--model", "arity.pt", "--model-card", card}, dir),
                     {"arity.pt"}, 2);
  save_script(dir + "/throws.pt", "def forward(self, x, t, y):\n  return x.view(5, -1)\n");
  expect_clean_error(run_cli({"sample", "--model", "throws.pt", "--model-card", card}, dir),
                     {"throws.pt", "forward failed"}, 1);
  save_script(dir + "/no_card.pt", "def forward(self, x, t, y):\n  return x\n");
  expect_clean_error(run_cli({"sample", "--model", "no_card.pt"}, dir),
                     {"no_card.pt", "diffuse_card"}, 2);
  expect_clean_error(
      run_cli({"sample", "--model", "no_card.pt", "--model-card", "sample_shape=1x28"}, dir),
      {"no_card.pt"}, 2);
}

TEST(CliInterop, SafetensorsExportSamplesTheSameImages) {
  const std::string dir = cli_test_dir("interop_st");
  auto r = run_cli({"export", "--model", "default", "--out", "dit.safetensors"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  // Refuses to replace an existing file without --force.
  expect_clean_error(run_cli({"export", "--model", "default", "--out", "dit.safetensors"}, dir),
                     {"--force"}, 2);
  const std::vector<std::string> common = {"--steps", "3", "-n", "6"};
  auto a = common, b = common;
  a.insert(a.begin(),
           {"sample", "--model", "dit.safetensors", "--save-tensor", "a.pt", "-o", "a.png"});
  b.insert(b.begin(), {"sample", "--save-tensor", "b.pt", "-o", "b.png"});
  ASSERT_EQ(run_cli(a, dir).code, 0);
  ASSERT_EQ(run_cli(b, dir).code, 0);
  EXPECT_EQ(read_text_file(dir + "/a.pt").size(), read_text_file(dir + "/b.pt").size());
  at::Tensor ta, tb;
  torch::load(ta, dir + "/a.pt");
  torch::load(tb, dir + "/b.pt");
  EXPECT_TRUE(at::equal(ta, tb));
  // A truncated safetensors file.
  const std::string bytes = read_text_file(dir + "/dit.safetensors");
  {
    std::ofstream(dir + "/cut.safetensors", std::ios::binary)
        << bytes.substr(0, bytes.size() - 100);
  }
  expect_clean_error(run_cli({"sample", "--model", "cut.safetensors"}, dir), {"cut.safetensors"},
                     3);  // truncated: I/O
}

}  // namespace

// A published latent checkpoint (the reference DiT's torch.save state dict; a small one with random
// weights, tests/reference/latent_models.py) sampled and decoded through a diffusers VAE folder:
// RGB images of the VAE's size, the VAE in the record, and a clear error without --vae.
TEST(CliInterop, LatentDiTCheckpointDecodesThroughAVae) {
  const std::string dir = cli_test_dir("interop_latent");
  std::filesystem::copy_file(fixture_path("latent/dit_tiny.pt"), dir + "/DiT-tiny.pt",
                             std::filesystem::copy_options::overwrite_existing);
  const std::vector<std::string> base = {
      "sample", "--model", "DiT-tiny.pt", "--model-card", "model=num_heads=4", "--class", "3",
      "--cfg",  "4",       "--sampler",   "ddim",         "--steps",           "5",       "-n",
      "3"};
  std::vector<std::string> args = base;
  for (const char* a : {"--vae", "", "--save-tensor", "x.pt", "--save-each", "each", "-o", "g.png"})
    args.push_back(a);
  args[args.size() - 7] = fixture_path("latent/vae_tiny");
  auto r = run_cli(args, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor x;
  torch::load(x, dir + "/x.pt");
  // 4 x 8 x 8 latents, a VAE that upsamples by 4: 3 x 32 x 32 images.
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_TRUE(at::isfinite(x).all().item<bool>());
  const at::Tensor png = diffuse::read_image(dir + "/each/000000.png", 3);
  EXPECT_EQ(png.sizes(), (std::vector<int64_t>{3, 32, 32}));
  const auto record = nlohmann::json::parse(read_text_file(dir + "/g.json"));
  EXPECT_EQ(record["settings"]["vae"], fixture_path("latent/vae_tiny"));
  EXPECT_NE(record["resolved"]["model_card"].get<std::string>().find("vae=sd-vae-ft-ema"),
            std::string::npos);
  // DiT's own sampler: DDPM with the learned variance the card keeps.
  std::vector<std::string> ddpm = base;
  std::replace(ddpm.begin(), ddpm.end(), std::string("ddim"),
               std::string("ddpm:variance_type=learned_range"));
  for (const char* a : {"--vae", "", "-o", "d.png"}) ddpm.push_back(a);
  ddpm[ddpm.size() - 3] = fixture_path("latent/vae_tiny");
  const auto rd = run_cli(ddpm, dir);
  EXPECT_EQ(rd.code, 0) << rd.err;
  // Without --vae: the card says the model makes latents.
  expect_clean_error(run_cli(base, dir), {"give --vae"}, 2);
  // A single-file (ldm-named) VAE whose architecture is not the --vae-preset: the error lists the
  // tensors that do not fit; an unknown preset is named.
  std::vector<std::string> ldm = base;
  for (const char* a : {"--vae", "", "--vae-preset", "sdxl"}) ldm.push_back(a);
  ldm[ldm.size() - 3] = fixture_path("latent/vae_tiny_ldm.safetensors");
  expect_clean_error(run_cli(ldm, dir), {"--vae", "do not fit the architecture", "missing"}, 2);
  ldm.back() = "sd4";
  expect_clean_error(run_cli(ldm, dir), {"unknown preset 'sd4'"}, 2);
}

// Latent img2img / inpainting: --init-image at the VAE's pixel size is encoded to the posterior
// mean; with an all-black mask (keep everything) the result is exactly the decoded init latents.
TEST(CliInterop, LatentImg2ImgEncodesTheInitImage) {
  const std::string dir = cli_test_dir("interop_latent_img2img");
  std::filesystem::copy_file(fixture_path("latent/dit_tiny.pt"), dir + "/DiT-tiny.pt",
                             std::filesystem::copy_options::overwrite_existing);
  const std::string vae_dir = fixture_path("latent/vae_tiny");
  // A smooth RGB image of 32 x 32 (the tiny VAE upsamples 8 x 8 latents by 4), quantised to
  // 8 bits as the PNG stores it.
  const at::Tensor ramp = at::linspace(-0.9, 0.9, 32, at::kFloat);
  const at::Tensor img =
      at::stack({ramp.view({1, 32}).expand({32, 32}), ramp.view({32, 1}).expand({32, 32}),
                 (ramp.view({1, 32}) * ramp.view({32, 1}))});
  diffuse::save_png(dir + "/init.png", img);
  diffuse::save_png(dir + "/keep.png", at::full({1, 32, 32}, -1.0));
  const std::vector<std::string> base = {
      "sample", "--model", "DiT-tiny.pt", "--model-card", "model=num_heads=4", "--class", "3",
      "--cfg",  "4",       "--sampler",   "ddim",         "--steps",           "4",       "-n",
      "2",      "--vae",   vae_dir,       "--init-image", "init.png"};
  std::vector<std::string> args = base;
  for (const char* a : {"--strength", "0.5", "--save-tensor", "a.pt", "-o", "a.png"})
    args.push_back(a);
  const auto r = run_cli(args, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor a;
  torch::load(a, dir + "/a.pt");
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_TRUE(at::isfinite(a).all().item<bool>());
  std::vector<std::string> keep = base;
  for (const char* a2 : {"--mask", "keep.png", "--save-tensor", "k.pt", "-o", "k.png"})
    keep.push_back(a2);
  const auto rk = run_cli(keep, dir);
  ASSERT_EQ(rk.code, 0) << rk.err;
  at::Tensor k;
  torch::load(k, dir + "/k.pt");
  diffuse::AutoencoderKL vae = diffuse::load_vae(vae_dir);
  torch::NoGradGuard no_grad;
  const at::Tensor init = diffuse::read_image(dir + "/init.png", 3).unsqueeze(0);
  const at::Tensor expected = vae->decode(vae->encode(init));  // --save-tensor is unclamped
  EXPECT_LT((k.select(0, 0) - expected.select(0, 0)).abs().max().item<double>(), 1e-4);
  EXPECT_LT((k.select(0, 1) - expected.select(0, 0)).abs().max().item<double>(), 1e-4);
  // An init image of the latent size, not the VAE's: named with both sizes.
  diffuse::save_png(dir + "/small.png", at::zeros({3, 8, 8}));
  std::vector<std::string> small = base;
  small.back() = "small.png";
  expect_clean_error(run_cli(small, dir), {"--init-image", "8x8", "32x32"}, 2);
}

// SiT's own samplers from the CLI: its ODE (adaptive dopri5 over one interval, the network
// evaluated at t = 1) and its SDE (Euler-Maruyama on linspace(0, 0.96, N) and the "Mean" last
// step: the card's flow schedule with sigma_min = 0.04).
TEST(CliInterop, SitCheckpointRunsSitsSamplers) {
  const std::string dir = cli_test_dir("interop_sit");
  std::filesystem::copy_file(fixture_path("latent/sit_tiny.pt"), dir + "/SiT-tiny.pt",
                             std::filesystem::copy_options::overwrite_existing);
  const std::string vae = fixture_path("latent/vae_tiny");
  const std::vector<std::vector<std::string>> runs = {
      {"--model-card", "model=num_heads=4", "--sampler", "dopri5:clean_end=integrate", "--steps",
       "1"},
      {"--model-card", "model=num_heads=4,schedule=flow:t_scale=1;sigma_min=0.04", "--sampler",
       "euler_maruyama", "--steps", "10"}};
  int i = 0;
  for (const auto& extra : runs) {
    std::vector<std::string> args = {"sample", "--model", "SiT-tiny.pt", "--class", "3", "--cfg",
                                     "4",      "--vae",   vae,           "-n",      "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string out = "sit" + std::to_string(i++);
    for (const std::string& a :
         {std::string("--save-tensor"), out + ".pt", std::string("-o"), out + ".png"})
      args.push_back(a);
    const auto r = run_cli(args, dir);
    ASSERT_EQ(r.code, 0) << r.err;
    at::Tensor x;
    torch::load(x, dir + "/" + out + ".pt");
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
    EXPECT_TRUE(at::isfinite(x).all().item<bool>());
    const auto record = nlohmann::json::parse(read_text_file(dir + "/" + out + ".json"));
    EXPECT_NE(record["resolved"]["sampler"].dump().find(extra[3].substr(0, 6)), std::string::npos)
        << record["resolved"].dump();
  }
}
