// SPDX-License-Identifier: Apache-2.0
// A TorchScript module (exported from PyTorch with torch.jit.script / torch.jit.trace and
// torch.jit.save) as a diffuse::Network. See docs/interop.md for the export recipe.
//
// The module's forward takes the noisy sample, the model time and (optionally) class labels:
//   forward(x: Tensor [B, C, H, W], t: Tensor [B] (float, the schedule's model time),
//           y: Tensor [B] (int64 labels; num_classes is the null class)) -> Tensor
// and returns [B, C, H, W], or [B, 2C, H, W] for learned-variance models (DiT's learn_sigma), of
// which the first C channels are used. A forward with exactly two required arguments (x, t) is an
// unconditional model: it is called without labels. Further arguments must have defaults and are
// not passed. An optional string attribute "diffuse_card" describes the model as key=value text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <torch/csrc/jit/api/module.h>

#include <diffuse/denoiser.h>
#include <diffuse/tensor.h>
#include <diffuse/training/model_file.h>

namespace diffuse {

/// How load_torchscript reads and checks a module.
struct TorchScriptOptions {
  /// Where the module's tensors are placed (torch::jit::load's map_location). Default CPU.
  c10::Device device = at::kCPU;
  /// Shape [C, H, W] of one sample. Empty (default) = unknown: the output is only checked against
  /// the input at each call. When set, inputs whose shape differs are refused and (with probe) the
  /// module is run once at load time on a dummy batch of this shape.
  std::vector<int64_t> sample_shape;
  /// Number of classes of a conditional module; label num_classes is the null class, passed when
  /// the conditioning has no labels (the unconditional branch of classifier-free guidance).
  /// Default 0 = not known (then labels must always be given to a conditional module). >= 0.
  int64_t num_classes = 0;
  /// Run one forward on a dummy batch [1, C, H, W] at load (needs sample_shape) so that a wrong
  /// output shape or a failing forward is reported at once. Default true.
  bool probe = true;
};

/// A loaded TorchScript model.
struct TorchScriptNetwork {
  /// The module wrapped as a Network (see the file comment for how it is called).
  Network network;
  /// The module itself (in eval mode, on the requested device).
  torch::jit::Module module;
  /// True if forward takes class labels (three required arguments), false if it takes (x, t).
  bool conditional = false;
  /// The module's "diffuse_card" string attribute, if it has one.
  std::optional<std::string> card;
};

namespace detail {

/// The last non-empty line of a LibTorch error message without its C++ backtrace (errors raised
/// in the TorchScript interpreter carry the script's traceback first and the actual error last).
std::string torch_error_line(const std::string& s);
std::string torch_error_line(const c10::Error& e);

/// Rethrows the exception being handled, from a failing forward of `name`, as a one-line
/// diffuse::Error ("<name>: forward failed: <last line>"); diffuse::Error and non-standard
/// exceptions pass through. The TorchScript interpreter rethrows an operator's error as
/// std::runtime_error whose text is the script traceback followed by the error.
[[noreturn]] void rethrow_as_forward_error(const std::string& name);

bool is_tensor_type(const c10::TypePtr& t);

std::string shape_text(at::IntArrayRef s);

/// Number of required (x, t[, y]) arguments of forward: 2 or 3; throws for anything else.
int torchscript_forward_arity(const torch::jit::Module& m, const std::string& name);

}  // namespace detail

/// The string attribute `attribute` of `module`, or nullopt if it has none (or it is not a string).
std::optional<std::string> torchscript_attribute(const torch::jit::Module& module,
                                                 const std::string& attribute);

/// Loads the TorchScript file `path` onto `device`, in eval mode. Throws diffuse::Error naming the
/// path when it does not exist or is not a TorchScript archive (one line, no backtrace).
torch::jit::Module load_torchscript_module(const std::string& path,
                                           const c10::Device& device = at::kCPU);

/// The string attribute `attribute` of the TorchScript module stored at `path`, or nullopt.
std::optional<std::string> torchscript_attribute(const std::string& path,
                                                 const std::string& attribute);

/// Runs `network` once on a dummy batch (x = zeros [1, C, H, W], t = [0.5], labels [0] when
/// num_classes > 0) and throws a one-line diffuse::Error naming `name` if it fails or returns
/// another shape than x.
void check_torchscript_network(const Network& network, const std::string& name,
                               const std::vector<int64_t>& sample_shape, int64_t num_classes = 0,
                               const c10::Device& device = at::kCPU);

/// Wraps a loaded module as a Network; `name` prefixes error messages (usually the file name).
/// Each call checks the input against options.sample_shape (when set) and the output shape:
/// [B, C, H, W] as the input, or [B, 2C, H, W] (the first C channels are returned). The output is
/// cast to the input's dtype. A failing forward becomes a one-line diffuse::Error.
TorchScriptNetwork wrap_torchscript_module(torch::jit::Module module, const std::string& name,
                                           const TorchScriptOptions& options = {});

/// Loads `path` (see load_torchscript_module), checks forward's signature and, with
/// options.probe and options.sample_shape, runs it once. Errors name the path.
TorchScriptNetwork load_torchscript(const std::string& path,
                                    const TorchScriptOptions& options = {});

/// The TorchScript model at `path` as a Network on `device` (no probe; the output shape is checked
/// at every call). See load_torchscript for the checks at load time.
Network load_torchscript_network(const std::string& path, const c10::Device& device = at::kCPU);

namespace detail {

/// load_model() for TorchScript modules (zip archives that are not diffuse model files or
/// checkpoints). The card is the caller's (options.card), else the module's "diffuse_card"
/// attribute; the module is probed once with the card's sample shape and moved to options.dtype.
std::optional<LoadedModel> load_torchscript_model(const std::string& path,
                                                  const LoadModelOptions& options);

}  // namespace detail

}  // namespace diffuse
