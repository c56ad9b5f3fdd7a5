// SPDX-License-Identifier: Apache-2.0
// Self-describing model files: the weights of a network together with the "model card" a sampler
// needs (architecture and its options, noise schedule, prediction type, sample shape, classes).
//
//   diffuse::save_model("fashion.pt", dit, card);           // our model file (atomic write)
//   diffuse::LoadedModel m = diffuse::load_model("fashion.pt");
//   diffuse::Denoiser d(m.network, m.denoiser_options());
//   auto schedule = m.make_schedule();
//
// load_model() reads our model files, training checkpoints of Trainer<DiT> (their EMA weights; the
// card comes from the checkpoint's fingerprint), and, through the loaders registered with
// register_model_loader() (built in, always tried first: safetensors and TorchScript,
// training/safetensors.h and training/torchscript.h), other formats whose card comes from the
// file or from the caller.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/training/assets.h>
#include <diffuse/training/dit.h>

namespace torch {
namespace serialize {
class InputArchive;
}  // namespace serialize
}  // namespace torch

namespace diffuse {

class NoiseSchedule;

/// What a sampler needs to know about a network besides its weights. Stored as text, one
/// `key=value` per line (model_card_text / parse_model_card); a one-line "key=value,key=value" form
/// is accepted too when no value contains a comma (handy on a command line or in a TorchScript
/// attribute).
struct ModelCard {
  /// "DiT" (our module; `model` holds its DiTOptions) or "torchscript" / any other name for
  /// external networks. Default "DiT".
  std::string architecture = "DiT";
  /// The architecture's options (DiT: to_config(DiTOptions)). Default empty.
  Config model;
  /// Noise schedule spec, "key" or "key:opt=value;..." (options separated by ';' here). Default
  /// "discrete".
  std::string schedule = "discrete";
  /// What the network predicts: epsilon, v_prediction (v), sample (x0). Default epsilon.
  std::string prediction_type = "epsilon";
  /// The shape of one sample, [C, H, W] (or any rank >= 1). Required.
  std::vector<int64_t> sample_shape;
  /// Number of classes; class id num_classes is the null (unconditional) class used by
  /// classifier-free guidance. 0 = unconditional model. Default 0.
  int64_t num_classes = 0;
  /// Optional display names of the classes (num_classes of them, or none).
  std::vector<std::string> class_names;
  /// Clamp x0 to [-1, 1] while sampling (pixel-space models), re-deriving eps from the clamped x0
  /// (LoadedModel::denoiser_options). Default true.
  bool clip_sample = true;
  /// The network was trained with EDM preconditioning (DenoiserOptions::edm_preconditioning:
  /// it is fed c_in x at time c_noise = ln(sigma) / 4 and its output is combined with the input
  /// by c_skip / c_out), with this sigma_data. Defaults false and 0.5.
  bool edm_preconditioning = false;
  double sigma_data = 0.5;
  /// The network's time runs the other way (SiT: 0 = noise, 1 = data): it is fed 1 - t and its
  /// output, a velocity along its own time, is negated. Needs prediction_type flow_prediction and
  /// a schedule whose model time is sigma in [0, 1] (flow:t_scale=1). Default false.
  bool reversed_time = false;
  /// The network also outputs iDDPM's learned variance (a DiT with learn_sigma: its second C
  /// channels), handed to the sampler (DenoiserOptions::learned_variance) for
  /// ddpm:variance_type=learned_range, as DiT's own 250-step sampler uses it; other samplers ignore
  /// it. Default false (the variance channels are dropped).
  bool learned_variance = false;
  /// Guide only the first N channels (DenoiserOptions::guided_channels): DiT's and SiT's
  /// forward_with_cfg guide 3 of 4, so their cards say 3. Default 0 = all.
  int64_t guided_channels = 0;
  /// The autoencoder of a latent model: a name (e.g. "sd-vae-ft-ema", what DiT and SiT were
  /// trained with) or a path, recorded for the user (`diffuse sample --vae` decodes with the VAE
  /// it is given). Default empty = pixel-space model.
  std::string vae;
  /// Free text (how it was trained, its FD, ...). Default empty.
  std::string description;
};

/// Parses a card from its text form. Unknown keys, a missing sample_shape and malformed values are
/// errors naming `origin` (the file the text came from).
ModelCard parse_model_card(const std::string& text, const std::string& origin);
/// The canonical text form (one key=value per line), read back by parse_model_card.
std::string model_card_text(const ModelCard& card);

/// A network ready to sample from, with its card.
struct LoadedModel {
  ModelCard card;
  /// The network on the requested device and dtype.
  Network network;
  /// Where it came from: the file path, or "embedded default (<path>)".
  std::string source;
  /// "diffuse model", "training checkpoint (EMA weights)", "TorchScript", "safetensors", ...
  std::string format;
  /// Our DiT when the architecture is DiT (empty otherwise).
  std::optional<DiT> dit;
  /// The dtype the network computes in: LoadModelOptions::dtype, except float16 on a device
  /// whose LibTorch has no float16 kernels (see `precision`).
  at::ScalarType dtype = at::kFloat;
  /// Empty, or what was done instead of the dtype asked for: LibTorch 1.13 has no float16 CPU
  /// kernels for matrix products, convolutions, layer norm or softmax, so a float16 CPU model
  /// computes in float32 (our DiT with its weights rounded to float16 first).
  std::string precision = {};
  /// The parameterisation and clipping of card, for a Denoiser.
  DenoiserOptions denoiser_options() const;
  /// The noise schedule the card names.
  std::shared_ptr<NoiseSchedule> make_schedule() const;
  /// An upper estimate of the memory one sample's network call needs at inference (no autograd)
  /// in `dtype`, in bytes: for our DiT the largest set of tensors alive inside a block (tokens x
  /// hidden for x, q/k/v, attention output, the two attention-score tables, the MLP's hidden
  /// layer before and after its activation), doubled for temporaries; for other formats, which
  /// this library cannot look into, 1024 values per value of the sample.
  double inference_bytes_per_sample(at::ScalarType dtype) const;
  /// `network` with our DiT's blocks step-cached by `cache` (DiTStepCache; the same wrapping as
  /// `network` otherwise). Needs a DiT model (dit set). The result carries the cache's state: one
  /// per concurrent run.
  Network cached_network(std::shared_ptr<DiTStepCache> cache) const;
  /// The network takes float16 inputs in float32 arithmetic (see `precision`).
  bool half_inputs = false;
};

/// The batch size that keeps the estimated memory of one network call within `budget_bytes`
/// (LoadedModel::inference_bytes_per_sample; a guided call evaluates two samples per image), in
/// [1, num]. The same model, settings and budget always give the same batch.
int64_t auto_batch_size(const LoadedModel& model, at::ScalarType dtype, int64_t num, bool guided,
                        double budget_bytes);

struct LoadModelOptions {
  /// Device of the network. Default CPU.
  c10::Device device = at::kCPU;
  /// Floating dtype of the network's parameters. Default float32.
  at::ScalarType dtype = at::kFloat;
  /// For formats that cannot carry a card (or to override the card stored in the file): card text.
  /// Default empty = use the file's own card.
  std::string card;
  /// TorchScript modules: frozen for inference after loading (torch::jit::freeze without numeric
  /// rewrites: parameters and attributes become graph constants, the same outputs); a module that
  /// cannot be frozen runs as loaded (LoadedModel::format says which). Default on.
  bool freeze_torchscript = true;
};

/// Saves `model` (its parameters and buffers) with `card` (architecture DiT; card.model is replaced
/// by the model's own options) to `path`, atomically: a crash never leaves a half-written file.
void save_model(const std::string& path, DiT model, ModelCard card);

/// Loads a model file (see the top of this header). Errors name the file and say what is wrong.
LoadedModel load_model(const std::string& path, const LoadModelOptions& options = {});

/// The file name of the shipped default model (a class-conditional Fashion-MNIST DiT).
inline const char* default_model_file_name() { return "fashion_mnist_dit.pt"; }
/// The path of the shipped default model (searched as find_asset() does).
inline std::string default_model_path() {
  return find_asset(default_model_file_name(), "the default model");
}

/// A loader for another format: returns nullopt when the file is not of its format, else the model
/// (it may use options.card). Loaders are tried in registration order after our own formats.
using ModelLoader = std::function<std::optional<LoadedModel>(const std::string& path,
                                                             const LoadModelOptions& options)>;
bool register_model_loader(const std::string& name, ModelLoader loader);

// ---------------------------------------------------------------------------------------------
// Helpers (bodies in training/model_file.cpp; a few are used by the CLI and the tests)

namespace detail {

std::vector<std::string> split_text(const std::string& s, char sep);

/// The first line of a message (LibTorch errors append context lines).
std::string first_line(const std::string& text);

std::vector<int64_t> parse_shape_text(const std::string& text, const std::string& what);

std::string card_shape_text(const std::vector<int64_t>& shape);

Parameterization parse_prediction_type(const std::string& name, const std::string& what);

/// "discrete:beta_schedule=linear;beta_end=0.02" -> schedule (';' separates options in a card
/// because a card may be written on one comma-separated line).
std::shared_ptr<NoiseSchedule> schedule_from_card(const std::string& spec, const std::string& what);

std::string schedule_card_spec(const NoiseSchedule& s);

/// A lower bound on the number of weights of a DiT with options `o`: the attention and adaLN
/// matrices of the blocks (10 d^2 each), the position table, the label table and the patch
/// embedding (biases, MLPs, decoder and final layer left out).
double dit_min_weights(const DiTOptions& o);

/// Throws unless a file of `file_bytes` bytes can hold the weights of a DiT with options `o` (at
/// 2 bytes a weight, the smallest floating type). A card naming a model far larger than its file
/// (hidden_size=4000000, depth=100000000: found by tests/fuzz) is then an error instead of an
/// attempt to allocate and initialise terabytes.
void check_dit_fits_file(const DiTOptions& o, uint64_t file_bytes, const std::string& what);

/// A DiT built from a card (architecture DiT), its Linear weights not initialised (unloaded_dit:
/// the caller loads every weight, strictly). `file_bytes`: the size of the file its weights come
/// from (see check_dit_fits_file); 0 skips that check.
DiT dit_from_card(const ModelCard& card, const std::string& what, uint64_t file_bytes = 0);

/// Module::load() replaces a parameter's storage with the archive's, shape included; so compare
/// every parameter and buffer with a freshly built model of the card's options afterwards.
void load_dit_checked(DiT& model, torch::serialize::InputArchive& ar, const std::string& what);

LoadedModel finish_dit(DiT model, ModelCard card, const LoadModelOptions& options,
                       std::string source, std::string format);

/// A card from a Trainer checkpoint's fingerprint (objective, schedule, dataset, model_config
/// lines).
ModelCard card_from_fingerprint(const std::string& fingerprint, const std::string& what);

bool archive_has(torch::serialize::InputArchive& ar, const std::string& key);

}  // namespace detail

namespace detail {
/// The lines of a card's text: one key=value a line, or one line of comma-separated key=value.
std::vector<std::string> card_items(const std::string& text);

/// The card text `base` with each key of `overrides` replacing (or adding) that key: a
/// --model-card given for a file that has its own card changes only the keys it names.
std::string override_card_text(const std::string& base, const std::string& overrides);
}  // namespace detail

/// Format version of our model files.
inline constexpr int64_t kModelFileFormat = 1;

namespace detail {
/// Whether this LibTorch computes float16 networks on `device`: the CPU kernels of LibTorch 1.13
/// lack float16 for addmm, convolution, layer norm and softmax (2.x has them); CUDA has them.
bool device_computes_float16(const c10::Device& device);

LoadedModel load_model_as(const std::string& path, const LoadModelOptions& options);
}  // namespace detail

}  // namespace diffuse
