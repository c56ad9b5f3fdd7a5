// SPDX-License-Identifier: Apache-2.0
// Mixed precision: detail::AutocastGuard (scoping, nesting, restore) and TrainerOptions::autocast
// on the CPU (bf16; LibTorch's CPU autocast): a tiny DiT trained with bf16 autocast follows the
// float32 run closely, keeps float32 master weights, and bad values are errors naming them. fp16
// (CUDA only, with the loss scaler) is exercised by tests/gpu.
#include <diffuse/training/dit.h>
#include <diffuse/training/trainer.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "training/tiny_dit_fixture.h"

namespace diffuse {
namespace {

namespace fs = std::filesystem;

TEST(AutocastGuard, ScopesNestsAndRestores) {
  const Tensor a = at::randn({4, 8}), b = at::randn({8, 3});
  EXPECT_EQ(at::mm(a, b).scalar_type(), at::kFloat);
  {
    detail::AutocastGuard outer(at::kCPU, at::kBFloat16);
    EXPECT_TRUE(detail::autocast_enabled(at::kCPU));
    EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
    // bf16 products of float inputs: close to float32, not equal.
    const Tensor ref = at::mm(a.to(at::kDouble), b.to(at::kDouble));
    EXPECT_LT((at::mm(a, b).to(at::kDouble) - ref).abs().max().item<double>(), 0.1);
    {
      detail::AutocastGuard off(at::kCPU, at::kBFloat16, /*enabled=*/false);  // changes nothing
      EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
    }
    {
      detail::AutocastGuard inner(at::kCPU, at::kBFloat16);
      EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
    }
    EXPECT_TRUE(detail::autocast_enabled(at::kCPU));  // the inner guard restored the outer state
  }
  EXPECT_FALSE(detail::autocast_enabled(at::kCPU));
  EXPECT_EQ(at::mm(a, b).scalar_type(), at::kFloat);
}

TrainerOptions autocast_options(const std::string& autocast) {
  return TrainerOptions()
      .steps(30)
      .batch_size(16)
      .lr(2e-3)
      .ema_decay(0.9)
      .threads(1)
      .checkpoint_every(0)
      .log_every(1000)
      .autocast(parse_autocast(autocast));
}

std::vector<double> train_losses(Trainer<DiT>& t) {
  std::vector<double> losses;
  while (t.step() < t.options().steps()) losses.push_back(t.train_step().loss);
  return losses;
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / static_cast<double>(to - from);
}

TEST(TrainerAutocast, Bf16OnTheCpuFollowsFloat32AndKeepsFloat32MasterWeights) {
  const Dataset data = test::tiny_images(64, "mixed_8x8");
  std::shared_ptr<const Objective> obj = objective_from_spec("denoising");
  Trainer<DiT> fp32(test::tiny_dit(), obj, make_schedule("discrete"), data,
                    autocast_options("off"));
  Trainer<DiT> bf16(test::tiny_dit(), obj, make_schedule("discrete"), data,
                    autocast_options("bf16"));
  const std::vector<double> a = train_losses(fp32), b = train_losses(bf16);
  ASSERT_EQ(a.size(), 30u);
  ASSERT_EQ(b.size(), 30u);
  for (double l : b) ASSERT_TRUE(std::isfinite(l));
  // Step 1 is equal (the DiT's final layer starts at zero: both predict exactly 0); after the first
  // update the bf16 forward differs, which shows bf16 really was used.
  EXPECT_EQ(a[0], b[0]);
  EXPECT_NE(a[5], b[5]);
  // Same data, draws and initialisation: the per-step losses agree to a few percent (measured: the
  // largest relative difference over the 30 steps is about 1%), and both runs learn.
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(b[i] - a[i]) / a[i]);
  EXPECT_LT(worst, 0.05);
  RecordProperty("worst_relative_loss_difference", std::to_string(worst));
  RecordProperty("last5_fp32", std::to_string(mean(a, 25, 30)));
  RecordProperty("last5_bf16", std::to_string(mean(b, 25, 30)));
  RecordProperty("first5_bf16", std::to_string(mean(b, 0, 5)));
  EXPECT_LT(mean(b, 25, 30), 0.8 * mean(b, 0, 5));
  EXPECT_LT(std::abs(mean(b, 25, 30) - mean(a, 25, 30)) / mean(a, 25, 30), 0.05);
  for (const auto& p : bf16.model()->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat);
  for (const auto& p : bf16.ema()->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat);
  for (const auto& p : bf16.model()->parameters()) EXPECT_EQ(p.grad().scalar_type(), at::kFloat);
  EXPECT_EQ(bf16.loss_scale(), 1.0);
  // Autocast ends with the step: sampling afterwards runs in float32.
  EXPECT_FALSE(detail::autocast_enabled(at::kCPU));
  EXPECT_EQ(bf16.sample(2, 0).scalar_type(), at::kFloat);
  // The fingerprint records the setting (a bf16 checkpoint does not resume an fp32 run).
  EXPECT_NE(bf16.fingerprint().find("autocast=bf16"), std::string::npos);
  EXPECT_EQ(fp32.fingerprint().find("autocast"), std::string::npos);
}

TEST(TrainerAutocast, BadValuesAreErrorsNamingThem) {
  const Dataset data = test::tiny_images(8, "mixed_8x8");
  std::shared_ptr<const Objective> obj = objective_from_spec("denoising");
  EXPECT_ERROR_NAMING(parse_autocast("fp8"), "'fp8'");
  EXPECT_ERROR_NAMING(parse_autocast("BF16"), "'BF16'");
  for (const auto& [name, value] : autocast_names()) EXPECT_EQ(to_string(value), name);
  // fp16 needs CUDA (and its loss scaler); the message says what to use instead.
  const std::string msg = testing::error_of([&] {
    Trainer<DiT> t(test::tiny_dit(), obj, make_schedule("discrete"), data,
                   autocast_options("fp16"));
  });
  EXPECT_NE(msg.find("fp16"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CUDA"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bf16"), std::string::npos) << msg;
}

}  // namespace
}  // namespace diffuse
