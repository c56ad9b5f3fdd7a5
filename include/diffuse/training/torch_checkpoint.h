// SPDX-License-Identifier: Apache-2.0
// Checkpoints written by Python's torch.save(): the published DiT and SiT weights
// (DiT-XL-2-256x256.pt, DiT-XL-2-512x512.pt, SiT-XL-2-256x256.pt) and the training checkpoints of
// their train.py ({"model", "ema", "opt", "args"}), read without Python.
//
// torch.save (PyTorch >= 1.6) writes a zip archive: data.pkl, a pickle whose tensors are persistent
// ids of the records data/<key>. LibTorch's own unpickler (torch::jit::readArchiveAndTensors, what
// torch::pickle_load uses) reads it, streaming the records from the file. It understands the
// pickle opcodes and the globals a state dict needs (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, the storage types); a pickle that names any other Python class
// (e.g. train.py's "args", an argparse.Namespace, saved next to the weights) cannot be read this
// way: scripts/convert_checkpoint.py (Python, torch) rewrites such a file, or a pre-1.6 "legacy"
// pickle, as safetensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include <diffuse/tensor.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/model_file.h>

namespace diffuse {

/// Whether `path` is a torch.save() zip archive (a data.pkl record and no TorchScript
/// constants.pkl). False for missing files and for other formats.
bool is_torch_save_archive(const std::string& path);

/// The state dict inside a torch.save() file.
struct TorchStateDict {
  std::map<std::string, at::Tensor> tensors;
  /// Where the tensors were found: "" (the file is a state dict) or the key of the checkpoint
  /// dict that held them: "ema" (preferred, as DiT's and SiT's find_model), "model",
  /// "state_dict".
  std::string entry;
};

/// Reads a torch.save() file holding a state dict (string -> tensor), or a dict with one under
/// "ema", "model" or "state_dict". Tensors are loaded on the CPU. Errors (IOError) name the path
/// and say why: not a zip archive (legacy pickle), a pickle naming Python classes, no state dict.
TorchStateDict read_torch_state_dict(const std::string& path);

/// The DiT architecture of a state dict under the reference names (facebookresearch/DiT
/// models.py; SiT's are the same), inferred from the tensor shapes: hidden size, patch, input
/// channels and size (from pos_embed), depth, MLP ratio, classes, learn_sigma. The number of
/// attention heads is not in the shapes: it is DiT's Table 1 value for the hidden sizes 384 (6),
/// 768 (12), 1024 and 1152 (16), else `num_heads` must be given (> 0). Errors name `what`.
DiTOptions dit_options_from_state_dict(const std::map<std::string, at::Tensor>& sd,
                                       const std::string& what, int64_t num_heads = 0);

/// The card of a published checkpoint with these options:
///  - DiT (sit = false): the discrete linear schedule of DiT's diffusion (1000 steps, betas
///    1e-4 .. 0.02), epsilon prediction, no clipping (latent space), vae=sd-vae-ft-ema;
///  - SiT (sit = true): the flow schedule fed t = sigma (t_scale 1), flow_prediction with
///    reversed_time (SiT's time runs from noise, 0, to data, 1, and its velocity is
///    d x / d t along it), vae=sd-vae-ft-ema.
/// sample_shape [in_channels, input_size, input_size], num_classes from the options.
ModelCard reference_dit_card(const DiTOptions& o, bool sit);

namespace detail {

/// Whether the file starts with a zip local-file header ("PK\3\4"): torch.save() archives and
/// the torch::serialize archives of our own model files. False for unreadable files.
bool starts_with_zip_magic(const std::string& path);

/// The bytes of an archive record ("data/<key>"). Without an `owner` they are valid until the
/// next read and are copied; with one, the storage tensor uses them in place and holds `owner`
/// (so the bytes must be writable, and aligned for the storage's element type, or they are
/// copied after all).
struct PickleRecord {
  const void* data = nullptr;
  size_t size = 0;
  std::shared_ptr<void> owner;
};

/// Reads a record; throws when absent.
using PickleRecordReader = std::function<PickleRecord(const std::string& name)>;

/// The restricted pickle machine of read_torch_state_dict on a data.pkl held in memory, storages
/// read through `records`. `path` names the source in errors. (The fuzz target's entry point.)
TorchStateDict parse_torch_pickle(const uint8_t* data, size_t size,
                                  const PickleRecordReader& records, const std::string& path);

/// load_model() for torch.save() files: a reference DiT / SiT state dict. The card is the
/// caller's (options.card, keys given replace those of the inferred card), else
/// reference_dit_card, SiT when the file name starts with "SiT" or has "-SiT" / "_SiT" in it (any
/// case), as the published SiT-XL-2-256x256.pt. nullopt when the file is not a
/// torch.save() archive.
std::optional<LoadedModel> load_torch_save_model(const std::string& path,
                                                 const LoadModelOptions& options);

}  // namespace detail

}  // namespace diffuse
