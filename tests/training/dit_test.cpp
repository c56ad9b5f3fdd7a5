// SPDX-License-Identifier: Apache-2.0
// DiT / MaskDiT: sizes, parameter counts and names against the reference code, adaLN-Zero, the
// token mask's invariants, gradients, embeddings against their formulas, option and input errors.
#include <diffuse/training/dit.h>

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "../test_util.h"

namespace diffuse {
namespace {

using testing::ExpectTensorNear;

int64_t count(const std::vector<at::Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel();
  return n;
}

/// Small MaskDiT: 8x8x2 input, patch 2 -> 16 tokens, class-conditional, learned sigma.
DiTOptions small_maskdit() {
  return DiTOptions(8, 2)
      .hidden_size(32)
      .depth(2)
      .num_heads(4)
      .num_classes(3)
      .learn_sigma(true)
      .decoder_depth(1)
      .decoder_hidden_size(16)
      .decoder_num_heads(2);
}

/// Makes the zero-initialised layers (adaLN modulation, final/decoder linear) random so that every
/// path carries signal.
void perturb_zero_init(DiTImpl& m) {
  torch::NoGradGuard g;
  for (auto& p : m.named_parameters()) {
    const std::string& k = p.key();
    if (k.find("adaLN_modulation") != std::string::npos ||
        k.find("final_layer.linear") != std::string::npos ||
        k.find("decoder_layer.linear") != std::string::npos)
      p.value().normal_(0.0, 0.2);
  }
}

at::Tensor half_mask(int64_t b, int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor order = at::argsort(at::rand({b, n}, gen), /*dim=*/int64_t{1});
  at::Tensor mask = at::zeros({b, n}, at::kBool);
  return mask.scatter(1, order.narrow(1, 0, n / 2), true);
}

TEST(DiT, OutputShapes) {
  torch::manual_seed(0);
  struct Case {
    DiTOptions o;
    int64_t out_c;
  };
  std::vector<Case> cases{
      {DiTOptions(8, 3).hidden_size(16).depth(1).num_heads(2), 3},
      {DiTOptions(12, 1).patch_size(4).hidden_size(24).depth(2).num_heads(3).learn_sigma(true), 2},
      {DiTOptions(8, 4).hidden_size(32).depth(1).num_heads(4).num_classes(10), 4},
      {small_maskdit(), 4},
  };
  for (auto& cs : cases) {
    DiT m(cs.o);
    const int64_t s = cs.o.input_size();
    at::Tensor out = m->forward(at::randn({3, cs.o.in_channels(), s, s}), at::rand({3}) * 999);
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, cs.out_c, s, s}));
    EXPECT_EQ(m->out_channels(), cs.out_c);
    EXPECT_EQ(m->num_tokens(), (s / cs.o.patch_size()) * (s / cs.o.patch_size()));
  }
  DiT md(small_maskdit());
  EXPECT_EQ(md->forward(at::randn({2, 2, 8, 8}), at::ones({2}), {}, half_mask(2, 16, 1)).sizes(),
            (std::vector<int64_t>{2, 4, 8, 8}));
  EXPECT_EQ(md->null_class(), 3);
}

// Reference counts: facebookresearch/DiT @ed81ce2 models.py, DiT_S_2 / DiT_B_2 (input_size 32,
// in_channels 4, num_classes 1000, class_dropout_prob 0.1, learn_sigma True); sum of numel over
// model.parameters() (as train.py logs), which includes the frozen pos_embed (256 x d). Computed by
// hand, 18 d^2 + 15 d per block etc., and by tests/reference/dit_params.py, which builds the
// reference models.py itself (timm's modules stubbed with the same parameters; --xl also gives
// DiT-XL/2's widely quoted 675,129,632).
TEST(DiT, ParameterCountsMatchTheReference) {
  struct Case {
    const char* name;
    int64_t reference_total, d;
  };
  for (const Case& cs : {Case{"S/2", 32963360, 384}, Case{"B/2", 130512416, 768}}) {
    DiTOptions o = dit_preset(cs.name, 32, 4).num_classes(1000).learn_sigma(true);
    // Construction initialises ~130M floats; the count does not depend on the values.
    DiT m(o);
    const int64_t trainable = count(m->parameters());
    EXPECT_EQ(trainable + 256 * cs.d, cs.reference_total) << cs.name;
    EXPECT_EQ(count(m->buffers()), 256 * cs.d) << cs.name;
  }
  // The MaskDiT decoder (DiT-XL/2 encoder, 8 x 512-wide decoder blocks) adds decoder_layer
  // (LN-adaLN 1152 -> 512), mask_token, decoder_pos_embed and 8 blocks conditioned by c (1152-d);
  // counted here on a small instance against the closed form.
  DiT md(DiTOptions(8, 2)
             .hidden_size(32)
             .depth(1)
             .num_heads(4)
             .decoder_depth(2)
             .decoder_hidden_size(16)
             .decoder_num_heads(2));
  const int64_t d = 32, e = 16, p2c = 4 * 2;
  const int64_t block_d =
      3 * d * d + 3 * d + d * d + d + 4 * d * d + 4 * d + 4 * d * d + d + d * 6 * d + 6 * d;
  const int64_t block_e =
      3 * e * e + 3 * e + e * e + e + 4 * e * e + 4 * e + 4 * e * e + e + d * 6 * e + 6 * e;
  const int64_t expected = (4 * 2 * d + d) + (256 * d + d + d * d + d) + block_d +
                           (d * e + e + d * 2 * d + 2 * d) + e + 2 * block_e +
                           (e * p2c + p2c + d * 2 * e + 2 * e);
  EXPECT_EQ(count(md->parameters()), expected);
}

TEST(DiT, ParameterNamesFollowTheReference) {
  DiT m(small_maskdit());
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  for (const auto& b : m->named_buffers()) names.insert(b.key());
  // facebookresearch/DiT @ed81ce2 models.py and Anima-Lab/MaskDiT @73cfb96 models/maskdit.py.
  for (const char* k : {"pos_embed",
                        "x_embedder.proj.weight",
                        "x_embedder.proj.bias",
                        "t_embedder.mlp.0.weight",
                        "t_embedder.mlp.0.bias",
                        "t_embedder.mlp.2.weight",
                        "t_embedder.mlp.2.bias",
                        "y_embedder.embedding_table.weight",
                        "blocks.0.attn.qkv.weight",
                        "blocks.0.attn.qkv.bias",
                        "blocks.0.attn.proj.weight",
                        "blocks.1.attn.proj.bias",
                        "blocks.1.mlp.fc1.weight",
                        "blocks.1.mlp.fc1.bias",
                        "blocks.1.mlp.fc2.weight",
                        "blocks.1.mlp.fc2.bias",
                        "blocks.1.adaLN_modulation.1.weight",
                        "blocks.1.adaLN_modulation.1.bias",
                        "final_layer.linear.weight",
                        "final_layer.linear.bias",
                        "final_layer.adaLN_modulation.1.weight",
                        "final_layer.adaLN_modulation.1.bias",
                        "decoder_pos_embed",
                        "decoder_layer.linear.weight",
                        "decoder_layer.linear.bias",
                        "decoder_layer.adaLN_modulation.1.weight",
                        "mask_token",
                        "decoder_blocks.0.attn.qkv.weight",
                        "decoder_blocks.0.adaLN_modulation.1.weight"})
    EXPECT_EQ(names.count(k), 1u) << k;
  // Shapes that a checkpoint mapping relies on.
  auto params = m->named_parameters();
  EXPECT_EQ(params["y_embedder.embedding_table.weight"].sizes(), (std::vector<int64_t>{4, 32}));
  EXPECT_EQ(params["decoder_blocks.0.adaLN_modulation.1.weight"].sizes(),
            (std::vector<int64_t>{6 * 16, 32}));
  EXPECT_EQ(params["decoder_layer.adaLN_modulation.1.weight"].sizes(),
            (std::vector<int64_t>{2 * 32, 32}));
  EXPECT_EQ(params["final_layer.adaLN_modulation.1.weight"].sizes(),
            (std::vector<int64_t>{2 * 16, 32}));
  EXPECT_EQ(params["final_layer.linear.weight"].sizes(), (std::vector<int64_t>{2 * 2 * 4, 16}));
  EXPECT_EQ(params["mask_token"].sizes(), (std::vector<int64_t>{1, 1, 16}));
  EXPECT_EQ(m->named_buffers()["pos_embed"].sizes(), (std::vector<int64_t>{1, 16, 32}));
  EXPECT_EQ(names.count("y_embedder.embedding_table.weight"), 1u);
  DiT unconditional(DiTOptions(8, 2).hidden_size(16).depth(1).num_heads(2));
  EXPECT_EQ(unconditional->named_parameters().find("y_embedder.embedding_table.weight"), nullptr);
}

TEST(DiT, InitialisationFollowsTheReference) {
  torch::manual_seed(3);
  DiT m(small_maskdit());
  auto p = m->named_parameters();
  // Xavier-uniform bound sqrt(6 / (fan_in + fan_out)); the patch projection counts fan-in C p^2.
  auto bound = [](double fi, double fo) { return std::sqrt(6.0 / (fi + fo)); };
  EXPECT_LE(p["x_embedder.proj.weight"].abs().max().item<double>(), bound(2 * 4, 32));
  EXPECT_GT(p["x_embedder.proj.weight"].abs().max().item<double>(), 0.8 * bound(2 * 4, 32));
  EXPECT_LE(p["blocks.0.attn.qkv.weight"].abs().max().item<double>(), bound(32, 96));
  EXPECT_GT(p["blocks.0.attn.qkv.weight"].abs().max().item<double>(), 0.9 * bound(32, 96));
  EXPECT_EQ(p["blocks.0.attn.qkv.bias"].abs().max().item<double>(), 0.0);
  const double sd = p["t_embedder.mlp.0.weight"].std().item<double>();
  EXPECT_NEAR(sd, 0.02, 0.002);
  EXPECT_NEAR(p["mask_token"].abs().max().item<double>(), 0.02, 0.03);
  for (const char* k :
       {"blocks.0.adaLN_modulation.1.weight", "decoder_blocks.0.adaLN_modulation.1.bias",
        "final_layer.linear.weight", "final_layer.adaLN_modulation.1.weight",
        "decoder_layer.linear.weight", "decoder_layer.adaLN_modulation.1.bias"})
    EXPECT_EQ(p[k].abs().max().item<double>(), 0.0) << k;
}

TEST(DiT, AdaLnZeroGivesZeroOutputUntilPerturbed) {
  torch::manual_seed(1);
  for (DiTOptions o :
       {DiTOptions(8, 2).hidden_size(32).depth(2).num_heads(4).num_classes(5), small_maskdit()}) {
    DiT m(o);
    at::Tensor x = at::randn({2, 2, 8, 8}), t = at::tensor({3.0f, 500.0f});
    at::Tensor y = at::tensor({int64_t{1}, int64_t{0}});
    EXPECT_EQ(m->forward(x, t, y).abs().max().item<double>(), 0.0);
    perturb_zero_init(*m);
    EXPECT_GT(m->forward(x, t, y).abs().min().item<double>(), 0.0);
  }
}

TEST(DiT, AllFalseMaskEqualsTheUnmaskedForward) {
  torch::manual_seed(2);
  DiT m(small_maskdit());
  perturb_zero_init(*m);
  at::Tensor x = at::randn({3, 2, 8, 8}), t = at::tensor({0.0f, 10.0f, 999.0f});
  at::Tensor y = at::tensor({int64_t{0}, int64_t{2}, int64_t{3}});
  at::Tensor full = m->forward(x, t, y);
  at::Tensor masked = m->forward(x, t, y, at::zeros({3, 16}, at::kBool));
  // Same operations on the same values in the same order: bitwise equal.
  EXPECT_TRUE(at::equal(masked, full)) << (masked - full).abs().max().item<double>();
  EXPECT_GT(full.abs().max().item<double>(), 1e-3);
}

TEST(DiT, MaskedPatchesDoNotInfluenceAnyOutput) {
  // The encoder only sees the kept tokens and the decoder replaces the dropped ones by the mask
  // token, so the pixels of masked patches cannot reach any output position.
  torch::manual_seed(4);
  DiT m(small_maskdit());
  perturb_zero_init(*m);
  const int64_t b = 2;
  at::Tensor mask = half_mask(b, 16, 7);
  at::Tensor x = at::randn({b, 2, 8, 8}), t = at::tensor({5.0f, 700.0f});
  // Pixel mask: patch (i, j) = token i*4 + j covers rows 2i..2i+1, columns 2j..2j+1.
  at::Tensor pix =
      mask.reshape({b, 1, 4, 1, 4, 1}).expand({b, 2, 4, 2, 4, 2}).reshape({b, 2, 8, 8});
  at::Tensor x_changed = at::where(pix, at::randn({b, 2, 8, 8}) * 5, x);
  at::Tensor out = m->forward(x, t, {}, mask);
  EXPECT_EQ((x_changed - x).abs().max().item<double>() > 0, true);
  EXPECT_TRUE(at::equal(m->forward(x_changed, t, {}, mask), out));
  // Control: changing one kept patch changes the output.
  at::Tensor x_visible = at::where(pix.logical_not(), x + 1, x);
  EXPECT_GT((m->forward(x_visible, t, {}, mask) - out).abs().max().item<double>(), 1e-4);
  // And without the mask the same change of masked pixels is seen.
  EXPECT_GT((m->forward(x_changed, t) - m->forward(x, t)).abs().max().item<double>(), 1e-4);
}

TEST(DiT, GradientsReachEveryTrainableParameter) {
  torch::manual_seed(5);
  for (bool masked : {false, true}) {
    DiT m(masked ? small_maskdit()
                 : DiTOptions(8, 2).hidden_size(32).depth(2).num_heads(4).num_classes(3));
    perturb_zero_init(*m);
    at::Tensor x = at::randn({4, 2, 8, 8}), t = at::rand({4}) * 999;
    at::Tensor y = at::tensor({int64_t{0}, int64_t{1}, int64_t{2}, int64_t{3}});
    at::Tensor out = m->forward(x, t, y, masked ? half_mask(4, 16, 9) : at::Tensor());
    out.pow(2).mean().backward();
    for (const auto& p : m->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_GT(p.value().grad().abs().max().item<double>(), 0.0)
          << p.key() << (masked ? " (masked)" : "");
    }
    for (const auto& buf : m->named_buffers())
      EXPECT_FALSE(buf.value().requires_grad()) << buf.key();
  }
}

TEST(DiT, TimestepEmbeddingMatchesTheFormula) {
  // DiT TimestepEmbedder.timestep_embedding: [cos(t f_k), sin(t f_k)], f_k = exp(-ln(1e4) k / 128).
  at::Tensor t = at::tensor({0.0, 1.0, 250.5}, at::kDouble);
  at::Tensor e = dit_timestep_embedding(t, 256);
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{3, 256}));
  for (int64_t r = 0; r < 3; ++r) {
    const double tv = t[r].item<double>();
    for (int64_t k : {0, 1, 17, 64, 127}) {
      const double f = std::exp(-std::log(10000.0) * static_cast<double>(k) / 128.0);
      EXPECT_NEAR(e[r][k].item<double>(), std::cos(tv * f), 1e-12) << r << "," << k;
      EXPECT_NEAR(e[r][128 + k].item<double>(), std::sin(tv * f), 1e-12) << r << "," << k;
    }
  }
  // Hand value: t = 1, k = 64: f = 10000^-0.5 = 0.01, cos(0.01) = 0.99995000041666.
  EXPECT_NEAR(e[1][64].item<double>(), 0.99995000041666, 1e-12);
  // float32 path (what the model uses for float inputs) agrees to float precision; odd dims pad a
  // zero.
  ExpectTensorNear(dit_timestep_embedding(t.to(at::kFloat), 256), e, 2e-5, 0, "float32");
  EXPECT_EQ(dit_timestep_embedding(t, 7).select(1, 6).abs().max().item<double>(), 0.0);
}

TEST(DiT, PositionEmbeddingLayoutMatchesTheReference) {
  // DiT get_2d_sincos_pos_embed(dim, grid): meshgrid(w, h) puts the column index first. Token
  // i*grid + j (row i, column j): values [0, dim/4) sin(j w_k), [dim/4, dim/2) cos(j w_k),
  // [dim/2, 3dim/4) sin(i w_k), [3dim/4, dim) cos(i w_k), w_k = 10000^(-k / (dim/4)).
  const int64_t dim = 16, grid = 3, q = dim / 4;
  at::Tensor pe = dit_pos_embed_2d(dim, grid);
  ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{9, 16}));
  for (int64_t i = 0; i < grid; ++i)
    for (int64_t j = 0; j < grid; ++j)
      for (int64_t k = 0; k < q; ++k) {
        const double w = std::pow(10000.0, -static_cast<double>(k) / q);
        const int64_t n = i * grid + j;
        EXPECT_NEAR(pe[n][k].item<double>(), std::sin(j * w), 1e-12);
        EXPECT_NEAR(pe[n][q + k].item<double>(), std::cos(j * w), 1e-12);
        EXPECT_NEAR(pe[n][2 * q + k].item<double>(), std::sin(i * w), 1e-12);
        EXPECT_NEAR(pe[n][3 * q + k].item<double>(), std::cos(i * w), 1e-12);
      }
  // The model's buffers are these values (float32), at encoder and decoder width.
  DiT m(small_maskdit());
  ExpectTensorNear(m->pos_embed[0], dit_pos_embed_2d(32, 4), 1e-7, 0, "pos_embed");
  ExpectTensorNear(m->decoder_pos_embed[0], dit_pos_embed_2d(16, 4), 1e-7, 0, "decoder_pos_embed");
}

TEST(DiT, PatchAndUnpatchifyOrderMatchTheReference) {
  // Token i*g + j is patch (row i, column j); the final linear's per-token output is laid out
  // (p, q, c) as DiT's unpatchify einsum 'nhwpqc->nchpwq'. With the zero-initialised modulation the
  // final layer returns its bias, so the output image shows that layout directly.
  DiT m(
      DiTOptions(8, 3).patch_size(4).hidden_size(16).depth(1).num_heads(2));  // g = 2, p = 4, C = 3
  {
    torch::NoGradGuard g;
    m->final_layer->linear->bias.copy_(at::arange(48, at::kFloat));
  }
  at::Tensor out = m->forward(at::randn({1, 3, 8, 8}), at::zeros({1}));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t a = 0; a < 4; ++a)
      for (int64_t bq = 0; bq < 4; ++bq)
        for (int64_t i : {0, 1})
          EXPECT_EQ(out[0][c][i * 4 + a][4 + bq].item<float>(),
                    static_cast<float>((a * 4 + bq) * 3 + c));
  // Patchify: an input nonzero only in patch (row 1, column 0) gives a token that differs from the
  // bias only at index 1*2 + 0.
  at::Tensor x = at::zeros({1, 3, 8, 8});
  x.narrow(2, 4, 4).narrow(3, 0, 4).fill_(1.0);
  at::Tensor tok = m->x_embedder->forward(x).detach() - m->x_embedder->proj->bias.detach();
  at::Tensor moved = tok.abs().sum(2)[0];
  EXPECT_GT(moved[2].item<double>(), 0.0);
  EXPECT_EQ(moved[0].item<double>() + moved[1].item<double>() + moved[3].item<double>(), 0.0);
}

TEST(DiT, AttentionUsesTheQkvHeadLayoutOfTheReference) {
  // timm Attention: qkv(x).reshape(B, N, 3, heads, head_dim): rows [0, d) are q, [d, 2d) k, [2d,
  // 3d) v, each split into consecutive head_dim blocks.
  torch::manual_seed(6);
  DiTAttention attn(8, 2);
  at::Tensor x = at::randn({1, 5, 8}, at::kFloat);
  at::Tensor out = attn->forward(x);
  at::Tensor w = attn->qkv->weight, bias = attn->qkv->bias;
  std::vector<at::Tensor> heads;
  for (int64_t h = 0; h < 2; ++h) {
    auto part = [&](int64_t which) {
      at::Tensor rows = at::arange(which * 8 + h * 4, which * 8 + h * 4 + 4);
      return at::matmul(x[0], w.index_select(0, rows).t()) + bias.index_select(0, rows);
    };
    at::Tensor q = part(0), k = part(1), v = part(2);
    heads.push_back(at::matmul(at::softmax(at::matmul(q, k.t()) / 2.0, -1), v));
  }
  at::Tensor expected = attn->proj->forward(at::cat(heads, 1)).unsqueeze(0);
  ExpectTensorNear(out, expected, 1e-5, 1e-5, "attention");
}

TEST(DiT, CloneIsIndependentAndEqual) {
  torch::manual_seed(8);
  DiT m(small_maskdit());
  perturb_zero_init(*m);
  auto copy = std::dynamic_pointer_cast<DiTImpl>(m->clone());
  ASSERT_TRUE(copy);
  at::Tensor x = at::randn({2, 2, 8, 8}), t = at::ones({2});
  EXPECT_TRUE(at::equal(copy->forward(x, t), m->forward(x, t)));
  {
    torch::NoGradGuard g;
    copy->final_layer->linear->bias.add_(1.0);
  }
  EXPECT_FALSE(at::equal(copy->forward(x, t), m->forward(x, t)));
}

TEST(DiT, AsNetworkReadsLabelsAndMaskAndDropsSigmaChannels) {
  torch::manual_seed(10);
  DiT m(small_maskdit());
  perturb_zero_init(*m);
  Network net = as_network(m);
  at::Tensor x = at::randn({2, 2, 8, 8}), t = at::tensor({1.0f, 2.0f});
  // No labels = null class; eps channels only.
  at::Tensor out = net(x, t, Conditioning{});
  ASSERT_EQ(out.sizes(), x.sizes());
  at::Tensor null_labels = at::full({2}, 3, at::kLong);
  EXPECT_TRUE(at::equal(out, m->forward(x, t, null_labels).narrow(1, 0, 2)));
  Conditioning c;
  c.value = at::tensor({int64_t{0}, int64_t{2}});
  c.extra["mask"] = half_mask(2, 16, 3);
  EXPECT_TRUE(at::equal(net(x, t, c), m->forward(x, t, c.value, c.extra["mask"]).narrow(1, 0, 2)));
  EXPECT_FALSE(at::equal(net(x, t, c), out));
  // An unconditional model ignores Conditioning.value.
  DiT u(DiTOptions(8, 2).hidden_size(16).depth(1).num_heads(2));
  EXPECT_TRUE(at::equal(as_network(u)(x, t, Conditioning{c.value, {}}), u->forward(x, t)));
}

TEST(DiT, LabelEmbeddingsInPlaceOfLabelsGiveTheSameOutput) {
  torch::manual_seed(11);
  DiT m(DiTOptions(8, 2).hidden_size(32).depth(2).num_heads(4).num_classes(5));
  perturb_zero_init(*m);
  at::Tensor x = at::randn({3, 2, 8, 8}), t = at::tensor({3.0f, 500.0f, 900.0f});
  at::Tensor y = at::tensor({int64_t{1}, int64_t{5}, int64_t{4}});  // 5 = the null class
  const at::Tensor e = m->label_embedding(y, 3, x.device());
  ASSERT_EQ(e.sizes(), (std::vector<int64_t>{3, 32}));
  EXPECT_TRUE(at::equal(e[1], m->label_embedding({}, 1, x.device())[0]))
      << "undefined = null class";
  // The same additions in the same order: bitwise equal.
  EXPECT_TRUE(at::equal(m->forward(x, t, e), m->forward(x, t, y)));
  // Through as_network too (Conditioning.value may hold embeddings, e.g. annealed by CADS).
  EXPECT_TRUE(at::equal(as_network(m)(x, t, Conditioning{e, {}}), m->forward(x, t, y)));
  // A perturbed embedding changes the output; a wrongly sized one is an error naming the shape.
  EXPECT_FALSE(at::equal(m->forward(x, t, e + 0.5), m->forward(x, t, y)));
  try {
    m->forward(x, t, at::zeros({3, 16}));
    ADD_FAILURE() << "no error";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("[3, 16]"), std::string::npos) << err.what();
  }
}

TEST(DiT, OptionsConfigRoundTripAndPresets) {
  const DiTOptions o = small_maskdit().mlp_ratio(2.5);
  const DiTOptions back = dit_options_from_config(to_config(o));
  EXPECT_EQ(to_config(back), to_config(o));
  EXPECT_EQ(back.decoder_hidden_size(), 16);
  EXPECT_EQ(back.mlp_ratio(), 2.5);
  EXPECT_TRUE(back.learn_sigma());
  // A preset with an override; DiT Table 1 sizes.
  const DiTOptions b = dit_options_from_config(
      {{"preset", "B/2"}, {"input_size", "32"}, {"in_channels", "4"}, {"num_classes", "1000"}});
  EXPECT_EQ(b.hidden_size(), 768);
  EXPECT_EQ(b.depth(), 12);
  EXPECT_EQ(b.num_heads(), 12);
  EXPECT_EQ(b.num_classes(), 1000);
  const DiTOptions xl = dit_preset("XL/2", 32, 4);
  EXPECT_EQ(xl.hidden_size() * 1000 + xl.depth() * 10 + xl.num_heads() / 16, 1152000 + 280 + 1);
  EXPECT_ERROR_NAMING(
      dit_options_from_config({{"input_size", "32"}, {"in_channels", "4"}, {"widht", "3"}}),
      "widht");
  EXPECT_ERROR_NAMING(dit_options_from_config({{"in_channels", "4"}}), "input_size");
  EXPECT_ERROR_NAMING(
      dit_options_from_config({{"input_size", "30"}, {"in_channels", "4"}, {"patch_size", "4"}}),
      "input_size (30)");
}

TEST(DiT, BadOptionsAreErrorsNamingTheValue) {
  EXPECT_ERROR_NAMING(DiT(DiTOptions(10, 3).patch_size(4)), "input_size (10)");
  EXPECT_ERROR_NAMING(
      DiT(DiTOptions(8, 3).hidden_size(30).num_heads(3)),
      "hidden_size must be a positive multiple of 4 (2-D sin-cos position embedding), got 30");
  EXPECT_ERROR_NAMING(DiT(DiTOptions(8, 3).hidden_size(32).num_heads(5)), "num_heads (5)");
  EXPECT_ERROR_NAMING(DiT(DiTOptions(8, 0)), "in_channels must be > 0, got 0");
  EXPECT_ERROR_NAMING(DiT(DiTOptions(8, 3).hidden_size(32).num_heads(4).depth(0)),
                      "depth must be >= 1, got 0");
  EXPECT_ERROR_NAMING(DiT(DiTOptions(8, 3).hidden_size(32).num_heads(4).num_classes(-2)), "got -2");
  EXPECT_ERROR_NAMING(DiT(DiTOptions(8, 3).hidden_size(32).num_heads(4).mlp_ratio(0)), "mlp_ratio");
  // A ratio whose MLP width overflows int64_t is refused before any cast (found by
  // fuzz_model_file).
  EXPECT_ERROR_NAMING(DiT(DiTOptions(8, 3).hidden_size(32).num_heads(4).mlp_ratio(3.5e26)),
                      "mlp_ratio = 3.5e+26 with hidden_size = 32");
  EXPECT_ERROR_NAMING(DiT(DiTOptions(8, 3)
                              .hidden_size(32)
                              .num_heads(4)
                              .decoder_depth(1)
                              .decoder_hidden_size(4)
                              .decoder_num_heads(1)
                              .mlp_ratio(0.1)),
                      "decoder MLP width");
  EXPECT_ERROR_NAMING(
      DiT(DiTOptions(8, 3).hidden_size(32).num_heads(4).decoder_depth(1).decoder_hidden_size(18)),
      "decoder_hidden_size must be a positive multiple of 4, got 18");
  EXPECT_ERROR_NAMING(
      DiT(DiTOptions(8, 3).hidden_size(32).num_heads(4).decoder_depth(1).decoder_num_heads(3)),
      "decoder_num_heads (3)");
  EXPECT_ERROR_NAMING(dit_preset("XXL/2", 32, 4), "XXL/2");
  EXPECT_ERROR_NAMING(dit_preset("XXL/2", 32, 4), "tiny, mini, S/2, B/2, L/2, XL/2");
}

TEST(DiT, BadInputsAreErrorsNamingTheValue) {
  DiT m(small_maskdit());
  at::Tensor x = at::randn({2, 2, 8, 8}), t = at::ones({2});
  EXPECT_ERROR_NAMING(m->forward(at::randn({2, 3, 8, 8}), t), "[2, 3, 8, 8]");
  EXPECT_ERROR_NAMING(m->forward(x, at::ones({3})), "[3]");
  EXPECT_ERROR_NAMING(m->forward(x, t, at::tensor({int64_t{0}, int64_t{4}})),
                      "got values in [0, 4]");
  EXPECT_ERROR_NAMING(m->forward(x, t, at::tensor({0.5f, 1.0f})), "Float");
  EXPECT_ERROR_NAMING(m->forward(x, t, {}, at::zeros({2, 16})), "must be a bool tensor");
  EXPECT_ERROR_NAMING(m->forward(x, t, {}, at::zeros({2, 15}, at::kBool)), "[2, 15]");
  at::Tensor uneven = at::zeros({2, 16}, at::kBool);
  uneven[0][3] = true;
  EXPECT_ERROR_NAMING(m->forward(x, t, {}, uneven), "range from 15 to 16");
  EXPECT_ERROR_NAMING(m->forward(x, t, {}, at::ones({2, 16}, at::kBool)), "drops all 16 tokens");
  DiT plain(DiTOptions(8, 2).hidden_size(16).depth(1).num_heads(2));
  EXPECT_ERROR_NAMING(plain->forward(x, t, {}, half_mask(2, 16, 0)), "decoder_depth = 0");
  EXPECT_ERROR_NAMING(plain->forward(x, t, at::zeros({2}, at::kLong)), "unconditional");
}

}  // namespace
}  // namespace diffuse
