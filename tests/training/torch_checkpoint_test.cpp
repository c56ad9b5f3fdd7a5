// SPDX-License-Identifier: Apache-2.0
// The published DiT / SiT checkpoints: torch.save() files read without Python, the reference
// architecture inferred from the state dict, parity with facebookresearch/DiT's and willisma/SiT's
// models.py (random weights; tests/reference/latent_models.py), the full key list of DiT-XL/2, and
// SiT's reversed time through load_model().
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <diffuse/training/model_file.h>
#include <diffuse/training/safetensors.h>
#include <diffuse/training/torch_checkpoint.h>

#include "../test_util.h"
#include "latent_fixtures.h"
#include "temp_dir.h"

namespace diffuse {
namespace {

using test::latent_fixture;
using test::read_key_list;
using test::relative_error;
using testing::fixture_path;

// DiT's forward_with_cfg: the batch is [cond; uncond] of the same x; guidance on channels 0..2
// only (the reference's default "for reproducibility"), the rest passed through.
at::Tensor dit_forward_with_cfg(DiT& model, const at::Tensor& x, const at::Tensor& t,
                                const at::Tensor& y, double scale) {
  const at::Tensor out = model->forward(x, t, y);
  const at::Tensor eps = out.narrow(1, 0, 3), rest = out.narrow(1, 3, out.size(1) - 3);
  const int64_t half = x.size(0) / 2;
  const at::Tensor cond = eps.narrow(0, 0, half), uncond = eps.narrow(0, half, half);
  const at::Tensor guided = uncond + scale * (cond - uncond);
  return at::cat({at::cat({guided, guided}, 0), rest}, 1);
}

TEST(TorchCheckpoint, ReadsTheReferenceDiTStateDictAndMatchesItsForward) {
  ASSERT_TRUE(is_torch_save_archive(latent_fixture("dit_tiny.pt")));
  const TorchStateDict sd = read_torch_state_dict(latent_fixture("dit_tiny.pt"));
  EXPECT_EQ(sd.entry, "");
  // hidden 16 is not a DiT Table 1 size: the heads must be given.
  EXPECT_ERROR_NAMING(dit_options_from_state_dict(sd.tensors, "dit_tiny.pt"), "attention heads");
  const DiTOptions o = dit_options_from_state_dict(sd.tensors, "dit_tiny.pt", 4);
  EXPECT_EQ(o.input_size(), 8);
  EXPECT_EQ(o.in_channels(), 4);
  EXPECT_EQ(o.patch_size(), 2);
  EXPECT_EQ(o.hidden_size(), 16);
  EXPECT_EQ(o.depth(), 2);
  EXPECT_EQ(o.num_classes(), 10);
  EXPECT_TRUE(o.learn_sigma());
  EXPECT_DOUBLE_EQ(o.mlp_ratio(), 4.0);
  DiT model(o);
  load_dit_state_dict(model, sd.tensors);
  model->eval();
  const SafetensorsFile io = read_safetensors(latent_fixture("dit_tiny_io.safetensors"));
  torch::NoGradGuard no_grad;
  const auto& T = io.tensors;
  EXPECT_LT(relative_error(model->forward(T.at("x"), T.at("t"), T.at("y")), T.at("out")), 1e-5);
  EXPECT_LT(
      relative_error(dit_forward_with_cfg(model, T.at("cfg_x"), T.at("cfg_t"), T.at("cfg_y"), 4.0),
                     T.at("cfg_out")),
      1e-5);
}

TEST(TorchCheckpoint, TakesTheEmaWeightsOfATrainingCheckpoint) {
  const TorchStateDict sd = read_torch_state_dict(latent_fixture("dit_tiny_ema_ckpt.pt"));
  EXPECT_EQ(sd.entry, "ema");
  DiT model(dit_options_from_state_dict(sd.tensors, "ckpt", 4));
  load_dit_state_dict(model, sd.tensors);
  model->eval();
  const SafetensorsFile io = read_safetensors(latent_fixture("dit_tiny_io.safetensors"));
  torch::NoGradGuard no_grad;
  const auto& T = io.tensors;
  EXPECT_LT(relative_error(model->forward(T.at("x"), T.at("t"), T.at("y")), T.at("ema_out")), 1e-5);
}

TEST(TorchCheckpoint, SiTMatchesItsForwardAndSamplesWithReversedTime) {
  const TorchStateDict sd = read_torch_state_dict(latent_fixture("sit_tiny.pt"));
  DiT model(dit_options_from_state_dict(sd.tensors, "sit_tiny.pt", 4));
  load_dit_state_dict(model, sd.tensors);
  model->eval();
  const SafetensorsFile io = read_safetensors(latent_fixture("sit_tiny_io.safetensors"));
  const auto& T = io.tensors;
  torch::NoGradGuard no_grad;
  // SiT's forward drops the learned-sigma channels itself.
  const at::Tensor out = model->forward(T.at("x"), T.at("t"), T.at("y")).narrow(1, 0, 4);
  EXPECT_LT(relative_error(out, T.at("out")), 1e-5);
  const at::Tensor cfg =
      dit_forward_with_cfg(model, T.at("cfg_x"), T.at("cfg_t"), T.at("cfg_y"), 4.0);
  EXPECT_LT(relative_error(cfg.narrow(1, 0, 4), T.at("cfg_out")), 1e-5);

  // Through load_model with the SiT card: our flow time sigma = 1 - t_SiT, and our velocity
  // (noise - data) is minus SiT's (data - noise).
  test::TempDir dir("sit_ckpt");
  const std::string path = dir / "SiT-tiny.pt";
  std::filesystem::copy_file(latent_fixture("sit_tiny.pt"), path);
  LoadModelOptions lo;
  lo.card = "model=num_heads=4";
  const LoadedModel m = load_model(path, lo);
  EXPECT_TRUE(m.card.reversed_time);
  EXPECT_EQ(m.card.prediction_type, "flow_prediction");
  EXPECT_EQ(m.card.vae, "sd-vae-ft-ema");
  EXPECT_EQ(m.format, "torch.save state dict");
  Conditioning c;
  c.value = T.at("y");
  const at::Tensor ours = m.network(T.at("x"), 1.0 - T.at("t"), c);
  EXPECT_LT(relative_error(ours, -T.at("out")), 1e-5);
}

TEST(TorchCheckpoint, LoadModelGivesTheDiTCard) {
  test::TempDir dir("dit_ckpt");
  const std::string path = dir / "DiT-tiny.pt";
  std::filesystem::copy_file(latent_fixture("dit_tiny.pt"), path);
  LoadModelOptions lo;
  lo.card = "model=num_heads=4";
  const LoadedModel m = load_model(path, lo);
  EXPECT_FALSE(m.card.reversed_time);
  EXPECT_EQ(m.card.prediction_type, "epsilon");
  EXPECT_FALSE(m.card.clip_sample);
  EXPECT_EQ(m.card.sample_shape, (std::vector<int64_t>{4, 8, 8}));
  EXPECT_EQ(m.card.num_classes, 10);
  // DiT's linear betas 1e-4 .. 0.02 over 1000 steps: alpha_bar at t = 999.
  auto schedule = m.make_schedule();
  double prod = 1.0;
  for (int i = 0; i < 1000; ++i) prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / 999.0);
  const TimePoint last = schedule->at(999.0);
  EXPECT_NEAR(last.alpha * last.alpha / prod, 1.0, 1e-5);
  const SafetensorsFile io = read_safetensors(latent_fixture("dit_tiny_io.safetensors"));
  const auto& T = io.tensors;
  Conditioning c;
  c.value = T.at("y");
  torch::NoGradGuard no_grad;
  // learned_variance: the network keeps DiT's variance channels for
  // ddpm:variance_type=learned_range.
  EXPECT_TRUE(m.card.learned_variance);
  EXPECT_TRUE(m.denoiser_options().learned_variance);
  EXPECT_LT(relative_error(m.network(T.at("x"), T.at("t"), c), T.at("out")), 1e-5);
}

// The card's guided_channels=3 through the sampler's model function reproduces DiT's and SiT's
// forward_with_cfg (scale 4): per sample of the conditional half (a ModelFn call has one time),
// our prediction equals the converted cfg_out, the unguided 4th channel included.
void expect_forward_with_cfg(const std::string& file, bool sit) {
  SCOPED_TRACE(file);
  test::TempDir dir("cfg_ckpt");
  const std::string path = dir / (sit ? "SiT-tiny.pt" : "DiT-tiny.pt");
  std::filesystem::copy_file(latent_fixture(file + ".pt"), path);
  LoadModelOptions lo;
  lo.card = "model=num_heads=4";
  const LoadedModel m = load_model(path, lo);
  EXPECT_EQ(m.card.guided_channels, 3);
  const Denoiser d(m.network, m.denoiser_options());
  auto schedule = m.make_schedule();
  const SafetensorsFile io = read_safetensors(latent_fixture(file + "_io.safetensors"));
  const auto& T = io.tensors;
  torch::NoGradGuard no_grad;
  const int64_t half = T.at("cfg_x").size(0) / 2;
  for (int64_t i = 0; i < half; ++i) {
    SampleOptions o;
    o.guidance = make_guidance("cfg", {{"scale", "4"}});
    o.cond.value = T.at("cfg_y").narrow(0, i, 1);
    o.uncond.value = T.at("cfg_y").narrow(0, half + i, 1);
    const double t = T.at("cfg_t")[i].item<double>();
    const TimePoint at = schedule->at(sit ? 1.0 - t : t);
    StepContext st;
    st.now = at;
    const at::Tensor x = T.at("cfg_x").narrow(0, i, 1);
    const Prediction ours = make_model_fn(d, o, {})(x, at, st);
    at::Tensor ref = T.at("cfg_out").narrow(0, i, 1);
    if (!sit) ref = at::cat({ref.narrow(1, 0, 4), ref.narrow(1, 4, 4)}, 1);  // + DiT's variance
    const Prediction expected = d.convert(sit ? -ref.narrow(1, 0, 4) : ref, x, at);
    EXPECT_LT(relative_error(ours.eps, expected.eps), 1e-5) << "sample " << i;
    EXPECT_LT(relative_error(ours.x0, expected.x0), 1e-5) << "sample " << i;
  }
}

TEST(TorchCheckpoint, GuidedChannelsReproduceForwardWithCfg) {
  expect_forward_with_cfg("dit_tiny", false);
  expect_forward_with_cfg("sit_tiny", true);
}

TEST(TorchCheckpoint, BadFilesAreErrorsThatSayWhatToDo) {
  test::TempDir dir("bad_ckpt");
  {
    std::ofstream f(dir / "legacy.pt", std::ios::binary);
    f << "\x80\x02"
      << "not a zip";
  }
  EXPECT_ERROR_NAMING(read_torch_state_dict(dir / "legacy.pt"), "convert_checkpoint.py");
  EXPECT_FALSE(is_torch_save_archive(dir / "legacy.pt"));
  // Our own model file (TorchScript archive) is not a torch.save() file.
  EXPECT_FALSE(is_torch_save_archive(fixture_path("tiny_eps.pt")));
  // A state dict of something else.
  const TorchStateDict other = read_torch_state_dict(fixture_path("pytorch_checkpoint.pt"));
  EXPECT_ERROR_NAMING(dit_options_from_state_dict(other.tensors, "pytorch_checkpoint.pt"),
                      "not a DiT / SiT state dict");
}

// The pickle machine builds data only and never recurses on the input's nesting: hostile
// pickles are one-line errors, not crashes (tests/fuzz/fuzz_model_file runs it under ASan too).
TEST(TorchCheckpoint, HostilePicklesAreErrorsNotCrashes) {
  const detail::PickleRecordReader none = [](const std::string& name) -> detail::PickleRecord {
    throw IOError("no record " + name);
  };
  auto parse = [&](const std::string& bytes) {
    (void)detail::parse_torch_pickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                     none, "hostile.pkl");
  };
  // 200,000 nested lists (EMPTY_LIST x n, APPEND x n-1): freed without deep recursion.
  const int n = 200000;
  EXPECT_ERROR_NAMING(parse("\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a') + "."),
                      "hostile.pkl: the pickled object is a list");
  // A list that contains itself through the memo.
  EXPECT_ERROR_NAMING(parse(std::string("\x80\x02]q\x00h\x00"
                                        "a.",
                                        9)),
                      "is a list");
  EXPECT_ERROR_NAMING(parse("\x80\x02}"), "truncated");
  EXPECT_ERROR_NAMING(parse("\x80\x02\xff."), "opcode 0xff");
  EXPECT_ERROR_NAMING(parse("\x80\x02"
                            "a."),
                      "empty stack");
  EXPECT_ERROR_NAMING(parse("\x80\x02h\x07."), "memo 7");
  // A class the machine does not know is an opaque value, never called.
  using namespace std::string_literals;
  EXPECT_ERROR_NAMING(parse("\x80\x02"
                            "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R."s),
                      "object (os.system)");
}

TEST(TorchCheckpoint, MapsEveryKeyOfDiTXL2) {
  for (const char* file :
       {"dit_xl2_256_keys.txt", "dit_xl2_512_keys.txt", "sit_xl2_256_keys.txt"}) {
    const auto keys = read_key_list(file);
    std::map<std::string, at::Tensor> shapes;  // meta tensors: shapes without memory
    for (const auto& [k, s] : keys) shapes[k] = at::empty(s, at::TensorOptions().device(at::kMeta));
    const DiTOptions xl = dit_options_from_state_dict(shapes, file);
    EXPECT_EQ(xl.hidden_size(), 1152) << file;
    EXPECT_EQ(xl.depth(), 28) << file;
    EXPECT_EQ(xl.num_heads(), 16) << file;
    EXPECT_EQ(xl.num_classes(), 1000) << file;
    EXPECT_TRUE(xl.learn_sigma()) << file;
    // Our DiT of that configuration with two blocks names every key (blocks.N -> blocks.0/1
    // pattern) with the same shape.
    DiTOptions two = xl;
    two.depth(2);
    DiT model(two);
    const auto ours = dit_state_dict(model);
    size_t matched = 0;
    for (const auto& [k, s] : keys) {
      std::string name = k;
      if (name.rfind("blocks.", 0) == 0) {
        const size_t dot = name.find('.', 7);
        const int block = std::stoi(name.substr(7, dot - 7));
        name = "blocks." + std::to_string(block == 0 ? 0 : 1) + name.substr(dot);
      }
      auto it = ours.find(name);
      ASSERT_NE(it, ours.end()) << file << ": " << k;
      EXPECT_EQ(std::vector<int64_t>(it->second.sizes().begin(), it->second.sizes().end()), s) << k;
      ++matched;
    }
    // Every key of ours appears: 2 blocks' keys + the rest, against 28 blocks in the list.
    const size_t per_block =
        static_cast<size_t>(std::count_if(ours.begin(), ours.end(), [](const auto& kv) {
          return kv.first.rfind("blocks.0.", 0) == 0;
        }));
    EXPECT_EQ(keys.size(), ours.size() + 26 * per_block) << file;
    EXPECT_EQ(matched, keys.size());
  }
}

}  // namespace
}  // namespace diffuse
