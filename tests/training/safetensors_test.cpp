// SPDX-License-Identifier: Apache-2.0
// safetensors: round trips of every dtype, a file written from the format's specification by an
// independent Python script, every malformed-file error, and the DiT <-> reference-DiT mapping
// (names and shapes of the reference DiT-S/2; a reference-layout PyTorch DiT's weights giving the
// PyTorch outputs here; missing / unexpected / mis-shaped keys).
#include <diffuse/training/safetensors.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "../test_util.h"
#include "temp_dir.h"

namespace diffuse {
namespace {

using testing::ExpectTensorNear;
using testing::fixture_path;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A file: 8-byte little-endian length (the header's own unless `declared` is given), header,
/// `data` zero bytes.
std::string make_file(const std::string& header, size_t data = 0,
                      uint64_t declared = std::numeric_limits<uint64_t>::max()) {
  const uint64_t n = declared == std::numeric_limits<uint64_t>::max() ? header.size() : declared;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data, '\0');
}

SafetensorsFile parse(const std::string& bytes) {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                           "bad.safetensors");
}

/// The fixture's values: v[i] = (7 i mod 23) - 11.
at::Tensor base(int64_t n) { return at::remainder(at::arange(n, at::kLong) * 7, 23) - 11; }

TEST(Safetensors, RoundTripOfEveryDtype) {
  test::TempDir dir("safetensors_roundtrip");
  torch::manual_seed(1);
  std::map<std::string, at::Tensor> tensors = {
      {"f64", at::randn({3, 2}, at::kDouble)},
      {"f32.transposed", at::randn({4, 3}).t()},  // not contiguous
      {"f16", at::randn({5}).to(at::kHalf)},
      {"bf16", at::randn({2, 3}).to(at::kBFloat16)},
      {"i64", at::randint(-(int64_t{1} << 40), int64_t{1} << 40, {3}, at::kLong)},
      {"i32", at::randint(-100000, 100000, {2, 2}, at::kInt)},
      {"i16", at::randint(-30000, 30000, {7}, at::kShort)},
      {"i8", at::randint(-128, 128, {1, 3}, at::kChar)},
      {"u8", at::randint(0, 256, {9}, at::kByte)},
      {"bool", at::randn({6}) > 0},
      {"empty", at::zeros({0, 4})},
      {"scalar", at::full({}, 2.5)}};
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "a \"quoted\" ü"}};
  write_safetensors(dir / "x.safetensors", tensors, meta);
  EXPECT_EQ(dir.count(), 1u);  // no temporary left
  const std::string bytes = read_bytes(dir / "x.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u) << "header padded to 8 bytes";
  EXPECT_EQ(bytes[8], '{');

  const SafetensorsFile f = read_safetensors(dir / "x.safetensors");
  EXPECT_EQ(f.metadata, meta);
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_EQ(f.tensors.count(name), 1u) << name;
    const at::Tensor& r = f.tensors.at(name);
    EXPECT_EQ(r.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(r.sizes(), t.sizes()) << name;
    EXPECT_TRUE(r.is_contiguous()) << name;
    EXPECT_TRUE(at::equal(r, t)) << name;
  }
}

TEST(Safetensors, ReadsAFileWrittenFromTheSpecification) {
  // Written by tests/training/fixtures/make_interop_fixtures.py with Python's struct + json,
  // header in insertion order, data in an unrelated order, padded header.
  const SafetensorsFile f = read_safetensors(fixture_path("reference.safetensors"));
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{
                            {"format", "pt"}, {"written_by", "make_interop_fixtures.py"}}));
  ASSERT_EQ(f.tensors.size(), 12u);
  auto expect = [&](const std::string& name, const at::Tensor& want) {
    ASSERT_EQ(f.tensors.count(name), 1u) << name;
    const at::Tensor& got = f.tensors.at(name);
    EXPECT_EQ(got.scalar_type(), want.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), want.sizes()) << name;
    EXPECT_TRUE(at::equal(got, want)) << name << ": " << got << " vs " << want;
  };
  expect("f64", (base(6) * 0.125).to(at::kDouble).reshape({2, 3}));
  expect("f32", (base(24) * 0.25).to(at::kFloat).reshape({2, 3, 4}));
  expect("f16", (base(5) * 0.5).to(at::kHalf));
  expect("bf16", (base(4) * 2.0).to(at::kBFloat16).reshape({2, 2}));
  expect("i64", (base(3) * 1000000007).reshape({3, 1}));
  expect("i32", (base(4) * 100000).to(at::kInt));
  expect("i16", (base(4) * 1000).to(at::kShort));
  expect("i8", base(5).to(at::kChar));
  expect("u8", (base(5) + 11).to(at::kByte));
  expect("bool", base(7) > 0);
  expect("empty", at::zeros({0, 3}));
  expect("scalar", at::full({}, 3.5));
  // Spot values, independent of the formula above: base = -11, -4, 3, 10, -6, ...
  EXPECT_EQ(f.tensors.at("i64")[1][0].item<int64_t>(), -4 * int64_t{1000000007});
  EXPECT_EQ(f.tensors.at("f16")[3].item<float>(), 5.0f);
}

TEST(Safetensors, TruncatedOrOversizedHeaderLengths) {
  EXPECT_ERROR_NAMING(parse(""), "bad.safetensors: not a safetensors file: 0 bytes");
  EXPECT_ERROR_NAMING(parse("\x10\0\0"), "shorter than the 8-byte header length");
  EXPECT_ERROR_NAMING(parse(make_file("{}", 0, 100)),
                      "bad.safetensors: header length 100 bytes exceeds the 2 bytes");
  EXPECT_ERROR_NAMING(parse(make_file("{}", 0, uint64_t{1} << 40)),
                      "exceeds the limit of 100000000");
  // A real file cut short: the last tensor reaches past the end.
  test::TempDir dir("safetensors_truncated");
  const std::string full = read_bytes(fixture_path("reference.safetensors"));
  const std::string cut = dir / "cut.safetensors";
  std::ofstream(cut, std::ios::binary) << full.substr(0, full.size() - 10);
  EXPECT_ERROR_NAMING(read_safetensors(cut), cut + ": tensor 'f64': data_offsets [175, 223]");
  EXPECT_ERROR_NAMING(read_safetensors(cut), "reach past the end of the data buffer");
  std::ofstream(cut, std::ios::binary) << full.substr(0, 40);
  EXPECT_ERROR_NAMING(read_safetensors(cut), "exceeds the 32 bytes after the length field");
  EXPECT_ERROR_NAMING(read_safetensors(dir / "absent.safetensors"),
                      "absent.safetensors: cannot open");
}

TEST(Safetensors, MalformedHeaders) {
  EXPECT_ERROR_NAMING(parse(make_file("{\"a\": ")),
                      "bad.safetensors: the header is not valid JSON");
  EXPECT_ERROR_NAMING(parse(make_file("{} x")), "not valid JSON");
  EXPECT_ERROR_NAMING(parse(make_file("[1, 2]")), "does not start with '{'");
  EXPECT_ERROR_NAMING(parse(make_file("{\"a\": 3}")), "tensor 'a': the entry must be an object");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})", 4)),
      "tensor 'a': unknown dtype 'F33'");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "U16", "shape": [1], "data_offsets": [0, 2]}})", 2)),
      "tensor 'a': dtype 'U16' has no LibTorch equivalent");
  EXPECT_ERROR_NAMING(
      parse(
          make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}})", 4)),
      "tensor 'a': unknown field 'x'");
  EXPECT_ERROR_NAMING(parse(make_file(R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", 4)),
                      "tensor 'a': 'shape' is missing");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", 4)),
      "'data_offsets' must be an array [begin, end], got [4]");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4)),
      "shape [-1] has an entry that is not a non-negative integer");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4)),
      "not a non-negative integer");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                      R"( "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                      8)),
      "the header has the key 'a' twice");
  EXPECT_ERROR_NAMING(parse(make_file(R"({"__metadata__": {"k": 1}})")),
                      "__metadata__ value of 'k' must be a string, got 1");
  EXPECT_ERROR_NAMING(parse(make_file(R"({"__metadata__": [1]})")),
                      "__metadata__ must be an object of strings");
}

TEST(Safetensors, OffsetsSizesOverlapsAndGaps) {
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 100]}})", 8)),
      "tensor 'a': data_offsets [0, 100] reach past the end of the data buffer (8 bytes");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8)),
      "tensor 'a': data_offsets [0, 8] hold 8 bytes but dtype F32 and shape [3] need 12");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8)),
      "data_offsets [8, 4] has begin after end");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                      R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                      12)),
      "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 12)),
      "bytes [8, 12) at the end of the data buffer belong to no tensor");
  EXPECT_ERROR_NAMING(
      parse(make_file(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8)),
      "bytes [0, 4) of the data buffer belong to no tensor (the format requires");
  // 2^32 * 2^32 * 16 elements overflow 64 bits; so do 2^62 float32 bytes * 4.
  EXPECT_ERROR_NAMING(
      parse(make_file(
          R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 4]}})",
          4)),
      "tensor 'a': shape [4294967296,4294967296,16] is too large (its byte size overflows");
  EXPECT_ERROR_NAMING(
      parse(make_file(
          R"({"a": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}})", 4)),
      "overflows 64 bits");
  // A zero in the shape makes any other size fine (0 bytes).
  const SafetensorsFile ok = parse(
      make_file(R"({"a": {"dtype": "F32", "shape": [4294967296, 0], "data_offsets": [0, 0]}})"));
  EXPECT_EQ(ok.tensors.at("a").numel(), 0);
  // BOOL bytes must be 0 or 1.
  std::string b = make_file(R"({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}})", 2);
  b.back() = 7;
  EXPECT_ERROR_NAMING(parse(b), "tensor 'a': BOOL byte 1 is 7");
}

TEST(Safetensors, WriterErrorsNameThePath) {
  test::TempDir dir("safetensors_writer");
  const std::string p = dir / "w.safetensors";
  EXPECT_ERROR_NAMING(write_safetensors(p, {{"c", at::zeros({2}, at::kComplexFloat)}}),
                      "cannot write '" + p + "': safetensors: tensor 'c' has dtype");
  EXPECT_ERROR_NAMING(write_safetensors(p, {{"__metadata__", at::zeros({2})}}),
                      "'__metadata__' cannot name a tensor");
  EXPECT_ERROR_NAMING(write_safetensors(dir / "no/such/dir/w.safetensors", {{"a", at::zeros({1})}}),
                      "no/such/dir/w.safetensors");
  EXPECT_EQ(dir.count(), 0u);
}

// ---- DiT ----

DiTOptions tiny_reference_options() {
  // tiny_dit.safetensors: input 8, patch 2, 2 channels, hidden 16, depth 2, 2 heads, 3 classes,
  // learned sigma.
  return DiTOptions(8, 2).hidden_size(16).depth(2).num_heads(2).num_classes(3).learn_sigma(true);
}

using testing::read_numbers;

TEST(Safetensors, DiTStateDictHasTheReferenceNamesAndShapes) {
  // Names and shapes of the reference DiT-S/2's state_dict (fixture from a PyTorch
  // re-implementation of facebookresearch/DiT models.py's module structure).
  std::ifstream in(fixture_path("dit_s2_reference_shapes.txt"));
  ASSERT_TRUE(in.good());
  std::map<std::string, std::vector<int64_t>> reference;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string name;
    s >> name;
    std::vector<int64_t> shape;
    int64_t d;
    while (s >> d) shape.push_back(d);
    reference[name] = shape;
  }
  ASSERT_EQ(reference.size(), 132u);
  DiT m(dit_preset("S/2", 32, 4).num_classes(1000).learn_sigma(true));
  const auto sd = dit_state_dict(m);
  std::vector<std::string> only_ours, only_reference;
  for (const auto& kv : sd)
    if (!reference.count(kv.first)) only_ours.push_back(kv.first);
  for (const auto& kv : reference) {
    auto it = sd.find(kv.first);
    if (it == sd.end()) {
      only_reference.push_back(kv.first);
      continue;
    }
    EXPECT_EQ(it->second.sizes().vec(), kv.second) << kv.first;
  }
  EXPECT_TRUE(only_ours.empty()) << detail::list_some(only_ours);
  EXPECT_TRUE(only_reference.empty()) << detail::list_some(only_reference);
}

TEST(Safetensors, ReferenceLayoutDiTFromPyTorchGivesThePyTorchOutput) {
  // A reference-layout DiT made in PyTorch (make_interop_fixtures.py): F16 weights, F32 pos_embed,
  // keys prefixed "module.".
  const SafetensorsFile f = read_safetensors(fixture_path("tiny_dit.safetensors"));
  ASSERT_EQ(f.tensors.count("module.blocks.1.attn.qkv.weight"), 1u);
  EXPECT_EQ(f.tensors.at("module.blocks.1.attn.qkv.weight").scalar_type(), at::kHalf);
  torch::manual_seed(5);
  DiT m(tiny_reference_options());
  // The reference's pos_embed (numpy float64 -> float32) equals ours before loading.
  ExpectTensorNear(m->pos_embed, f.tensors.at("module.pos_embed"), 1e-6, 0, "pos_embed");
  load_dit_state_dict(m, f.tensors);
  EXPECT_TRUE(at::equal(m->blocks[1]->as<DiTBlockImpl>()->attn->qkv->weight,
                        f.tensors.at("module.blocks.1.attn.qkv.weight").to(at::kFloat)));
  at::Tensor x = at::sin(at::arange(3 * 2 * 8 * 8, at::kFloat) * 0.37).reshape({3, 2, 8, 8});
  at::Tensor t = at::tensor({0.0f, 17.5f, 999.0f});
  at::Tensor y = at::tensor(at::ArrayRef<int64_t>{0, 2, 3});
  torch::NoGradGuard g;
  const at::Tensor out = m->forward(x, t, y);
  const std::vector<double> want = read_numbers(fixture_path("tiny_dit_expected.txt"));
  ASSERT_EQ(static_cast<int64_t>(want.size()), out.numel());
  ExpectTensorNear(out, at::tensor(want, at::kDouble).reshape({3, 4, 8, 8}), 2e-4, 2e-5,
                   "tiny DiT output vs PyTorch");
}

TEST(Safetensors, DiTRoundTripGivesIdenticalOutputs) {
  test::TempDir dir("safetensors_dit");
  torch::manual_seed(11);
  DiTOptions o = DiTOptions(8, 2)
                     .hidden_size(16)
                     .depth(1)
                     .num_heads(2)
                     .num_classes(3)
                     .decoder_depth(1)
                     .decoder_hidden_size(8)
                     .decoder_num_heads(2);
  DiT a(o);
  {
    torch::NoGradGuard g;
    for (auto& p : a->parameters()) p.normal_(0, 0.2);
  }
  write_safetensors(dir / "dit.safetensors", dit_state_dict(a), {{"model", "test"}});
  torch::manual_seed(12);
  DiT b(o);
  load_dit_state_dict(b, read_safetensors(dir / "dit.safetensors").tensors);
  at::Tensor x = at::randn({2, 2, 8, 8}), t = at::tensor({0.3f, 700.0f});
  at::Tensor y = at::tensor(at::ArrayRef<int64_t>{1, 3});
  torch::NoGradGuard g;
  EXPECT_TRUE(at::equal(a->forward(x, t, y), b->forward(x, t, y)));
  // Also through a DDP-style prefix and into a double model.
  std::map<std::string, at::Tensor> prefixed;
  for (const auto& kv : dit_state_dict(a)) prefixed["module." + kv.first] = kv.second;
  DiT c(o);
  c->to(at::kDouble);
  load_dit_state_dict(c, prefixed);
  const auto loaded = dit_state_dict(c);
  for (const auto& kv : dit_state_dict(a)) {
    const at::Tensor& got = loaded.at(kv.first);
    EXPECT_EQ(got.scalar_type(), at::kDouble) << kv.first;
    EXPECT_TRUE(at::equal(got, kv.second.to(at::kDouble))) << kv.first;
  }
  // float32 vs float64 forward (sin/cos of t = 700 in float32 differ by ~1e-5).
  ExpectTensorNear(c->forward(x.to(at::kDouble), t.to(at::kDouble), y), a->forward(x, t, y), 1e-3,
                   1e-3, "double copy");
}

// The loaders' form (adopt_dit_state_dict into an unloaded_dit): the same model as a copying load,
// without a second copy of the weights; tied or other-dtype tensors are copied, so the model's
// weights never alias one another and stay trainable.
TEST(Safetensors, AdoptingLoadTakesTensorsOverAndUntiesSharedOnes) {
  torch::manual_seed(21);
  DiT a(tiny_reference_options());
  {
    torch::NoGradGuard g;
    for (auto& p : a->parameters()) p.normal_(0, 0.2);
  }
  std::map<std::string, at::Tensor> sd;
  for (const auto& kv : dit_state_dict(a)) sd[kv.first] = kv.second.clone();
  // Tied: one storage under two names (a checkpoint may hold them so).
  sd["blocks.1.mlp.fc1.bias"] = sd["blocks.0.mlp.fc1.bias"];
  sd["t_embedder.mlp.0.bias"] = sd["t_embedder.mlp.0.bias"].to(at::kDouble);  // another dtype
  const void* fc2 = sd["blocks.0.mlp.fc2.weight"].data_ptr();
  std::map<std::string, at::Tensor> want = sd;
  for (auto& kv : want) kv.second = kv.second.to(at::kFloat).clone();

  DiT b = detail::unloaded_dit(tiny_reference_options());
  detail::adopt_dit_state_dict(b, std::move(sd));
  EXPECT_TRUE(sd.empty());
  for (const auto& kv : dit_state_dict(b))
    EXPECT_TRUE(at::equal(kv.second, want.at(kv.first))) << kv.first;
  auto* blk0 = b->blocks[0]->as<DiTBlockImpl>();
  auto* blk1 = b->blocks[1]->as<DiTBlockImpl>();
  EXPECT_EQ(blk0->mlp->fc2->weight.data_ptr(), fc2) << "taken over, not copied";
  EXPECT_TRUE(blk0->mlp->fc2->weight.requires_grad());
  EXPECT_NE(blk0->mlp->fc1->bias.data_ptr(), blk1->mlp->fc1->bias.data_ptr()) << "untied";
  EXPECT_EQ(b->t_embedder->mlp[0]->as<torch::nn::LinearImpl>()->bias.scalar_type(), at::kFloat);
  // The same forward as a copying load into a freshly initialised model.
  DiT c(tiny_reference_options());
  load_dit_state_dict(c, want);
  at::Tensor x = at::randn({2, 2, 8, 8}), t = at::tensor({0.3f, 700.0f});
  at::Tensor y = at::tensor(at::ArrayRef<int64_t>{1, 2});
  torch::NoGradGuard g;
  EXPECT_TRUE(at::equal(b->forward(x, t, y), c->forward(x, t, y)));
  // Trainable: an in-place step changes that weight alone.
  blk0->mlp->fc1->bias.add_(1.0);
  EXPECT_TRUE(at::equal(blk1->mlp->fc1->bias, want.at("blocks.1.mlp.fc1.bias")));
  // On error the dict is left as given and nothing is taken.
  std::map<std::string, at::Tensor> bad = want;
  bad.erase("final_layer.linear.weight");
  const std::string msg =
      testing::error_of([&] { detail::adopt_dit_state_dict(c, std::move(bad)); });
  EXPECT_NE(msg.find("1 missing: final_layer.linear.weight"), std::string::npos) << msg;
  EXPECT_EQ(bad.size(), want.size() - 1);
}

TEST(Safetensors, LoadListsEveryMissingUnexpectedAndMisshapedKey) {
  torch::manual_seed(2);
  DiT m(tiny_reference_options());
  std::map<std::string, at::Tensor> sd = dit_state_dict(m);
  for (auto& kv : sd) kv.second = kv.second.clone();
  sd.erase("blocks.0.mlp.fc1.bias");
  sd.erase("final_layer.linear.weight");
  sd["blocks.7.attn.qkv.weight"] = at::zeros({48, 16});
  sd["y_embedder.embedding_table.weight"] = at::zeros({3, 16});  // reference without a null row
  sd["t_embedder.mlp.0.bias"] = at::zeros({16}, at::kLong);
  const at::Tensor before = m->x_embedder->proj->weight.clone();
  sd["x_embedder.proj.weight"] = at::zeros_like(before);
  const std::string msg = testing::error_of([&] { load_dit_state_dict(m, sd); });
  for (const char* part :
       {"load_dit_state_dict: 2 missing: blocks.0.mlp.fc1.bias, final_layer.linear.weight",
        "1 unexpected: blocks.7.attn.qkv.weight",
        "1 shape mismatched: y_embedder.embedding_table.weight [3, 16] vs model [4, 16]",
        "no null-class row", "1 not floating point: t_embedder.mlp.0.bias (Long)"})
    EXPECT_NE(msg.find(part), std::string::npos) << part << " not in: " << msg;
  EXPECT_TRUE(at::equal(m->x_embedder->proj->weight, before)) << "nothing loaded on error";
  // Many missing: the first few and the count.
  EXPECT_ERROR_NAMING(load_dit_state_dict(m, {{"pos_embed", m->pos_embed.clone()}}), "in all)");
  // Non-strict: a subset loads, unknown keys are ignored, shapes are still checked.
  load_dit_state_dict(m,
                      {{"x_embedder.proj.weight", at::zeros_like(before)}, {"foo", at::zeros({1})}},
                      /*strict=*/false);
  EXPECT_EQ(m->x_embedder->proj->weight.abs().sum().item<double>(), 0.0);
  EXPECT_ERROR_NAMING(load_dit_state_dict(m, {{"x_embedder.proj.weight", at::zeros({1})}}, false),
                      "x_embedder.proj.weight [1] vs model [16, 2, 2, 2]");
  EXPECT_ERROR_NAMING(load_dit_state_dict(m, {{"foo", at::zeros({1})}}, false),
                      "no key of the state dict names a tensor of the model");
  // The same tensor with and without the prefix.
  EXPECT_ERROR_NAMING(
      load_dit_state_dict(
          m, {{"pos_embed", m->pos_embed.clone()}, {"module.pos_embed", m->pos_embed.clone()}},
          false),
      "duplicated");
}

TEST(Safetensors, DiTFileCarriesItsArchitecture) {
  test::TempDir dir("safetensors_dit_file");
  torch::manual_seed(4);
  DiT a(tiny_reference_options());
  {
    torch::NoGradGuard g;
    for (auto& p : a->parameters()) p.normal_(0, 0.2);
  }
  save_dit_safetensors(dir / "m.safetensors", a, {{"note", "x"}});
  const SafetensorsFile f = read_safetensors(dir / "m.safetensors");
  EXPECT_EQ(f.metadata.at("note"), "x");
  EXPECT_EQ(parse_config(f.metadata.at(kDiTMetadataKey)), to_config(a->options));
  DiT b = load_dit_safetensors(dir / "m.safetensors");
  EXPECT_EQ(to_config(b->options), to_config(a->options));
  at::Tensor x = at::randn({2, 2, 8, 8}), t = at::tensor({5.0f, 50.0f});
  at::Tensor y = at::tensor(at::ArrayRef<int64_t>{0, 3});
  torch::NoGradGuard g;
  EXPECT_TRUE(at::equal(a->forward(x, t, y), b->forward(x, t, y)));
  // The reference-layout fixture has no architecture metadata: options must be given.
  EXPECT_ERROR_NAMING(load_dit_safetensors(fixture_path("tiny_dit.safetensors")),
                      "tiny_dit.safetensors: no 'diffuse_dit' metadata");
  DiT c = load_dit_safetensors(fixture_path("tiny_dit.safetensors"), tiny_reference_options());
  EXPECT_EQ(c->options.num_classes(), 3);
  // Options that do not fit the weights: the path and the mismatches.
  EXPECT_ERROR_NAMING(load_dit_safetensors(fixture_path("tiny_dit.safetensors"),
                                           tiny_reference_options().learn_sigma(false)),
                      "tiny_dit.safetensors: load_dit_state_dict: 2 shape mismatched: "
                      "module.final_layer.linear.bias [16] vs model [8]");
}

}  // namespace
}  // namespace diffuse
