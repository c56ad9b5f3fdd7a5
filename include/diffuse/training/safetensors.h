// SPDX-License-Identifier: Apache-2.0
// The safetensors format (reading and writing), and the mapping between a DiT and the parameter
// names of the reference DiT code.
//
// Format (huggingface/safetensors, docs "Format"): an unsigned 64-bit little-endian header length
// N; N bytes of UTF-8 JSON, an object {name: {"dtype": "F32", "shape": [d0, ...],
// "data_offsets": [begin, end]}, ..., optional "__metadata__": {string: string}}; then the byte
// buffer. Offsets are relative to the start of the buffer, tensors are stored row-major
// little-endian, and the tensors must cover the buffer exactly (no gaps, no overlaps). The header
// may be padded with trailing spaces; the reference writer pads it to a multiple of 8 bytes.
//
// The reader here is strict: every violation of the above (and header lengths over 100 MB, JSON
// nested more than 64 levels deep, duplicate JSON keys, unknown fields in a tensor entry, shapes
// whose byte size overflows) is a diffuse::Error that names the file and the offending entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

#include <diffuse/tensor.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/model_file.h>

namespace diffuse {

/// The contents of a safetensors file: tensors by name (CPU, contiguous, owning their memory) and
/// the optional string-to-string "__metadata__".
struct SafetensorsFile {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

namespace detail {

/// Largest header accepted, as the reference implementation (100,000,000 bytes).
constexpr uint64_t kSafetensorsMaxHeader = 100000000;

/// Deepest JSON nesting accepted in a header (the format itself needs 3 levels).
constexpr int kSafetensorsMaxDepth = 64;

/// The deepest nesting of arrays / objects in the JSON text [begin, end) (brackets inside strings
/// do not count). nlohmann::json parses iteratively but serialises recursively, so a header
/// nested tens of thousands of levels deep overflowed the stack while its error message was being
/// built (found by tests/fuzz/fuzz_safetensors); the reader rejects deep headers before parsing.
int json_nesting_depth(const char* begin, const char* end);

bool host_is_little_endian();

/// Format dtype name <-> ATen type. Returns false for names the format defines but LibTorch (as
/// built here) cannot hold, and for unknown names.
bool safetensors_dtype(const std::string& name, at::ScalarType* out);

/// Names the format defines that have no ATen equivalent in every supported LibTorch version.
bool safetensors_dtype_known_unsupported(const std::string& name);

std::string safetensors_dtype_name(at::ScalarType t);

}  // namespace detail

/// Which tensors to copy out of a file (true = keep); empty = all of them.
using TensorFilter = std::function<bool(const std::string& name)>;

/// Parses a safetensors file held in memory (`size` bytes at `data`). `name_for_errors` is the
/// file name put at the start of every error message. Tensors are copied out of `data`, which
/// may be released afterwards; with `keep`, only the tensors it accepts (the header is still
/// checked whole, so a file that is malformed anywhere is refused). Throws diffuse::Error for any
/// deviation from the format (see the file comment) and on big-endian hosts.
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size,
                                  const std::string& name_for_errors,
                                  const TensorFilter& keep = {});

/// Reads and parses the safetensors file at `path` (memory-mapped, then copied tensor by tensor;
/// with `keep`, only the tensors it accepts: the VAE part of a 4 GB single-file checkpoint costs
/// only its own memory). Errors name the path.
SafetensorsFile read_safetensors(const std::string& path, const TensorFilter& keep = {});

/// The bytes of a safetensors file holding `tensors` and `metadata`. Tensors may be of any
/// dtype listed by the format (F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL) and on any device; they
/// are written as contiguous CPU copies, ordered by decreasing element size and then name (so
/// each is aligned to its element size), after a JSON header padded with spaces to a multiple of
/// 8 bytes. Names must be non-empty and not "__metadata__".
std::string safetensors_bytes(const std::map<std::string, at::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

/// Writes `tensors` (and string `metadata`) to `path` in the safetensors format, atomically (a
/// reader sees the old file or the complete new one). See safetensors_bytes for the layout.
/// Errors name the path.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// ---- DiT <-> reference parameter names ----

/// The state dict of `model` under the names of the reference DiT code (facebookresearch/DiT
/// models.py; MaskDiT's decoder parts under Anima-Lab/MaskDiT's names): every parameter and
/// buffer, including pos_embed (a frozen nn.Parameter in the reference, a buffer here) and, for
/// MaskDiT, decoder_pos_embed and mask_token. The names are this library's module names, which
/// were chosen to be the reference's. The tensors are detached views of the model's own storage.
std::map<std::string, at::Tensor> dit_state_dict(DiT& model);

namespace detail {

/// The key without a leading "module." (DistributedDataParallel) or "_orig_mod." (torch.compile)
/// prefix, repeatedly.
std::string strip_wrapper_prefixes(std::string key);

std::string list_some(const std::vector<std::string>& items, size_t shown = 5);

/// What a state-dict load found wrong, each kind reported with its count and first few keys.
struct StateDictProblems {
  std::vector<std::string> missing, unexpected, duplicated, mismatched, bad_dtype;
  /// "2 missing: a, b; 1 unexpected: c; ..." ("" when there is nothing); `duplicated_what` says
  /// how a tensor came to be named twice; missing and unexpected keys count only when `strict`.
  std::string text(const char* duplicated_what, bool strict = true) const;
};

}  // namespace detail

/// Loads a state dict under reference DiT names (as dit_state_dict writes, as the reference code's
/// model.state_dict() holds, optionally with "module." / "_orig_mod." prefixes) into `model`.
/// Floating tensors are converted to the dtype (and device) of the model's tensor; a non-floating
/// tensor for a floating parameter is an error. Shapes must match exactly. With `strict` (default)
/// every model tensor must be present and no other key may be; without it, absent tensors keep
/// their values and unknown keys are ignored (shape and dtype problems are still errors). All
/// problems are reported at once in one diffuse::Error (missing, unexpected, mismatched: the
/// first few of each and their count); the model is modified only when there is none.
/// pos_embed / decoder_pos_embed are loaded like any other tensor (the reference stores them).
void load_dit_state_dict(DiT& model, const std::map<std::string, at::Tensor>& sd,
                         bool strict = true);

namespace detail {

/// Sets each target (a module's own parameter or buffer, not a detached alias) to its value: the
/// value itself (set_data: no copy) when it is of the target's dtype and device, contiguous, the
/// whole of its storage and the first value seen on that storage (so that no two targets end up
/// sharing memory); a copy otherwise. Each value is released as soon as it has been used.
void adopt_or_copy(std::vector<std::pair<at::Tensor, at::Tensor>>& targets_and_values);

/// load_dit_state_dict taking the tensors over: each that is of the model tensor's dtype and
/// device, contiguous and the whole of a storage no other tensor of `sd` uses becomes the model's
/// tensor (set_data: no copy, and the weights are not held twice while loading); the others are
/// copied. The same checks and errors (the model is unchanged on error; `sd` is then left as
/// given).
void adopt_dit_state_dict(DiT& model, std::map<std::string, at::Tensor>&& sd, bool strict = true);

}  // namespace detail

/// The metadata key under which save_dit_safetensors stores the architecture
/// (format_config(to_config(options)), e.g. "depth=4,hidden_size=64,...").
inline const char* const kDiTMetadataKey = "diffuse_dit";

/// Writes `model`'s state dict (reference names, see dit_state_dict) to `path` with the
/// architecture in the metadata under kDiTMetadataKey, plus `metadata` (which must not use that
/// key). Atomic; errors name the path.
void save_dit_safetensors(const std::string& path, DiT& model,
                          std::map<std::string, std::string> metadata = {});

/// A DiT built from `options`, or, when they are not given, from the file's kDiTMetadataKey
/// metadata (as save_dit_safetensors writes it), with the weights of the safetensors file `path`
/// loaded (strictly; see load_dit_state_dict). Errors name the path. A reference checkpoint
/// converted to safetensors has no such metadata: pass its options (e.g. dit_preset("XL/2", 32,
/// 4).num_classes(1000).learn_sigma(true)).
DiT load_dit_safetensors(const std::string& path,
                         const std::optional<DiTOptions>& options = std::nullopt);

// ----- diffuse model files in safetensors form (load_model / save_model_safetensors)

/// The metadata key holding a model card (model_card_text) in safetensors files written by
/// save_model_safetensors.
inline const char* const kCardMetadataKey = "diffuse_card";

/// Writes `model` and its card as safetensors: the weights under reference-DiT names, the
/// architecture under kDiTMetadataKey and the card under kCardMetadataKey. load_model() reads it
/// back. Atomic; errors name the path.
void save_model_safetensors(const std::string& path, DiT model, ModelCard card);

namespace detail {

/// load_model() for "*.safetensors": a DiT whose card is the caller's (options.card), else the
/// file's diffuse_card metadata; a card without DiT options takes them from the diffuse_dit
/// metadata (so a one-line --model-card "sample_shape=4x32x32,num_classes=1000" is enough).
std::optional<LoadedModel> load_safetensors_model(const std::string& path,
                                                  const LoadModelOptions& options);

}  // namespace detail

}  // namespace diffuse
