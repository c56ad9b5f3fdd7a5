// SPDX-License-Identifier: Apache-2.0
// TorchScript models as Networks: modules defined here in TorchScript (conditional,
// unconditional, learned sigma, wrong shape / arity / types, failing forward), a file that is not
// TorchScript, the diffuse_card attribute, and a module exported from PyTorch by
// scripts/export_torchscript.py whose output for a fixed input must match PyTorch's.
#include <diffuse/training/torchscript.h>

#include <gtest/gtest.h>
#include <torch/serialize.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "../test_util.h"
#include "temp_dir.h"

namespace diffuse {
namespace {

using testing::ExpectTensorNear;
using testing::fixture_path;

/// Saves a module whose methods are `source` (TorchScript) to dir/name; returns the path.
std::string save_module(const test::TempDir& dir, const std::string& name,
                        const std::string& source, const std::string& card = "") {
  torch::jit::Module m("TestModel");
  if (!card.empty()) m.register_attribute("diffuse_card", c10::StringType::get(), card);
  m.define(source);
  const std::string path = dir / name;
  m.save(path);
  return path;
}

TorchScriptOptions shape_opts(std::vector<int64_t> shape, int64_t num_classes = 0) {
  TorchScriptOptions o;
  o.sample_shape = std::move(shape);
  o.num_classes = num_classes;
  return o;
}

TEST(TorchScript, ConditionalModuleGetsTimeAndLabels) {
  test::TempDir dir("ts_conditional");
  const std::string path = save_module(dir, "cond.pt", R"(
def forward(self, x, t, y):
    return x * 2.0 + t.view(-1, 1, 1, 1) + 100.0 * y.view(-1, 1, 1, 1).float()
)",
                                       "prediction=epsilon,num_classes=5");
  TorchScriptNetwork ts = load_torchscript(path, shape_opts({1, 4, 4}, 5));
  EXPECT_TRUE(ts.conditional);
  ASSERT_TRUE(ts.card.has_value());
  EXPECT_EQ(parse_config(*ts.card).at("num_classes"), "5");
  at::Tensor x = at::randn({2, 1, 4, 4}), t = at::tensor({0.25f, 3.0f});
  Conditioning c;
  c.value = at::tensor(at::ArrayRef<int64_t>{1, 4});
  const at::Tensor want =
      x * 2 + t.view({-1, 1, 1, 1}) + 100.0 * c.value.view({-1, 1, 1, 1}).to(at::kFloat);
  ExpectTensorNear(ts.network(x, t, c), want, 1e-6, 0, "with labels");
  // No labels: the null class (num_classes = 5) is passed.
  ExpectTensorNear(ts.network(x, t, {}), x * 2 + t.view({-1, 1, 1, 1}) + 500.0, 1e-5, 0,
                   "null class");
  // Without num_classes the null class is unknown.
  TorchScriptNetwork no_k = load_torchscript(path);
  EXPECT_ERROR_NAMING(no_k.network(x, t, {}), "cond.pt: the model takes class labels but none");
  // The two-argument convenience loader (no probe, no card).
  Network n = load_torchscript_network(path);
  ExpectTensorNear(n(x, t, c), want, 1e-6, 0, "load_torchscript_network");
  // Inputs of the wrong sample shape are refused when the shape is known.
  EXPECT_ERROR_NAMING(ts.network(at::randn({2, 1, 5, 4}), t, c),
                      "x is [2, 1, 5, 4] but the model takes samples of shape [1, 4, 4]");
}

TEST(TorchScript, UnconditionalModuleIsCalledWithTwoArguments) {
  test::TempDir dir("ts_uncond");
  const std::string path = save_module(dir, "uncond.pt", R"(
def forward(self, x, t):
    return x - t.view(-1, 1, 1, 1)
)");
  TorchScriptNetwork ts = load_torchscript(path, shape_opts({3, 2, 2}));
  EXPECT_FALSE(ts.conditional);
  EXPECT_FALSE(ts.card.has_value());
  at::Tensor x = at::randn({2, 3, 2, 2}), t = at::tensor({1.0f, -2.0f});
  Conditioning c;
  c.value = at::tensor(at::ArrayRef<int64_t>{0, 1});  // ignored
  ExpectTensorNear(ts.network(x, t, c), x - t.view({-1, 1, 1, 1}), 0, 0, "unconditional");
  // Extra arguments with defaults are allowed and not passed.
  const std::string with_default = save_module(dir, "default.pt", R"(
def forward(self, x, t, scale: float = 3.0):
    return x * scale
)");
  ExpectTensorNear(load_torchscript(with_default).network(x, t, {}), x * 3, 0, 0, "default arg");
}

TEST(TorchScript, LearnedSigmaOutputKeepsTheFirstChannels) {
  test::TempDir dir("ts_sigma");
  const std::string path = save_module(dir, "sigma.pt", R"(
def forward(self, x, t, y):
    return torch.cat([x * 3.0, x * 0.0 - 7.0], 1)
)");
  TorchScriptNetwork ts = load_torchscript(path, shape_opts({2, 4, 4}, 10));
  at::Tensor x = at::randn({3, 2, 4, 4});
  ExpectTensorNear(ts.network(x, at::ones({3}), {}), x * 3, 1e-6, 0, "eps channels");
}

TEST(TorchScript, WrongOutputShapeIsReportedAtLoad) {
  test::TempDir dir("ts_shape");
  const std::string path = save_module(dir, "model.pt", R"(
def forward(self, x, t, y):
    return x.repeat(1, 3, 1, 1)
)");
  EXPECT_ERROR_NAMING(load_torchscript(path, shape_opts({1, 28, 28}, 10)),
                      path + ": forward returned [1, 3, 28, 28], expected [1, 1, 28, 28]");
  // Without a probe it is caught at the first call.
  TorchScriptOptions no_probe = shape_opts({1, 28, 28}, 10);
  no_probe.probe = false;
  Network n = load_torchscript(path, no_probe).network;
  EXPECT_ERROR_NAMING(n(at::zeros({2, 1, 28, 28}), at::zeros({2}), {}),
                      "forward returned [2, 3, 28, 28], expected [2, 1, 28, 28]");
  const std::string spatial = save_module(dir, "spatial.pt", R"(
def forward(self, x, t):
    return x[:, :, 1:, :]
)");
  EXPECT_ERROR_NAMING(load_torchscript(spatial, shape_opts({1, 8, 8})),
                      "forward returned [1, 1, 7, 8], expected [1, 1, 8, 8]");
}

TEST(TorchScript, WrongSignaturesAreRefused) {
  test::TempDir dir("ts_signature");
  EXPECT_ERROR_NAMING(load_torchscript(save_module(dir, "one.pt", R"(
def forward(self, x):
    return x
)")),
                      "one.pt: forward(x: Tensor) takes 1 required arguments; expected (x, t) or "
                      "(x, t, y)");
  EXPECT_ERROR_NAMING(load_torchscript(save_module(dir, "four.pt", R"(
def forward(self, x, t, y, z):
    return x
)")),
                      "takes 4 required arguments");
  EXPECT_ERROR_NAMING(
      load_torchscript(save_module(dir, "float_t.pt", R"(
def forward(self, x, t: float):
    return x
)")),
      "float_t.pt: forward(x: Tensor, t: float): argument 2 ('t') must be a Tensor");
  EXPECT_ERROR_NAMING(load_torchscript(save_module(dir, "tuple.pt", R"(
def forward(self, x, t):
    return x, t
)")),
                      "must return one Tensor, returns Tuple[Tensor, Tensor]");
  torch::jit::Module no_forward("NoForward");
  no_forward.define("def other(self, x):\n    return x\n");
  no_forward.save(dir / "noforward.pt");
  EXPECT_ERROR_NAMING(load_torchscript(dir / "noforward.pt"), "has no forward method");
}

TEST(TorchScript, FailingForwardAndNonTorchScriptFilesGiveOneLineErrors) {
  test::TempDir dir("ts_errors");
  const std::string bad_view = save_module(dir, "view.pt", R"(
def forward(self, x, t):
    return x.view(7, -1)
)");
  EXPECT_ERROR_NAMING(
      load_torchscript(bad_view, shape_opts({1, 4, 4})),
      "view.pt: forward failed: RuntimeError: shape '[7, -1]' is invalid for input of size 16");
  std::ofstream(dir / "text.pt") << "this is not a zip archive\n";
  EXPECT_ERROR_NAMING(load_torchscript(dir / "text.pt"),
                      "text.pt: not a loadable TorchScript module (");
  EXPECT_ERROR_NAMING(load_torchscript_network(dir / "absent.pt"), "absent.pt: cannot open");
  // torch::save writes a tensor into an archive that loads as a module without forward.
  torch::save(at::ones({2}), dir / "tensor.pt");
  EXPECT_ERROR_NAMING(load_torchscript(dir / "tensor.pt"),
                      "tensor.pt: the TorchScript module has no forward method");
  EXPECT_ERROR_NAMING(load_torchscript(bad_view, shape_opts({1, 4})),
                      "sample_shape must be [C, H, W]");
  // A PyTorch checkpoint (torch.save of a state dict), the most likely wrong file.
  EXPECT_ERROR_NAMING(load_torchscript(fixture_path("pytorch_checkpoint.pt")),
                      "pytorch_checkpoint.pt: not a loadable TorchScript module (");
  EXPECT_ERROR_NAMING(load_torchscript(fixture_path("pytorch_checkpoint.pt")),
                      "a torch.save() checkpoint rather than TorchScript?");
}

TEST(TorchScript, CardAttribute) {
  test::TempDir dir("ts_card");
  const std::string path = save_module(dir, "card.pt", "def forward(self, x, t):\n    return x\n",
                                       "schedule=cosine,prediction=v");
  EXPECT_EQ(torchscript_attribute(path, "diffuse_card"),
            std::optional<std::string>("schedule=cosine,prediction=v"));
  EXPECT_FALSE(torchscript_attribute(path, "other").has_value());
  torch::jit::Module m("IntAttr");
  m.register_attribute("diffuse_card", c10::IntType::get(), int64_t{3});
  m.define("def forward(self, x, t):\n    return x\n");
  EXPECT_FALSE(torchscript_attribute(m, "diffuse_card").has_value()) << "not a string";
}

using testing::read_numbers;

TEST(TorchScript, ModuleExportedFromPyTorchGivesThePyTorchOutput) {
  // tests/training/fixtures/tiny_eps.pt and tiny_eps_expected.txt, made by
  // scripts/export_torchscript.py (torch.jit.script of a small conv net, 1 x 8 x 8, 4 classes).
  TorchScriptNetwork ts = load_torchscript(fixture_path("tiny_eps.pt"), shape_opts({1, 8, 8}, 4));
  EXPECT_TRUE(ts.conditional);
  ASSERT_TRUE(ts.card.has_value());
  const Config card = parse_config(*ts.card);
  EXPECT_EQ(card.at("prediction_type"), "epsilon");
  EXPECT_EQ(card.at("sample_shape"), "1x8x8");
  EXPECT_NO_THROW(parse_model_card(*ts.card, "tiny_eps.pt"));
  EXPECT_EQ(card.at("num_classes"), "4");
  at::Tensor x = at::cos(at::arange(2 * 64, at::kFloat) * 0.11).reshape({2, 1, 8, 8});
  at::Tensor t = at::tensor({3.0f, 500.0f});
  Conditioning c;
  c.value = at::tensor(at::ArrayRef<int64_t>{2, 4});
  const std::vector<double> want = read_numbers(fixture_path("tiny_eps_expected.txt"));
  ASSERT_EQ(want.size(), 128u);
  const at::Tensor expected = at::tensor(want, at::kDouble).reshape({2, 1, 8, 8});
  torch::NoGradGuard g;
  ExpectTensorNear(ts.network(x, t, c), expected, 1e-6, 1e-5, "TorchScript vs PyTorch");
  // Row 1 used the null class 4: without labels the same output.
  ExpectTensorNear(ts.network(x, t, {}).narrow(0, 1, 1), expected.narrow(0, 1, 1), 1e-6, 1e-5,
                   "null class");
}

// load_model freezes a TorchScript module for inference by default (LoadModelOptions::
// freeze_torchscript): the same outputs as the module as loaded, the format says which; a module
// that assigns an attribute in forward is frozen too and keeps working.
TEST(TorchScript, LoadModelFreezesWithoutChangingTheOutputs) {
  LoadModelOptions frozen_options, plain_options;
  plain_options.freeze_torchscript = false;
  const LoadedModel frozen = load_model(fixture_path("tiny_eps.pt"), frozen_options);
  const LoadedModel plain = load_model(fixture_path("tiny_eps.pt"), plain_options);
  EXPECT_EQ(frozen.format, "TorchScript (frozen)");
  EXPECT_EQ(plain.format, "TorchScript");
  at::Tensor x = at::cos(at::arange(2 * 64, at::kFloat) * 0.11).reshape({2, 1, 8, 8});
  at::Tensor t = at::tensor({3.0f, 500.0f});
  Conditioning c;
  c.value = at::tensor(at::ArrayRef<int64_t>{2, 4});
  torch::NoGradGuard g;
  EXPECT_TRUE(at::equal(frozen.network(x, t, c), plain.network(x, t, c)));

  test::TempDir dir("ts_freeze");
  torch::jit::Module m("Counter");
  m.register_attribute("diffuse_card", c10::StringType::get(),
                       std::string("sample_shape=1x2x2,prediction_type=epsilon"));
  m.register_attribute("calls", c10::IntType::get(), int64_t{0});
  m.define("def forward(self, x, t):\n    self.calls += 1\n    return x * 0.5\n");
  const std::string path = dir / "counter.pt";
  m.save(path);
  const LoadedModel counted = load_model(path);
  EXPECT_EQ(counted.format, "TorchScript (frozen)");  // a mutated attribute stays an attribute
  for (int i = 0; i < 2; ++i) {
    const at::Tensor y = counted.network(at::ones({1, 1, 2, 2}), at::ones({1}), {});
    EXPECT_TRUE(at::allclose(y, at::full({1, 1, 2, 2}, 0.5)));
  }
}

}  // namespace
}  // namespace diffuse
