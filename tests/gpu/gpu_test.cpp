// SPDX-License-Identifier: Apache-2.0
// GPU tests (built only with DIFFUSE_CUDA; every test skips itself when no CUDA device is
// visible): every registered sampler on CUDA equals the CPU run; the CUDA-graph loop equals the
// eager loop (every sampler, a DiT with classifier-free guidance); autocast bf16 / fp16 training
// steps on CUDA; the VAE's float16 decode and its float32 fallback. Run by scripts/gpu-check.
#include <diffuse/cuda_graph.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/trainer.h>
#include <diffuse/training/vae.h>

#include <cmath>
#include <string>
#include <vector>

#include <torch/cuda.h>
#include <torch/nn/module.h>

#include "test_util.h"
#include "training/tiny_dit_fixture.h"

namespace diffuse {
namespace {

#define DIFFUSE_REQUIRE_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device visible"

const at::Device kCuda(at::kCUDA, 0);

/// A smooth eps-predictor depending on x and t (pure tensor ops: capturable).
Denoiser smooth_denoiser() {
  return Denoiser([](const Tensor& x, const Tensor& t, const Conditioning&) {
    std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
    shape[0] = -1;
    return x * 0.3 + at::tanh(x) * 0.2 + t.view(shape) * 2e-4;
  });
}

SampleOptions steps(int64_t n, uint64_t seed) {
  SampleOptions o;
  o.num_steps = n;
  o.seed = seed;
  return o;
}

TEST(Gpu, EverySamplerOnCudaEqualsTheCpu) {
  DIFFUSE_REQUIRE_GPU();
  auto schedule = make_schedule("discrete");
  const Denoiser d = smooth_denoiser();
  for (const std::string& name : distinct_sampler_names()) {
    SCOPED_TRACE(name);
    auto sampler = sampler_from_spec(name);
    const Tensor noise = randn({4, 3, 8, 8}, 5);  // float32, CPU
    const Tensor cpu = sample(*sampler, d, *schedule, noise, steps(10, 3));
    const Tensor gpu = sample(*sampler, d, *schedule, noise.to(kCuda), steps(10, 3));
    ASSERT_TRUE(gpu.is_cuda());
    // The noise is drawn on the CPU for every device, so only kernel rounding differs.
    testing::ExpectTensorNear(gpu, cpu, 1e-4, 1e-4, name);
  }
}

TEST(Gpu, CudaGraphEqualsEagerForEverySampler) {
  DIFFUSE_REQUIRE_GPU();
  auto schedule = make_schedule("discrete");
  const Denoiser d = smooth_denoiser();
  for (const std::string& name : distinct_sampler_names()) {
    SCOPED_TRACE(name);
    auto sampler = sampler_from_spec(name);
    const Tensor noise = randn({4, 3, 8, 8}, 5, at::TensorOptions().device(kCuda));
    CudaGraphSampler g(*sampler, d, *schedule, noise, steps(10, 0));
    EXPECT_EQ(g.noise_draws() > 0, sampler->is_stochastic());
    for (uint64_t seed : {3u, 9u}) {  // two replays: new noise and new seeds are picked up
      const Tensor x = randn({4, 3, 8, 8}, 100 + seed, at::TensorOptions().device(kCuda));
      const Tensor eager = sample(*sampler, d, *schedule, x, steps(10, seed));
      const Tensor graph = g.run(x, seed);
      testing::ExpectTensorNear(graph, eager, 1e-5, 1e-5, name + " seed " + std::to_string(seed));
    }
  }
}

TEST(Gpu, CudaGraphDiTWithGuidanceEqualsEager) {
  DIFFUSE_REQUIRE_GPU();
  torch::manual_seed(3);
  DiTOptions o(16, 3);
  o.patch_size(2).hidden_size(64).depth(2).num_heads(4).num_classes(10);
  DiT model(o);
  model->to(kCuda);
  model->eval();
  torch::NoGradGuard no_grad;
  Denoiser d(as_network(model));
  auto schedule = make_schedule("discrete");
  auto sampler = sampler_from_spec("dpmpp_2m");
  SampleOptions so = steps(8, 0);
  so.guidance = make_guidance("cfg", {{"scale", "3"}});
  so.cond.value = at::arange(6, at::kLong).remainder(10);
  so.uncond.value = at::full({6}, 10, at::kLong);
  const Tensor x = randn({6, 3, 16, 16}, 1, at::TensorOptions().device(kCuda));
  CudaGraphSampler g(*sampler, d, *schedule, x, so);
  SampleOptions eager_opts = so;
  eager_opts.cond.value = so.cond.value.to(kCuda);
  eager_opts.uncond.value = so.uncond.value.to(kCuda);
  testing::ExpectTensorNear(g.run(x), sample(*sampler, d, *schedule, x, eager_opts), 1e-4, 1e-4,
                            "dit cfg");
  // New labels through the static conditioning tensors.
  g.cond().value.copy_(at::full({6}, 7, at::kLong));
  eager_opts.cond.value = at::full({6}, 7, at::TensorOptions(at::kLong).device(kCuda));
  testing::ExpectTensorNear(g.run(x), sample(*sampler, d, *schedule, x, eager_opts), 1e-4, 1e-4,
                            "new labels");
}

TEST(Gpu, CudaGraphRefusesWhatItCannotCapture) {
  DIFFUSE_REQUIRE_GPU();
  auto schedule = make_schedule("discrete");
  auto sampler = sampler_from_spec("ddim");
  const Denoiser d = smooth_denoiser();
  EXPECT_ERROR_NAMING(CudaGraphSampler bad(*sampler, d, *schedule, randn({2, 4}, 0), steps(4, 0)),
                      "CUDA tensor");
  SampleOptions with_correction = steps(4, 0);
  with_correction.corrections.push_back(make_correction("epsilon_scaling", {{"b", "1.005"}}));
  EXPECT_ERROR_NAMING(
      CudaGraphSampler(*sampler, d, *schedule, randn({2, 4}, 0).to(kCuda), with_correction),
      "corrections");
  CudaGraphSampler g(*sampler, d, *schedule, randn({2, 4}, 0).to(kCuda), steps(4, 0));
  EXPECT_ERROR_NAMING(g.run(randn({3, 4}, 0).to(kCuda)), "[2, 4]");
}

// ----- autocast training on CUDA

DiT tiny_cuda_dit() {
  DiT m = test::tiny_dit();
  m->to(kCuda);
  return m;
}

std::vector<double> losses_with(const std::string& autocast, double* final_scale = nullptr) {
  TrainerOptions o;
  o.steps(30)
      .batch_size(16)
      .lr(2e-3)
      .ema_decay(0.9)
      .threads(-1)
      .checkpoint_every(0)
      .log_every(1000)
      .autocast(parse_autocast(autocast));
  Trainer<DiT> t(tiny_cuda_dit(), objective_from_spec("denoising"), make_schedule("discrete"),
                 test::tiny_images(64, "gpu_8x8"), o);
  std::vector<double> losses;
  while (t.step() < o.steps()) losses.push_back(t.train_step().loss);
  for (const auto& p : t.model()->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat) << autocast;
  if (final_scale != nullptr) *final_scale = t.loss_scale();
  return losses;
}

TEST(Gpu, AutocastTrainingStepsFollowFloat32) {
  DIFFUSE_REQUIRE_GPU();
  const std::vector<double> fp32 = losses_with("off");
  for (const std::string ac : {"bf16", "fp16"}) {
    SCOPED_TRACE(ac);
    double scale = 0;
    const std::vector<double> l = losses_with(ac, &scale);
    ASSERT_EQ(l.size(), fp32.size());
    double worst = 0;
    for (size_t i = 0; i < l.size(); ++i) {
      ASSERT_TRUE(std::isfinite(l[i]));
      worst = std::max(worst, std::abs(l[i] - fp32[i]) / fp32[i]);
    }
    EXPECT_LT(worst, 0.05);
    EXPECT_LT(l.back() + l[l.size() - 2], 0.9 * (l[0] + l[1]));
    if (ac == "fp16") {
      EXPECT_GT(scale, 1.0);
      EXPECT_LE(scale, 65536.0);
    } else {
      EXPECT_EQ(scale, 1.0);
    }
  }
}

// The SD-XL failure mode: a decoder whose float16 output overflows (here every output is 7e4, past
// float16's 65504) is redone in float32 for the affected tile, and a well-behaved one decodes in
// float16 close to float32.
TEST(Gpu, VaeFloat16DecodeFallsBackToFloat32WhenItOverflows) {
  DIFFUSE_REQUIRE_GPU();
  torch::manual_seed(0);
  AutoencoderKL vae(vae_preset("tiny"));
  vae->to(kCuda);
  torch::NoGradGuard no_grad;
  const at::Tensor latents = at::randn({2, 4, 8, 8}, at::TensorOptions().device(kCuda));
  const at::Tensor reference = vae->decode(latents);
  vae->to(at::kHalf);
  VaeDecodeReport ok;
  const at::Tensor half = vae->decode(latents, {}, &ok);
  EXPECT_EQ(ok.float32_fallbacks, 0);
  EXPECT_LT((half - reference).abs().max().item<double>(), 2e-2);
  {
    auto p = vae->named_parameters(true);
    p["decoder.conv_norm_out.weight"].zero_();
    p["decoder.conv_norm_out.bias"].fill_(1.0);
    at::Tensor w = p["decoder.conv_out.weight"];
    w.zero_();
    w.select(3, 1).select(2, 1).fill_(7e4 / (32.0 * 0.7310586));
    p["decoder.conv_out.bias"].zero_();
  }
  VaeDecodeReport report;
  const at::Tensor out = vae->decode(latents, {}, &report);
  EXPECT_EQ(report.float32_fallbacks, 1);
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  EXPECT_NEAR(out.mean().item<double>(), 7e4, 7e4 * 1e-2);
}

}  // namespace
}  // namespace diffuse
