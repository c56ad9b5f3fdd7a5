// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/torchscript.h>.
#include <diffuse/training/torchscript.h>

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/utils.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/detail/aten.h>
#include <diffuse/sampler.h>

namespace diffuse {

namespace detail {

std::string torch_error_line(const std::string& s) {
  std::string last;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string::npos) nl = s.size();
    std::string line = s.substr(pos, nl - pos);
    const size_t a = line.find_first_not_of(" \t\r");
    if (a != std::string::npos) last = line.substr(a);
    pos = nl + 1;
  }
  return last.empty() ? std::string("unknown LibTorch error") : last;
}

std::string torch_error_line(const c10::Error& e) {
  return torch_error_line(std::string(e.what_without_backtrace()));
}

[[noreturn]] void rethrow_as_forward_error(const std::string& name) {
  try {
    throw;
  } catch (const c10::Error& e) {
    throw Error(cat(name, ": forward failed: ", torch_error_line(e)));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(cat(name, ": forward failed: ", torch_error_line(std::string(e.what()))));
  }
}

bool is_tensor_type(const c10::TypePtr& t) {
  if (t->kind() == c10::TypeKind::TensorType) return true;
  if (auto o = t->cast<c10::OptionalType>())
    return o->getElementType()->kind() == c10::TypeKind::TensorType;
  return false;
}

std::string shape_text(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int torchscript_forward_arity(const torch::jit::Module& m, const std::string& name) {
  auto method = m.find_method("forward");
  check(method.has_value(), name, ": the TorchScript module has no forward method");
  const c10::FunctionSchema& schema = method->function().getSchema();
  const auto& args = schema.arguments();
  // args[0] is self.
  std::vector<const c10::Argument*> required;
  for (size_t i = 1; i < args.size(); ++i)
    if (!args[i].default_value().has_value()) required.push_back(&args[i]);
  std::string signature = "forward(";
  for (size_t i = 1; i < args.size(); ++i)
    signature += (i > 1 ? ", " : "") + args[i].name() + ": " + args[i].type()->annotation_str();
  signature += ")";
  check(required.size() == 2 || required.size() == 3, name, ": ", signature, " takes ",
        required.size(),
        " required arguments; expected (x, t) or (x, t, y): x [B, C, H, W], t [B], y [B] int64");
  for (size_t i = 0; i < required.size(); ++i)
    check(required[i] == &args[i + 1] && is_tensor_type(required[i]->type()), name, ": ", signature,
          ": argument ", i + 1, " ('", args[i + 1].name(),
          "') must be a Tensor without a default (expected (x: Tensor, t: Tensor[, y: Tensor]))");
  check(schema.returns().size() == 1 &&
            schema.returns()[0].type()->kind() == c10::TypeKind::TensorType,
        name, ": ", signature, " must return one Tensor, returns ",
        schema.returns().size() == 1 ? schema.returns()[0].type()->annotation_str()
                                     : std::to_string(schema.returns().size()) + " values");
  return static_cast<int>(required.size());
}

}  // namespace detail

std::optional<std::string> torchscript_attribute(const torch::jit::Module& module,
                                                 const std::string& attribute) {
  if (!module.hasattr(attribute)) return std::nullopt;
  c10::IValue v = module.attr(attribute);
  if (!v.isString()) return std::nullopt;
  return v.toStringRef();
}

torch::jit::Module load_torchscript_module(const std::string& path, const c10::Device& device) {
  check(std::ifstream(path, std::ios::binary).good(), path, ": cannot open the file");
  torch::jit::Module m;
  try {
    m = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    const std::string why = detail::torch_error_line(e);
    // A torch.save() pickle archive lacks the TorchScript constants: say what to do instead.
    const std::string hint =
        why.find("constants.pkl") != std::string::npos
            ? "; a torch.save() checkpoint rather than TorchScript? export the model with "
              "torch.jit.script(model).save(path), see docs/interop.md"
            : "";
    throw Error(detail::cat(path, ": not a loadable TorchScript module (", why, ")", hint));
  } catch (const std::exception& e) {
    throw Error(detail::cat(path, ": not a loadable TorchScript module (",
                            detail::torch_error_line(std::string(e.what())), ")"));
  }
  m.eval();
  return m;
}

std::optional<std::string> torchscript_attribute(const std::string& path,
                                                 const std::string& attribute) {
  return torchscript_attribute(load_torchscript_module(path), attribute);
}

void check_torchscript_network(const Network& network, const std::string& name,
                               const std::vector<int64_t>& sample_shape, int64_t num_classes,
                               const c10::Device& device) {
  check(
      sample_shape.size() == 3 && sample_shape[0] > 0 && sample_shape[1] > 0 && sample_shape[2] > 0,
      name, ": sample shape must be [C, H, W] with positive sizes, got ",
      detail::shape_text(sample_shape));
  torch::NoGradGuard no_grad;
  const auto opts = at::TensorOptions().device(device);
  Tensor x = at::zeros({1, sample_shape[0], sample_shape[1], sample_shape[2]}, opts);
  Conditioning c;
  if (num_classes > 0) c.value = at::zeros({1}, opts.dtype(at::kLong));
  Tensor out;
  try {
    out = network(x, at::full({1}, 0.5, opts), c);
  } catch (...) {
    detail::rethrow_as_forward_error(name);
  }
  check(out.sizes() == x.sizes(), name, ": forward returned ", detail::shape_text(out.sizes()),
        ", expected ", detail::shape_text(x.sizes()));
}

TorchScriptNetwork wrap_torchscript_module(torch::jit::Module module, const std::string& name,
                                           const TorchScriptOptions& options) {
  check(options.num_classes >= 0, name, ": num_classes must be >= 0, got ", options.num_classes);
  check(options.sample_shape.empty() || options.sample_shape.size() == 3, name,
        ": sample_shape must be [C, H, W], got ", detail::shape_text(options.sample_shape));
  TorchScriptNetwork out;
  out.module = module;
  out.conditional = detail::torchscript_forward_arity(module, name) == 3;
  out.card = torchscript_attribute(module, "diffuse_card");
  const bool conditional = out.conditional;
  const int64_t num_classes = options.num_classes;
  const std::vector<int64_t> sample_shape = options.sample_shape;
  out.network = [module, name, conditional, num_classes, sample_shape](
                    const Tensor& x, const Tensor& t, const Conditioning& c) mutable -> Tensor {
    check(x.defined() && x.dim() == 4, name, ": x must be [B, C, H, W], got ",
          x.defined() ? detail::shape_text(x.sizes()) : std::string("undefined"));
    if (!sample_shape.empty())
      check(x.sizes().slice(1).vec() == sample_shape, name, ": x is ",
            detail::shape_text(x.sizes()), " but the model takes samples of shape ",
            detail::shape_text(sample_shape));
    std::vector<c10::IValue> inputs{x, t};
    if (conditional) {
      Tensor y = c.value;
      if (!y.defined()) {
        check(num_classes > 0, name,
              ": the model takes class labels but none were given, and the null class is unknown "
              "(set num_classes)");
        y = at::full({x.size(0)}, num_classes,
                     at::TensorOptions().dtype(at::kLong).device(x.device()));
      }
      inputs.emplace_back(y.to(x.device(), at::kLong));
    }
    c10::IValue result;
    try {
      result = module.forward(std::move(inputs));
    } catch (...) {
      detail::rethrow_as_forward_error(name);
    }
    check(result.isTensor(), name, ": forward returned ", result.tagKind(), ", expected a Tensor");
    Tensor y = result.toTensor();
    const int64_t ch = x.size(1);
    std::vector<int64_t> want = x.sizes().vec(), want2 = want;
    want2[1] = 2 * ch;
    const std::vector<int64_t> got = y.sizes().vec();
    check(got == want || got == want2, name, ": forward returned ", detail::shape_text(got),
          ", expected ", detail::shape_text(want), " (or ", detail::shape_text(want2),
          " with a learned variance)");
    if (got == want2) y = y.narrow(1, 0, ch);
    return y.to(x.scalar_type());
  };
  if (options.probe && !options.sample_shape.empty())
    check_torchscript_network(out.network, name, options.sample_shape, options.num_classes,
                              options.device);
  return out;
}

TorchScriptNetwork load_torchscript(const std::string& path, const TorchScriptOptions& options) {
  return wrap_torchscript_module(load_torchscript_module(path, options.device), path, options);
}

Network load_torchscript_network(const std::string& path, const c10::Device& device) {
  TorchScriptOptions o;
  o.device = device;
  return load_torchscript(path, o).network;
}

namespace detail {

std::optional<LoadedModel> load_torchscript_model(const std::string& path,
                                                  const LoadModelOptions& options) {
  {
    std::ifstream f(path, std::ios::binary);
    char magic[2] = {0, 0};
    f.read(magic, 2);
    if (f.gcount() != 2 || magic[0] != 'P' || magic[1] != 'K')
      return std::nullopt;  // not a zip archive
  }
  torch::jit::Module module = load_torchscript_module(path, options.device);
  ModelCard card;
  if (!options.card.empty()) {
    card = parse_model_card(options.card, "model card for '" + path + "'");
  } else {
    const auto text = torchscript_attribute(module, "diffuse_card");
    check(text.has_value(), path,
          ": the TorchScript module has no diffuse_card attribute; give a model card "
          "(e.g. --model-card \"sample_shape=1x28x28,num_classes=10,prediction_type=epsilon\")");
    card = parse_model_card(*text, path + " (diffuse_card)");
  }
  if (card.architecture == "DiT" && card.model.empty()) card.architecture = "torchscript";
  module.to(options.dtype);
  // Frozen for inference: the forward no longer looks up its parameters and attributes one by one
  // (torch.jit.freeze; optimize_numerics off, so no folding that would change the outputs). A
  // module that freezing refuses (one that assigns attributes in forward) runs as loaded.
  std::string format = "TorchScript";
  if (options.freeze_torchscript) {
    try {
      module = torch::jit::freeze(module, c10::nullopt, /*optimize_numerics=*/false);
      format = "TorchScript (frozen)";
    } catch (const std::exception&) {
      format = "TorchScript (not frozen: torch::jit::freeze refused it)";
    }
  }
  TorchScriptOptions o;
  o.device = options.device;
  o.sample_shape = card.sample_shape;
  o.num_classes = card.num_classes;
  o.probe = false;
  TorchScriptNetwork net = wrap_torchscript_module(module, path, o);
  // Probe in the requested dtype: a wrong output shape or a failing forward is reported now.
  {
    torch::NoGradGuard no_grad;
    std::vector<int64_t> shape = {1};
    shape.insert(shape.end(), card.sample_shape.begin(), card.sample_shape.end());
    const auto topt = at::TensorOptions().dtype(options.dtype).device(options.device);
    Conditioning c;
    if (net.conditional && card.num_classes > 0)
      c.value = at::zeros({1}, at::TensorOptions().dtype(at::kLong).device(options.device));
    // As a Denoiser calls it: t in the samplers' compute dtype (float32 for float16 / bfloat16).
    const at::Tensor t = at::full({1}, 1.0, topt.dtype(Sampler::compute_dtype(options.dtype)));
    try {
      (void)net.network(at::zeros(shape, topt), t, c);
    } catch (const Error& e) {
      if (options.dtype == at::kFloat) throw;
      throw Error(cat(e.what(), " (in ", options.dtype,
                      "; a module may run only in the dtype it was exported ", "in: try float32)"));
    }
  }
  LoadedModel m;
  m.card = std::move(card);
  m.network = net.network;
  m.source = path;
  m.format = format;
  return m;
}

}  // namespace detail
}  // namespace diffuse
