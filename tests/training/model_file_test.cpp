// SPDX-License-Identifier: Apache-2.0
// Model files (training/model_file.h): card text round trip and validation, save -> load gives the
// same network outputs, a Trainer checkpoint loads as its EMA weights with a card rebuilt from the
// fingerprint, the shipped default model, corrupt files; PNG tEXt chunks (training/image.h).
#include <diffuse/training/image.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/trainer.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "training/temp_dir.h"

namespace diffuse {
namespace {

using test::TempDir;

DiTOptions tiny_options(int64_t classes) {
  return DiTOptions(8, 1).patch_size(4).hidden_size(32).depth(1).num_heads(2).num_classes(classes);
}

/// Gives a fresh DiT non-zero outputs (adaLN-Zero starts at exactly zero).
void randomise(DiT& m, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) p.copy_(at::randn(p.sizes(), g) * 0.1);
}

TEST(ModelCard, TextRoundTripAndOneLineForm) {
  ModelCard c;
  c.model = {{"depth", "2"}, {"hidden_size", "64"}};
  c.schedule = "discrete:beta_schedule=linear;num_train_timesteps=100";
  c.prediction_type = "v_prediction";
  c.sample_shape = {3, 16, 16};
  c.num_classes = 2;
  c.class_names = {"cat", "dog"};
  c.clip_sample = false;
  c.description = "two\nlines";
  const ModelCard back = parse_model_card(model_card_text(c), "x");
  EXPECT_EQ(back.model, c.model);
  EXPECT_EQ(back.schedule, c.schedule);
  EXPECT_EQ(back.prediction_type, "v_prediction");
  EXPECT_EQ(back.sample_shape, c.sample_shape);
  EXPECT_EQ(back.num_classes, 2);
  EXPECT_EQ(back.class_names, c.class_names);
  EXPECT_FALSE(back.clip_sample);
  EXPECT_EQ(back.description, "two lines");
  const ModelCard one =
      parse_model_card("architecture=torchscript,sample_shape=2x4x4,num_classes=3", "cli");
  EXPECT_EQ(one.architecture, "torchscript");
  EXPECT_EQ(one.sample_shape, (std::vector<int64_t>{2, 4, 4}));
  EXPECT_EQ(one.schedule, "discrete");
  EXPECT_FALSE(one.edm_preconditioning);
  // EDM preconditioning reaches the denoiser, and survives the text form.
  const ModelCard edm = parse_model_card(
      "sample_shape=4,schedule=edm,edm_preconditioning=true,sigma_data=0.25", "cli");
  const ModelCard edm_back = parse_model_card(model_card_text(edm), "x");
  EXPECT_TRUE(edm_back.edm_preconditioning);
  EXPECT_EQ(edm_back.sigma_data, 0.25);
  LoadedModel lm;
  lm.card = edm_back;
  EXPECT_TRUE(lm.denoiser_options().edm_preconditioning);
  EXPECT_EQ(lm.denoiser_options().sigma_data, 0.25);
  lm.card = c;
  EXPECT_FALSE(lm.denoiser_options().edm_preconditioning);
}

TEST(ModelCard, BadCardsNameTheProblem) {
  auto msg = [](const std::string& text) {
    try {
      parse_model_card(text, "card.txt");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("num_classes=3").find("no sample_shape"), std::string::npos);
  EXPECT_NE(msg("sample_shape=1x0x28").find("'1x0x28'"), std::string::npos);
  EXPECT_NE(msg("sample_shape=1x28x28,colour=red").find("unknown card key 'colour'"),
            std::string::npos);
  EXPECT_NE(msg("sample_shape=1x28x28,prediction_type=noise").find("'noise'"), std::string::npos);
  EXPECT_NE(msg("sample_shape=1x28x28,num_classes=-1").find("num_classes"), std::string::npos);
  EXPECT_NE(msg("sample_shape=1x28x28,schedule=nope").find("nope"), std::string::npos);
  EXPECT_NE(msg("sample_shape=4,num_classes=2,class_names=a").find("1 names"), std::string::npos);
  EXPECT_NE(msg("sample_shape=4\nsample_shape=4").find("twice"), std::string::npos);
  EXPECT_NE(msg("just words").find("card.txt"), std::string::npos);
  EXPECT_NE(msg("sample_shape=4,edm_preconditioning=yes").find("'yes'"), std::string::npos);
  EXPECT_NE(msg("sample_shape=4,sigma_data=0").find("sigma_data"), std::string::npos);
  EXPECT_NE(msg("sample_shape=4,sigma_data=nan").find("'nan'"), std::string::npos);
}

TEST(ModelFile, SaveLoadGivesTheSameNetwork) {
  TempDir dir("model_file");
  DiT m(tiny_options(3));
  randomise(m, 1);
  ModelCard card;
  card.schedule = "discrete:num_train_timesteps=50";
  card.prediction_type = "sample";
  card.class_names = {"a", "b", "c"};
  card.description = "test model";
  save_model(dir / "m.pt", m, card);
  EXPECT_EQ(dir.count(), 1u);  // no temporary left behind
  const LoadedModel back = load_model(dir / "m.pt");
  EXPECT_EQ(back.format, "diffuse model");
  ASSERT_TRUE(back.dit.has_value());
  EXPECT_EQ(back.card.sample_shape, (std::vector<int64_t>{1, 8, 8}));  // filled in from the DiT
  EXPECT_EQ(back.card.num_classes, 3);
  EXPECT_EQ(back.card.class_names, card.class_names);
  EXPECT_EQ(back.make_schedule()->num_train_timesteps(), 50);
  EXPECT_EQ(back.denoiser_options().prediction_type, Parameterization::kSample);
  EXPECT_TRUE(back.denoiser_options().clip_sample);
  EXPECT_TRUE(
      back.denoiser_options().use_clipped_model_output);  // eps re-derived from the clamped x0
  at::Generator g = at::detail::createCPUGenerator(5);
  const at::Tensor x = at::randn({4, 1, 8, 8}, g),
                   t = at::tensor({1.0, 10.0, 20.0, 49.0}, at::kFloat);
  Conditioning c;
  c.value = at::tensor(std::vector<int64_t>{0, 1, 2, 3});
  torch::NoGradGuard ng;
  m->eval();
  const at::Tensor want = as_network(m)(x, t, c);
  EXPECT_GT(want.abs().max().item<double>(), 0);
  EXPECT_TRUE(at::equal(back.network(x, t, c), want));
  // float64 on request.
  LoadModelOptions o;
  o.dtype = at::kDouble;
  EXPECT_TRUE(at::allclose(load_model(dir / "m.pt", o).network(x.to(at::kDouble), t, c),
                           want.to(at::kDouble), 1e-5, 1e-6));
}

TEST(ModelFile, TrainerCheckpointLoadsItsEmaWeights) {
  TempDir dir("model_ckpt");
  Dataset data;
  at::Generator g = at::detail::createCPUGenerator(0);
  data.data = at::rand({16, 1, 8, 8}, g) * 2 - 1;
  data.labels = at::arange(16, at::kLong).remainder(2);
  data.num_classes = 2;
  data.name = "toy";
  const DiTOptions opts = tiny_options(2);
  DiT model(opts);
  TrainerOptions o;
  o.steps(2)
      .batch_size(4)
      .threads(-1)
      .output_dir(dir.path.string())
      .checkpoint_every(2)
      .ema_decay(0.5)
      .model_config("DiT " + format_config(to_config(opts)));
  Trainer<DiT> trainer(model, objective_from_spec("denoising:prediction_type=v_prediction"),
                       make_schedule("discrete", {{"num_train_timesteps", "100"}}), data, o);
  trainer.train();
  const auto ckpt = latest_checkpoint(trainer.checkpoint_dir());
  ASSERT_TRUE(ckpt.has_value());
  const LoadedModel m = load_model(*ckpt);
  EXPECT_EQ(m.format, "training checkpoint (EMA weights)");
  EXPECT_EQ(m.card.prediction_type, "v_prediction");
  EXPECT_EQ(m.card.num_classes, 2);
  EXPECT_EQ(m.card.sample_shape, (std::vector<int64_t>{1, 8, 8}));
  EXPECT_EQ(m.make_schedule()->num_train_timesteps(), 100);
  // The weights are the EMA's, not the model's.
  const auto ema = trainer.ema()->named_parameters();
  for (const auto& p : m.dit.value()->named_parameters())
    EXPECT_TRUE(at::equal(p.value(), ema[p.key()])) << p.key();
}

TEST(ModelFile, ShippedDefaultModelLoads) {
  if (!std::getenv("DIFFUSE_SOURCE_DIR")) GTEST_SKIP() << "DIFFUSE_SOURCE_DIR not set";
  const LoadedModel m = load_model(default_model_path());
  EXPECT_EQ(m.card.num_classes, 10);
  EXPECT_EQ(m.card.class_names.at(7), "Sneaker");
  EXPECT_EQ(m.card.sample_shape, (std::vector<int64_t>{1, 28, 28}));
  int64_t n = 0;
  for (const auto& p : m.dit.value()->parameters()) n += p.numel();
  EXPECT_EQ(n, 330512);
}

TEST(ModelFile, CorruptOrForeignFilesFailWithTheirName) {
  TempDir dir("model_bad");
  auto msg = [&](const std::string& path) {
    try {
      load_model(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg(dir / "missing.pt").find("does not exist"), std::string::npos);
  { std::ofstream(dir / "junk.pt") << "junk"; }
  EXPECT_NE(msg(dir / "junk.pt").find("junk.pt"), std::string::npos);
  DiT m(tiny_options(0));
  save_model(dir / "good.pt", m, ModelCard{});
  std::string bytes;
  {
    std::ifstream f(dir / "good.pt", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  { std::ofstream(dir / "half.pt", std::ios::binary) << bytes.substr(0, bytes.size() / 2); }
  EXPECT_NE(msg(dir / "half.pt").find("half.pt"), std::string::npos);
  // A bare module archive (e.g. the trainer's ema.pt) has no card.
  {
    torch::serialize::OutputArchive ar;
    m->save(ar);
    ar.save_to(dir / "bare.pt");
  }
  EXPECT_NE(msg(dir / "bare.pt").find("bare.pt"), std::string::npos);
  // A card that does not match the weights.
  LoadModelOptions o;
  o.card =
      "model=input_size=8,in_channels=1,patch_size=4,hidden_size=64,depth=1,num_heads=2\nsample_"
      "shape=1x8x8";
  try {
    load_model(dir / "good.pt", o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("good.pt"), std::string::npos) << e.what();
  }
}

TEST(PngText, ChunksRoundTripAndCorruptionIsDetected) {
  TempDir dir("png_text");
  const at::Tensor img = at::linspace(-1, 1, 3 * 5 * 4).reshape({3, 5, 4});
  save_png(dir / "a.png", img, {{"diffuse", "{\"x\": 1}"}, {"Comment", "héllo, wörld"}});
  const auto text = read_png_text(dir / "a.png");
  EXPECT_EQ(text.size(), 2u);
  EXPECT_EQ(text.at("diffuse"), "{\"x\": 1}");
  EXPECT_EQ(text.at("Comment"), "héllo, wörld");
  // The image itself is unchanged by the chunks: same pixels as a PNG without them.
  save_png(dir / "b.png", img);
  EXPECT_TRUE(read_png_text(dir / "b.png").empty());
  EXPECT_THROW(save_png(dir / "c.png", img, {{"", "x"}}), Error);
  EXPECT_THROW(save_png(dir / "c.png", img, {{"k", std::string("a\0b", 3)}}), Error);
  // Flip a byte inside the tEXt payload: the CRC check names the chunk.
  std::string bytes;
  {
    std::ifstream f(dir / "a.png", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  const auto at_text = bytes.find("diffuse");
  ASSERT_NE(at_text, std::string::npos);
  bytes[at_text + 9] ^= 1;
  { std::ofstream(dir / "bad.png", std::ios::binary) << bytes; }
  try {
    read_png_text(dir / "bad.png");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CRC mismatch"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace diffuse
