// SPDX-License-Identifier: Apache-2.0
// DiT step caching (DiTStepCache): threshold 0 is the plain forward bit for bit; a reused call is
// the embeddings + the stored residual + the final layer; the accumulated-change rule, max_reuse,
// shape changes and reset(); sampling through a cached network with every kind of sampler;
// the option errors.
#include <diffuse/training/dit.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>

#include <diffuse/all.h>

#include "../test_util.h"

namespace diffuse {
namespace {

/// A 3-block class-conditional DiT on 8x8x2 inputs whose zero-initialised layers (adaLN, final
/// linear) are made random, so that the modulated input depends on t and the blocks do work.
DiT random_dit() {
  torch::manual_seed(3);
  DiT m(DiTOptions(8, 2).patch_size(2).hidden_size(32).depth(3).num_heads(4).num_classes(3));
  at::NoGradGuard no_grad;
  at::Generator g = at::detail::createCPUGenerator(11);
  for (auto& p : m->parameters()) p.add_(at::randn(p.sizes(), g) * 0.05);
  m->eval();
  return m;
}

Tensor labels(int64_t b) { return at::arange(b, at::kLong).remainder(3); }

Tensor times(int64_t b, double t) { return at::full({b}, t); }

TEST(DiTStepCache, ThresholdZeroIsThePlainForwardBitForBit) {
  DiT m = random_dit();
  at::NoGradGuard no_grad;
  DiTStepCache cache(0.0);
  const Tensor x = at::randn({4, 2, 8, 8});
  for (double t : {999.0, 950.0, 950.0, 900.0}) {
    const Tensor want = m->forward(x, times(4, t), labels(4));
    EXPECT_TRUE(at::equal(m->forward_cached(x, times(4, t), labels(4), cache), want)) << t;
  }
  EXPECT_EQ(cache.computed(), 4);
  EXPECT_EQ(cache.reused(), 0);
}

TEST(DiTStepCache, AReusedCallAddsTheStoredResidualToTheNewEmbedding) {
  DiT m = random_dit();
  at::NoGradGuard no_grad;
  DiTStepCache cache(1e9);  // reuse whenever possible
  const Tensor x1 = at::randn({2, 2, 8, 8}), x2 = at::randn({2, 2, 8, 8});
  const Tensor t1 = times(2, 700), t2 = times(2, 650), y = labels(2);
  const Tensor first = m->forward_cached(x1, t1, y, cache);
  EXPECT_TRUE(at::equal(first, m->forward(x1, t1, y)));
  const Tensor second = m->forward_cached(x2, t2, y, cache);
  EXPECT_EQ(cache.computed(), 1);
  EXPECT_EQ(cache.reused(), 1);
  // By hand: the residual of call 1 (blocks(h1) - h1), added to call 2's embedding h2.
  auto embed = [&](const Tensor& x) { return m->x_embedder->forward(x) + m->pos_embed; };
  auto cond = [&](const Tensor& t) {
    return m->t_embedder->forward(t, at::kFloat) + m->y_embedder->forward(y);
  };
  auto blocks = [&](Tensor h, const Tensor& c) {
    for (const auto& blk : *m->blocks) h = blk->as<DiTBlockImpl>()->forward(h, c);
    return h;
  };
  const Tensor h1 = embed(x1), h2 = embed(x2), c2 = cond(t2);
  const Tensor h = h2 + (blocks(h1, cond(t1)) - h1);
  const Tensor want = m->final_layer->forward(h, c2)
                          .reshape({2, 4, 4, 2, 2, 2})
                          .permute({0, 5, 1, 3, 2, 4})
                          .reshape({2, 2, 8, 8});
  testing::ExpectTensorNear(second, want, 1e-5, 1e-5);
  // ...which is not the uncached output.
  EXPECT_GT((second - m->forward(x2, t2, y)).abs().max().item<double>(), 1e-3);
}

TEST(DiTStepCache, TheAccumulatedChangeDecidesAndMaxReuseCapsTheRun) {
  DiT m = random_dit();
  at::NoGradGuard no_grad;
  const Tensor x = at::randn({2, 2, 8, 8}), y = labels(2);
  {
    // A change in t is never below a tiny threshold: every call runs the blocks.
    DiTStepCache cache(1e-12);
    for (double t : {900.0, 890.0, 880.0}) m->forward_cached(x, times(2, t), y, cache);
    EXPECT_EQ(cache.computed(), 3);
    // The same input twice is no change at all: reused even at a tiny threshold.
    m->forward_cached(x, times(2, 880.0), y, cache);
    EXPECT_EQ(cache.reused(), 1);
  }
  {
    // max_reuse 2: compute, reuse, reuse, compute, reuse, reuse, compute.
    DiTStepCache cache(1e9, 2);
    for (int i = 0; i < 7; ++i) m->forward_cached(x, times(2, 900.0 - i), y, cache);
    EXPECT_EQ(cache.computed(), 3);
    EXPECT_EQ(cache.reused(), 4);
    cache.reset();
    EXPECT_EQ(cache.computed() + cache.reused(), 0);
    m->forward_cached(x, times(2, 500.0), y, cache);
    EXPECT_EQ(cache.computed(), 1);  // nothing stored after reset
  }
  {
    // The changes add up from the last call that ran the blocks: threshold 1.5 d1 (d1 = the
    // relative change of the modulated input from t = 900 to 800, d2 from 800 to 700, computed
    // here as the cache does): 900 runs, 800 reuses (d1 < 1.5 d1), 700 runs iff d1 + d2 >= 1.5 d1.
    auto* first = (*m->blocks)[0]->as<DiTBlockImpl>();
    auto modulated = [&](double t) {
      const Tensor c = m->t_embedder->forward(times(2, t), at::kFloat) + m->y_embedder->forward(y);
      const auto mod = first->adaLN_modulation->forward(c).chunk(6, 1);
      const Tensor h = m->x_embedder->forward(x) + m->pos_embed;
      const Tensor n = at::layer_norm(h, {h.size(-1)}, {}, {}, 1e-6);
      return n * (mod[1].unsqueeze(1) + 1) + mod[0].unsqueeze(1);
    };
    auto rel = [&](double a, double b) {
      const Tensor ma = modulated(a), mb = modulated(b);
      return (mb - ma).abs().mean().item<double>() / ma.abs().mean().item<double>();
    };
    const double d1 = rel(900, 800), d2 = rel(800, 700);
    ASSERT_GT(d1, 1e-6);
    ASSERT_GT(std::fabs(d2 - 0.5 * d1), 1e-6 * d1) << "too close to the threshold to decide";
    DiTStepCache cache(1.5 * d1);
    for (double t : {900.0, 800.0, 700.0}) m->forward_cached(x, times(2, t), y, cache);
    EXPECT_EQ(cache.reused(), d1 + d2 < 1.5 * d1 ? 2 : 1) << "d1 " << d1 << " d2 " << d2;
  }
}

TEST(DiTStepCache, ANewBatchShapeRunsTheBlocks) {
  DiT m = random_dit();
  at::NoGradGuard no_grad;
  DiTStepCache cache(1e9);
  m->forward_cached(at::randn({2, 2, 8, 8}), times(2, 900), labels(2), cache);
  const Tensor x3 = at::randn({3, 2, 8, 8});
  const Tensor out = m->forward_cached(x3, times(3, 890), labels(3), cache);
  EXPECT_EQ(cache.computed(), 2);
  EXPECT_TRUE(at::equal(out, m->forward(x3, times(3, 890), labels(3))));
}

TEST(DiTStepCache, EverySamplerKindRunsThroughACachedNetworkWithGuidance) {
  DiT m = random_dit();
  const auto schedule = make_schedule("discrete");  // DDPM linear betas, T = 1000
  for (const char* name : {"ddim", "dpmpp_2m", "euler_a", "heun", "dpmpp_sde", "unipc"}) {
    SCOPED_TRACE(name);
    const auto sampler = sampler_from_spec(name);
    SampleOptions o;
    o.num_steps = 10;
    o.seed = 4;
    o.guidance = make_guidance("cfg", {{"scale", "2"}});
    o.cond.value = labels(2);
    o.uncond.value = at::full({2}, 3, at::kLong);
    auto cache = std::make_shared<DiTStepCache>(0.2);
    at::NoGradGuard no_grad;
    const Tensor plain =
        sample(*sampler, Denoiser(as_network(m)), *schedule, randn({2, 2, 8, 8}, 4), o);
    const Tensor cached = sample(*sampler, Denoiser(as_network(m, false, cache)), *schedule,
                                 randn({2, 2, 8, 8}, 4), o);
    EXPECT_TRUE(at::isfinite(cached).all().item<bool>());
    EXPECT_EQ(cache->computed() + cache->reused(), sampler->model_calls(10));
    EXPECT_GT(cache->computed(), 0);
    // The cached run stays near the plain one (a random network: loose).
    EXPECT_LT((cached - plain).abs().max().item<double>(), 0.5 * plain.abs().max().item<double>());
  }
}

TEST(DiTStepCache, BadOptionsAndAMaskAreErrors) {
  EXPECT_THROW(DiTStepCache(-0.1), Error);
  EXPECT_THROW(DiTStepCache(std::nan("")), Error);
  EXPECT_THROW(DiTStepCache(0.1, -1), Error);
  try {
    DiTStepCache c(-2.5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-2.5"), std::string::npos) << e.what();
  }
  DiT m = random_dit();
  Conditioning c;
  c.extra["mask"] = at::zeros({1, 16}, at::kBool);
  at::NoGradGuard no_grad;
  EXPECT_THROW(as_network(m, false, std::make_shared<DiTStepCache>(0.1))(at::randn({1, 2, 8, 8}),
                                                                         times(1, 10), c),
               Error);
}

}  // namespace
}  // namespace diffuse
