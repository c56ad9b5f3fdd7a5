// SPDX-License-Identifier: Apache-2.0
// `diffuse sample` as a subprocess: the shipped model, reproducibility (same seed -> same PNG
// bytes, the settings record regenerates the image), outputs, and clean failures on bad input.
#include "cli/cli_test_util.h"

#include <torch/serialize.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include <diffuse/training/data.h>
#include <diffuse/training/image.h>

namespace {

namespace fs = std::filesystem;
using diffuse::test::cli_test_dir;
using diffuse::test::expect_clean_error;
using diffuse::test::read_text_file;
using diffuse::test::run_cli;
using diffuse::test::with;

// Small and fast: 2 DPM++ steps on 10 images.
const std::vector<std::string> kTiny = {"--steps", "3", "-n", "10"};

TEST(CliSample, DefaultModelWritesGridAndRecord) {
  const std::string dir = cli_test_dir("sample_default");
  const auto r = run_cli(with({"sample", "-o", "grid.png"}, kTiny), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(fs::exists(dir + "/grid.png"));
  ASSERT_TRUE(fs::exists(dir + "/grid.json"));
  // The grid: 10 images of 28x28 in one row of 10 (default nrow = classes), padding 2.
  const auto text = diffuse::read_png_text(dir + "/grid.png");
  ASSERT_TRUE(text.count("diffuse"));
  const auto rec = nlohmann::json::parse(text.at("diffuse"));
  EXPECT_EQ(rec["settings"]["steps"], 3);
  EXPECT_EQ(rec["settings"]["model"], "default");
  EXPECT_EQ(rec["resolved"]["grid_t"].size(), 4u);  // steps + 1 points
  EXPECT_EQ(rec["resolved"]["class_ids"][9], 9);
  // The JSON file holds the same record as the PNG.
  EXPECT_EQ(nlohmann::json::parse(read_text_file(dir + "/grid.json")), rec);
}

TEST(CliSample, SameSeedSameBytesAndRecordRegenerates) {
  const std::string dir = cli_test_dir("sample_repro");
  const std::vector<std::string> base =
      with({"sample", "--sampler", "euler_a", "--schedule", "karras", "--cfg", "3", "--class",
            "Sneaker,1", "-c", "epsilon_scaling:b=1.01"},
           kTiny);
  const std::vector<std::string> args = with(base, {"--seed", "7"});
  ASSERT_EQ(run_cli(with(args, {"-o", "a.png"}), dir).code, 0);
  ASSERT_EQ(run_cli(with(args, {"-o", "b.png"}), dir).code, 0);
  const std::string a = read_text_file(dir + "/a.png");
  EXPECT_EQ(a, read_text_file(dir + "/b.png"));
  // A different seed changes the image.
  ASSERT_EQ(run_cli(with(base, {"-o", "c.png", "--seed", "8"}), dir).code, 0);
  EXPECT_NE(a, read_text_file(dir + "/c.png"));
  // The record (JSON or PNG) alone regenerates the same bytes.
  auto r = run_cli({"sample", "--from-record", "a.json", "-o", "from_json.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(a, read_text_file(dir + "/from_json.png"));
  r = run_cli({"sample", "--from-record", "a.png", "-o", "from_png.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(a, read_text_file(dir + "/from_png.png"));
  // Explicit options override the record.
  r = run_cli({"sample", "--from-record", "a.png", "--seed", "8", "-o", "override.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text_file(dir + "/c.png"), read_text_file(dir + "/override.png"));
}

// The record names the BLAS kernels of the run (another OpenBLAS core rounds matrix products
// differently): the launcher's mended choice on a CPU with AVX2 (never a pre-AVX core), the user's
// OPENBLAS_CORETYPE when set; --from-record of a record made with other kernels warns, naming both
// and the variable that reproduces them, and still runs.
TEST(CliSample, RecordNamesTheBlasKernelsAndFromRecordWarnsWhenTheyDiffer) {
  const std::string dir = cli_test_dir("sample_blas");
  auto r = run_cli(with({"sample", "-o", "a.png"}, kTiny), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  auto rec = nlohmann::json::parse(read_text_file(dir + "/a.json"));
  if (!rec["resolved"].contains("blas")) GTEST_SKIP() << "LibTorch does not use OpenBLAS here";
  const std::string blas = rec["resolved"]["blas"].get<std::string>();
  EXPECT_EQ(blas.rfind("OpenBLAS ", 0), 0u) << blas;
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    for (const char* old : {"Prescott", "Core2", "Penryn", "Nehalem", "Atom"}) {
      EXPECT_NE(blas, std::string("OpenBLAS ") + old);
    }
  }
#endif
  r = run_cli(with({"sample", "-o", "h.png"}, kTiny), dir, 300, {"OPENBLAS_CORETYPE=Prescott"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(read_text_file(dir + "/h.json"))["resolved"]["blas"],
            "OpenBLAS Prescott");
  // A record from other kernels: a warning, and the images.
  rec["resolved"]["blas"] = "OpenBLAS Zen";
  std::ofstream(dir + "/zen.json") << rec.dump();
  r = run_cli({"sample", "--from-record", "zen.json", "-o", "again.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("made with OpenBLAS Zen kernels, this run uses " + blas), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("OPENBLAS_CORETYPE=Zen reproduces them"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/again.png"));
  // The same kernels: no warning.
  r = run_cli({"sample", "--from-record", "a.json", "-o", "same.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.find("kernels"), std::string::npos) << r.err;
}

// --guidance picks the guidance (its scale from --cfg unless the spec sets one); the record keeps
// it and regenerates the same bytes; a bad spec is a usage error naming the option.
TEST(CliSample, GuidanceSpecIsRecordedAndRegenerates) {
  const std::string dir = cli_test_dir("sample_guidance");
  const std::vector<std::string> base = with({"sample", "--cfg", "3", "--seed", "4"}, kTiny);
  ASSERT_EQ(run_cli(with(base, {"-o", "cfg.png"}), dir).code, 0);
  auto r = run_cli(with(base, {"-o", "apg.png", "--guidance", "apg:eta=0,momentum=-0.5"}), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string apg = read_text_file(dir + "/apg.png");
  EXPECT_NE(apg, read_text_file(dir + "/cfg.png"));
  EXPECT_NE(read_text_file(dir + "/apg.json").find("\"apg:eta=0,momentum=-0.5\""),
            std::string::npos)
      << read_text_file(dir + "/apg.json");
  r = run_cli({"sample", "--from-record", "apg.json", "-o", "again.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(apg, read_text_file(dir + "/again.png"));
  r = run_cli(with(base, {"-o", "bad.png", "--guidance", "cfg_pp:scale=5"}), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--guidance"), std::string::npos) << r.err;
  EXPECT_FALSE(std::ifstream(dir + "/bad.png").good());
}

// img2img and inpainting from the command line: --init-image with --strength, --mask (white =
// generate), both kept in the record; the kept half of an inpainted image is the init image.
TEST(CliSample, InitImageStrengthAndMask) {
  const std::string dir = cli_test_dir("sample_img2img");
  const std::vector<std::string> base = {"sample", "--steps", "4", "-n", "2", "--class", "7"};
  // The init image: one generated picture.
  auto r = run_cli(with(base, {"-o", "src.png", "--save-each", "src"}), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  // The mask: generate the left half (white), keep the right half (black).
  const at::Tensor mask = (at::arange(28) < 14).to(at::kFloat).mul(2).sub(1).expand({1, 28, 28});
  diffuse::save_png(dir + "/mask.png", mask);
  r = run_cli(with(base, {"-o", "i2i.png", "--init-image", "src/000000.png", "--strength", "0.5",
                          "--save-tensor", "i2i.pt"}),
              dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string rec = read_text_file(dir + "/i2i.json");
  EXPECT_NE(rec.find("src/000000.png"), std::string::npos) << rec;
  EXPECT_NE(rec.find("0.5"), std::string::npos) << rec;
  r = run_cli({"sample", "--from-record", "i2i.json", "-o", "again.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text_file(dir + "/i2i.png"), read_text_file(dir + "/again.png"));
  r = run_cli(with(base, {"-o", "inpaint.png", "--init-image", "src/000000.png", "--mask",
                          "mask.png", "--save-tensor", "inpaint.pt"}),
              dir);
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor out;
  torch::load(out, dir + "/inpaint.pt");
  const at::Tensor init = diffuse::read_image(dir + "/src/000000.png", 1);
  // The kept half equals the init image (as read from its PNG), the generated half does not.
  const at::Tensor kept = out.narrow(3, 14, 14), want = init.narrow(2, 14, 14).unsqueeze(0);
  EXPECT_LT((kept - want).abs().max().item<double>(), 1e-5);
  EXPECT_GT((out.narrow(3, 0, 14) - init.narrow(2, 0, 14).unsqueeze(0)).abs().max().item<double>(),
            1e-2);
  // RePaint resampling: a different image, the same kept half, carried by the record.
  r = run_cli(
      with(base, {"-o", "repaint.png", "--init-image", "src/000000.png", "--mask", "mask.png",
                  "--resample-jump", "2", "--resample-times", "3", "--save-tensor", "repaint.pt"}),
      dir);
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor rp;
  torch::load(rp, dir + "/repaint.pt");
  EXPECT_LT((rp.narrow(3, 14, 14) - want).abs().max().item<double>(), 1e-5);
  EXPECT_GT((rp - out).abs().max().item<double>(), 1e-3);
  const std::string rp_rec = read_text_file(dir + "/repaint.json");
  EXPECT_NE(rp_rec.find("\"resample_jump\": 2"), std::string::npos) << rp_rec;
  EXPECT_NE(rp_rec.find("\"resample_times\": 3"), std::string::npos) << rp_rec;
  r = run_cli({"sample", "--from-record", "repaint.json", "-o", "repaint_again.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text_file(dir + "/repaint.png"), read_text_file(dir + "/repaint_again.png"));
  r = run_cli(with(base, {"-o", "x.png", "--resample-jump", "-1"}), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--resample-jump"), std::string::npos) << r.err;
  r = run_cli(with(base, {"-o", "x.png", "--resample-times", "0"}), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--resample-times"), std::string::npos) << r.err;
  // Errors name the option.
  r = run_cli(with(base, {"-o", "x.png", "--strength", "0.5"}), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--init-image"), std::string::npos) << r.err;
  r = run_cli(with(base, {"-o", "x.png", "--init-image", "mask.png", "--strength", "1.5"}), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--strength"), std::string::npos) << r.err;
  r = run_cli(with(base, {"-o", "x.png", "--init-image", "missing.png"}), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("missing.png"), std::string::npos) << r.err;
}

// --step-cache: the DiT's blocks skipped on some steps (the log says how many ran), a different
// image than without, the threshold carried by the record; a bad threshold names the option.
TEST(CliSample, StepCacheIsLoggedRecordedAndRegenerates) {
  const std::string dir = cli_test_dir("sample_step_cache");
  const std::vector<std::string> base = {"sample", "--steps", "10", "-n",
                                         "2",      "--class", "3",  "--save-tensor"};
  auto r = run_cli(with(base, {"plain.pt", "-o", "plain.png"}), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli(with(base, {"cached.pt", "-o", "cached.png", "--step-cache", "0.3"}), dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("step cache (threshold 0.3): the DiT blocks ran in"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("ran in 10 of 10"), std::string::npos) << r.err;
  at::Tensor plain, cached;
  torch::load(plain, dir + "/plain.pt");
  torch::load(cached, dir + "/cached.pt");
  EXPECT_GT((plain - cached).abs().max().item<double>(), 1e-4);
  const std::string rec = read_text_file(dir + "/cached.json");
  EXPECT_NE(rec.find("\"step_cache\": 0.3"), std::string::npos) << rec;
  r = run_cli({"sample", "--from-record", "cached.json", "-o", "again.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text_file(dir + "/cached.png"), read_text_file(dir + "/again.png"));
  r = run_cli(with(base, {"x.pt", "-o", "x.png", "--step-cache", "-0.5"}), dir);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--step-cache"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("-0.5"), std::string::npos) << r.err;
}

// --noise: the record carries the source and regenerates it; philox gives image i the same noise
// whatever the batching; a record without the field (written before it existed) regenerates with
// its own stream, in which the steps restarted the generators; a bad name is refused.
TEST(CliSample, NoiseSourceIsRecordedAndRegenerates) {
  const std::string dir = cli_test_dir("sample_noise");
  const std::vector<std::string> base = {"sample", "--sampler", "euler_a", "--steps", "3",
                                         "-n",     "4",         "--class", "5"};
  const auto tensor_of = [&](const std::vector<std::string>& extra, const std::string& name) {
    const auto r =
        run_cli(with(with(base, extra), {"-o", name + ".png", "--save-tensor", name + ".pt"}), dir);
    EXPECT_EQ(r.code, 0) << r.err;
    at::Tensor t;
    torch::load(t, dir + "/" + name + ".pt");
    return t;
  };
  const at::Tensor per_sample = tensor_of({}, "per_sample");
  const at::Tensor philox = tensor_of({"--noise", "philox"}, "philox");
  const at::Tensor philox_b2 = tensor_of({"--noise", "philox", "--batch-size", "2"}, "philox_b2");
  const at::Tensor restart = tensor_of({"--noise", "per_sample_restart"}, "restart");
  EXPECT_GT((per_sample - philox).abs().max().item<double>(), 0.1);
  EXPECT_GT((per_sample - restart).abs().max().item<double>(), 1e-3);
  // Same noise per image whatever the batching (the network's GEMMs round per batch size).
  EXPECT_TRUE(at::allclose(philox, philox_b2, 0, 2e-3)) << (philox - philox_b2).abs().max();
  const nlohmann::json rec = nlohmann::json::parse(read_text_file(dir + "/philox.json"));
  EXPECT_EQ(rec["settings"]["noise"], "philox");
  auto r = run_cli({"sample", "--from-record", "philox.json", "-o", "again.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text_file(dir + "/philox.png"), read_text_file(dir + "/again.png"));
  // A record from before the field: the restarted stream, and its record says so.
  nlohmann::json old = nlohmann::json::parse(read_text_file(dir + "/per_sample.json"));
  EXPECT_EQ(old["settings"]["noise"], "per_sample");
  old["settings"].erase("noise");
  std::ofstream(dir + "/legacy.json") << old.dump();
  r = run_cli({"sample", "--from-record", "legacy.json", "-o", "old.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text_file(dir + "/restart.png"), read_text_file(dir + "/old.png"));
  EXPECT_EQ(nlohmann::json::parse(read_text_file(dir + "/old.json"))["settings"]["noise"],
            "per_sample_restart");
  expect_clean_error(run_cli(with(base, {"--noise", "mt19937", "-o", "x.png"}), dir),
                     {"--noise", "'mt19937'", "per_sample", "philox"}, 2);
}

TEST(CliSample, ImageIndependentOfBatchSizeAndTensorOutputs) {
  const std::string dir = cli_test_dir("sample_batch");
  ASSERT_EQ(
      run_cli(with({"sample", "-o", "all.png", "--save-tensor", "all.pt", "--save-each", "each"},
                   kTiny),
              dir)
          .code,
      0);
  const auto r = run_cli(
      with({"sample", "-o", "chunks.png", "--batch-size", "3", "--save-tensor", "chunks.npy"},
           kTiny),
      dir);
  ASSERT_EQ(r.code, 0) << r.err;
  at::Tensor all;
  torch::load(all, dir + "/all.pt");
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{10, 1, 28, 28}));
  // .npy: 128-byte header for this shape, then float32 C-order data equal to the unchunked run.
  const std::string npy = read_text_file(dir + "/chunks.npy");
  ASSERT_EQ(npy.substr(0, 6), "\x93NUMPY");
  const uint16_t hlen = static_cast<uint8_t>(npy[8]) | (static_cast<uint8_t>(npy[9]) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0);
  EXPECT_NE(npy.find("'shape': (10, 1, 28, 28)"), std::string::npos);
  ASSERT_EQ(npy.size(), 10u + hlen + 10 * 28 * 28 * 4);
  at::Tensor chunks =
      at::from_blob(const_cast<char*>(npy.data()) + 10 + hlen, {10, 1, 28, 28}, at::kFloat).clone();
  // Same noise per image whatever the chunking; the network's batched float32 GEMMs round
  // differently for other batch sizes, so different chunkings agree to float precision only.
  EXPECT_TRUE(at::allclose(all, chunks, 0, 2e-3)) << (all - chunks).abs().max();
  // Bitwise: the first 5 images of `-n 10 --batch-size 5` are those of `-n 5` (same batches).
  ASSERT_EQ(run_cli(with({"sample", "-o", "five.png", "--batch-size", "5", "-n", "5",
                          "--save-tensor", "five.pt"},
                         {"--steps", "3"}),
                    dir)
                .code,
            0);
  ASSERT_EQ(run_cli(with({"sample", "-o", "ten.png", "--batch-size", "5", "-n", "10",
                          "--save-tensor", "ten.pt"},
                         {"--steps", "3"}),
                    dir)
                .code,
            0);
  at::Tensor five, ten;
  torch::load(five, dir + "/five.pt");
  torch::load(ten, dir + "/ten.pt");
  EXPECT_TRUE(at::equal(five, ten.narrow(0, 0, 5)));
  EXPECT_FALSE(at::equal(ten.narrow(0, 0, 5), ten.narrow(0, 5, 5)));
  EXPECT_TRUE(fs::exists(dir + "/each/000009.png"));
  EXPECT_FALSE(fs::exists(dir + "/each/000010.png"));
}

TEST(CliSample, CorrectionsChangeTheImagesAndCadsGetsEmbeddings) {
  const std::string dir = cli_test_dir("sample_corrections");
  const std::vector<std::string> base = {"sample", "--sampler", "ddim", "--steps", "4", "-n", "4"};
  ASSERT_EQ(run_cli(with(base, {"-o", "plain.png", "--save-tensor", "plain.pt"}), dir).code, 0);
  at::Tensor plain;
  torch::load(plain, dir + "/plain.pt");
  for (const std::string spec :
       {"cads", "epsilon_scaling:b=1.05", "time_shift:window=2,cutoff=100"}) {
    const auto r = run_cli(with(base, {"-c", spec, "-o", "c.png", "--save-tensor", "c.pt"}), dir);
    ASSERT_EQ(r.code, 0) << spec << ": " << r.err;
    at::Tensor c;
    torch::load(c, dir + "/c.pt");
    EXPECT_TRUE(at::isfinite(c).all().item<bool>()) << spec;
    EXPECT_GT((c - plain).abs().max().item<double>(), 1e-3) << spec << " changed nothing";
    const auto rec = nlohmann::json::parse(read_text_file(dir + "/c.json"));
    EXPECT_EQ(rec["resolved"]["corrections"].size(), 1u);
  }
}

TEST(CliSample, ClippedDdimEqualsEuler) {
  // Euler in sigma_ve = alpha-scaled DDIM (eta = 0): with x0 clamped to [-1, 1] (the shipped card)
  // they agree only if DDIM steps with the eps re-derived from the clamped x0.
  const std::string dir = cli_test_dir("sample_ddim_euler");
  for (const std::string s : {"ddim", "euler"})
    ASSERT_EQ(run_cli({"sample", "--sampler", s, "--steps", "8", "-n", "6", "--dtype", "float64",
                       "--save-tensor", s + ".pt", "-o", s + ".png"},
                      dir)
                  .code,
              0);
  at::Tensor ddim, euler;
  torch::load(ddim, dir + "/ddim.pt");
  torch::load(euler, dir + "/euler.pt");
  EXPECT_TRUE(at::allclose(ddim, euler, 0, 1e-5)) << (ddim - euler).abs().max();
}

TEST(CliSample, ListShowsEveryRegistry) {
  const auto r = run_cli({"sample", "--list"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* name : {"dpmpp_2m", "euler_a", "ddim", "karras", "ays", "epsilon_scaling",
                           "cads", "time_shift", "cfg", "discrete"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
}

TEST(CliSample, BadArgumentsFailCleanly) {
  const std::string dir = cli_test_dir("sample_bad");
  expect_clean_error(run_cli({"sample", "--sampler", "no_such_sampler"}, dir),
                     {"no_such_sampler", "dpmpp_2m"}, 2);
  expect_clean_error(run_cli({"sample", "--steps", "-3"}, dir), {"--steps", "-3"}, 2);
  expect_clean_error(run_cli({"sample", "--steps", "abc"}, dir), {"--steps"}, 2);
  expect_clean_error(run_cli({"sample", "--num", "0"}, dir), {"--num"}, 2);
  expect_clean_error(run_cli({"sample", "--schedule", "no_such_spacing"}, dir), {"no_such_spacing"},
                     2);
  expect_clean_error(run_cli({"sample", "--correction", "epsilon_scaling:bogus=1"}, dir), {"bogus"},
                     2);
  expect_clean_error(run_cli({"sample", "--class", "Unicorn"}, dir), {"Unicorn", "Sneaker"}, 2);
  expect_clean_error(run_cli({"sample", "--class", "10"}, dir), {"'10'"}, 2);
  expect_clean_error(run_cli({"sample", "--device", "tpu"}, dir), {"tpu"}, 2);
  expect_clean_error(run_cli({"sample", "--dtype", "int8"}, dir), {"int8"}, 2);
  expect_clean_error(run_cli({"sample", "--model", "missing.pt"}, dir),
                     {"missing.pt", "does not exist"}, 2);
  expect_clean_error(run_cli({"sample", "--from-record", "missing.json"}, dir), {"missing.json"},
                     2);
  expect_clean_error(run_cli({"sample", "--schedule", "file:missing.json"}, dir), {"missing.json"},
                     2);
  // A corrupt model file: junk bytes, and a truncated copy of the real one.
  { std::ofstream(dir + "/junk.pt") << "this is not a model"; }
  expect_clean_error(run_cli({"sample", "--model", "junk.pt"}, dir), {"junk.pt"}, 3);  // I/O
  const std::string real = read_text_file(std::string(std::getenv("DIFFUSE_SOURCE_DIR")) +
                                          "/training/assets/fashion_mnist_dit.pt");
  { std::ofstream(dir + "/truncated.pt", std::ios::binary) << real.substr(0, real.size() / 2); }
  expect_clean_error(run_cli({"sample", "--model", "truncated.pt"}, dir), {"truncated.pt"}, 3);
  // A record that is not one.
  { std::ofstream(dir + "/bad.json") << "{\"hello\": 1}"; }
  expect_clean_error(run_cli({"sample", "--from-record", "bad.json"}, dir),
                     {"bad.json", "not a diffuse"}, 2);
  // Nothing was written by the failed runs.
  EXPECT_FALSE(fs::exists(dir + "/diffuse_samples.png"));
}

TEST(CliSample, ScheduleFileRoundTrip) {
  const std::string dir = cli_test_dir("sample_schedule_file");
  {
    std::ofstream f(dir + "/sched.json");
    f << R"({"format": "diffuse-schedule", "version": 1, "noise_schedule": ")"
      << "discrete:beta_end=0.02;beta_schedule=linear;beta_start=0.0001;num_train_timesteps=1000;"
         "precision=float64;"
         "rescale_betas_zero_snr=false;terminal_alphas_cumprod=0"
      << R"(", "timesteps": [999, 600.5, 250, 40], "final": "zero"})";
  }
  auto r = run_cli({"sample", "--schedule", "file:sched.json", "-n", "2", "-o", "s.png"}, dir);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rec = nlohmann::json::parse(read_text_file(dir + "/s.json"));
  ASSERT_EQ(rec["resolved"]["grid_t"].size(), 5u);
  EXPECT_DOUBLE_EQ(rec["resolved"]["grid_t"][1].get<double>(), 600.5);
  EXPECT_DOUBLE_EQ(rec["resolved"]["grid_t"][3].get<double>(), 40.0);
  EXPECT_EQ(rec["settings"]["steps"], 4);
  // Wrong step count, wrong noise schedule, non-monotone times.
  expect_clean_error(run_cli({"sample", "--schedule", "file:sched.json", "--steps", "5"}, dir),
                     {"5", "4 steps"}, 2);
  {
    std::ofstream f(dir + "/other.json");
    f << R"({"format": "diffuse-schedule", "version": 1, "noise_schedule": "vp", "timesteps": [1.0, 0.5]})";
  }
  expect_clean_error(run_cli({"sample", "--schedule", "file:other.json"}, dir),
                     {"other.json", "'vp'"}, 2);
  {
    std::ofstream f(dir + "/up.json");
    f << R"({"format": "diffuse-schedule", "version": 1, "noise_schedule": "x", "timesteps": [10, 500]})";
  }
  expect_clean_error(run_cli({"sample", "--schedule", "file:up.json"}, dir),
                     {"up.json", "descending"}, 3);  // a malformed file: I/O
}

}  // namespace
