// SPDX-License-Identifier: Apache-2.0
// diffuse sample: images from a model (the shipped Fashion-MNIST DiT by default, a diffuse model
// file, a training checkpoint, a TorchScript module or safetensors weights) with any registered
// sampler, spacing, guidance scale and corrections. Writes a PNG grid whose tEXt chunk "diffuse"
// and a JSON file next to it record every setting, so `--from-record` regenerates the same bytes.
// This file: the options and the command's steps; sample_record.cpp: the record;
// sample_output.cpp: the files written.
#include "commands/sample.h"

#include "cli.h"
#include "parallel.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/upsampling.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>

#include <diffuse/all.h>
#include <diffuse/training/data.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/vae.h>

namespace diffuse::cli::sample_command {
namespace {

/// Names each setting as the user gave it: the option, or the record's field (--from-record).
class SettingNames {
 public:
  SettingNames(const CLI::App& app, std::string record) : app_(app), record_(std::move(record)) {}
  /// Whether `option` was given on the command line.
  bool given(const char* option) const { return app_.get_option(option)->count() > 0; }
  std::string operator()(const char* option, const char* field) const {
    if (record_.empty() || given(option)) return option;
    return "record '" + record_ + "' field '" + field + "'";
  }

 private:
  const CLI::App& app_;
  std::string record_;
};

/// The record's settings, then whatever was given explicitly on this command line; sets the
/// intra-op threads to the record's unless --threads was given.
SampleSettings merge_record(const SampleSettings& given, const std::string& path,
                            const CLI::App& app) {
  const SettingNames names(app, path);
  SampleSettings s = from_json(read_record(path), path);
  if (names.given("--model")) s.model = given.model;
  if (names.given("--model-card")) s.model_card = given.model_card;
  if (names.given("--sampler")) s.sampler = given.sampler;
  if (names.given("--schedule")) s.schedule = given.schedule;
  if (names.given("--steps")) s.steps = given.steps;
  if (names.given("--cfg")) s.cfg = given.cfg;
  if (names.given("--guidance")) s.guidance = given.guidance;
  if (names.given("--init-image")) s.init_image = given.init_image;
  if (names.given("--strength")) s.strength = given.strength;
  if (names.given("--mask")) s.mask = given.mask;
  if (names.given("--resample-jump")) s.resample_jump = given.resample_jump;
  if (names.given("--resample-times")) s.resample_times = given.resample_times;
  if (names.given("--step-cache")) s.step_cache = given.step_cache;
  if (names.given("--vae")) s.vae = given.vae;
  if (names.given("--vae-tile")) s.vae_tile = given.vae_tile;
  if (names.given("--vae-preset")) s.vae_preset = given.vae_preset;
  if (names.given("--class")) s.classes = given.classes;
  if (names.given("--correction")) s.corrections = given.corrections;
  if (names.given("--seed")) s.seed = given.seed;
  if (names.given("--noise")) s.noise = given.noise;
  if (names.given("--num")) s.num = given.num;
  if (names.given("--batch-size")) s.batch_size = given.batch_size;
  if (names.given("--device")) s.device = given.device;
  if (names.given("--dtype")) s.dtype = given.dtype;
  if (names.given("--nrow")) s.nrow = given.nrow;
  // The same bytes need the same thread count, unless --threads says otherwise.
  const bool threads_given =
      app.get_parent() && app.get_parent()->get_option("--threads")->count() > 0;
  if (s.threads > 0 && !threads_given && s.threads != at::get_num_threads()) {
    if (s.threads > usable_cpus())
      spdlog::warn(
          "record '{}' was made with {} threads, more than the {} CPUs here: running {} threads to "
          "reproduce its bytes (slower; --threads N overrides)",
          path, s.threads, usable_cpus(), s.threads);
    at::set_num_threads(static_cast<int>(s.threads));
  }
  return s;
}

/// The largest finite magnitude of a floating dtype (a guidance scale beyond it is +-inf there).
double dtype_max(c10::ScalarType t) {
  switch (t) {
    case c10::kHalf:
      return 65504.0;
    case c10::kBFloat16:
      return 3.3895313892515355e38;
    case c10::kFloat:
      return static_cast<double>(std::numeric_limits<float>::max());
    default:
      return std::numeric_limits<double>::max();
  }
}

/// The numeric settings and the output names (UsageErrors naming the option or record field).
void check_settings(const SampleSettings& s, const SampleOutputs& o, const SettingNames& named) {
  require(s.steps >= 1 && s.steps <= 100000,
          named("--steps", "steps") + " must be in [1, 100000], got " + std::to_string(s.steps));
  require(s.num >= 1 && s.num <= kMaxNum, named("--num", "num") + " must be in [1, " +
                                              std::to_string(kMaxNum) + "], got " +
                                              std::to_string(s.num));
  require(s.batch_size >= 0, named("--batch-size", "batch_size") +
                                 " must be >= 0 (0 = automatic), got " +
                                 std::to_string(s.batch_size));
  require(s.nrow >= 0, named("--nrow", "nrow") + " must be >= 0, got " + std::to_string(s.nrow));
  require(std::isfinite(s.cfg),
          named("--cfg", "cfg") + " must be finite, got " + diffuse::format_double(s.cfg));
  require(std::isfinite(s.strength) && s.strength >= 0 && s.strength <= 1,
          named("--strength", "strength") + " must be in (0, 1] (0 = the default), got " +
              diffuse::format_double(s.strength));
  require(!s.init_image.empty() || (s.strength == 0 && s.mask.empty()),
          named(s.mask.empty() ? "--strength" : "--mask", s.mask.empty() ? "strength" : "mask") +
              " needs " + named("--init-image", "init_image") + " (img2img / inpainting)");
  require(s.resample_jump >= 0 && s.resample_jump <= 100000,
          named("--resample-jump", "resample_jump") + " must be in [0, 100000], got " +
              std::to_string(s.resample_jump));
  require(s.vae_tile == 0 || (s.vae_tile >= 8 && s.vae_tile <= 8192),
          named("--vae-tile", "vae_tile") +
              " must be 0 (whole images) or in [8, 8192] pixels, got " +
              std::to_string(s.vae_tile));
  require(std::isfinite(s.step_cache) && s.step_cache >= 0 && s.step_cache <= 100,
          named("--step-cache", "step_cache") + " must be in [0, 100] (0 = off), got " +
              diffuse::format_double(s.step_cache));
  require(s.resample_times >= 1 && s.resample_times <= 1000,
          named("--resample-times", "resample_times") + " must be in [1, 1000], got " +
              std::to_string(s.resample_times));
  {
    const std::vector<std::string>& known = diffuse::noise_names();
    require(
        s.noise == kRestartNoise || std::find(known.begin(), known.end(), s.noise) != known.end(),
        named("--noise", "noise") + " must be " + diffuse::detail::one_of(known) + ", got '" +
            printable(s.noise) + "'");
  }
  require(std::isfinite(o.batch_memory_mib) && o.batch_memory_mib > 0,
          "--batch-memory must be > 0 MiB, got " + diffuse::format_double(o.batch_memory_mib));
}

/// Where and in which dtype the run computes.
struct Target {
  c10::Device device = c10::Device(c10::kCPU);
  c10::ScalarType dtype = c10::kFloat;
};

/// --device and --dtype, and a guidance scale that is finite in that dtype.
Target parse_target(const SampleSettings& s, const SettingNames& named) {
  Target t;
  try {
    t.device = parse_device(s.device);
    t.dtype = parse_dtype(s.dtype);
  } catch (const UsageError& e) {
    const bool dev = std::string(e.what()).find("device") != std::string::npos;
    throw UsageError(dev ? named("--device", "device") + ": " + e.what()
                         : named("--dtype", "dtype") + ": " + e.what());
  }
  // The scale multiplies network outputs of the run's dtype: it must be finite there too.
  require(std::abs(s.cfg) <= dtype_max(t.dtype),
          named("--cfg", "cfg") + " " + diffuse::format_double(s.cfg) + " is not finite in " +
              dtype_name(t.dtype) + " (the run's dtype holds magnitudes up to " +
              diffuse::format_double(dtype_max(t.dtype)) + ")");
  return t;
}

/// What the outputs' names promise is what is written.
void check_output_names(const SampleOutputs& o) {
  require(
      ends_with_ci(o.out, ".png") || ends_with_ci(o.out, ".jpg") || ends_with_ci(o.out, ".jpeg"),
      "--out '" + o.out + "': the grid is written as PNG or JPEG, name it *.png or *.jpg");
  require(o.save_tensor.empty() || ends_with_ci(o.save_tensor, ".npy") ||
              ends_with_ci(o.save_tensor, ".pt"),
          "--save-tensor '" + o.save_tensor + "': name it *.npy (NumPy) or *.pt (torch::save)");
  require(o.record.empty() || ends_with_ci(o.record, ".json"),
          "--record '" + o.record + "': the record is JSON, name it *.json");
}

/// No output may replace a file the run reads: `-o ays.png` would write its settings record over
/// the schedule file ays.json that `--schedule file:ays.json` reads.
void check_outputs_spare_inputs(const SampleOutputs& o, const SampleSettings& s) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, std::string>> inputs;  // what, path
  if (s.schedule.rfind("file:", 0) == 0)
    inputs.push_back({"the schedule file", s.schedule.substr(5)});
  if (s.model != "default") inputs.push_back({"the model", s.model});
  const std::vector<std::pair<std::string, std::string>> outputs = {
      {"--out", o.out},
      {o.record.empty() ? "the settings record of --out" : "--record",
       o.record.empty() ? default_record_path(o.out) : o.record},
      {"--save-tensor", o.save_tensor}};
  auto key = [](const std::string& path) {
    std::error_code ec;
    const fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
    return ec ? fs::absolute(path).lexically_normal() : p;
  };
  for (const auto& [what_out, out] : outputs) {
    if (out.empty()) continue;
    for (const auto& [what_in, in] : inputs)
      require(key(out) != key(in), what_out + " '" + out + "' is " + what_in + " '" + in +
                                       "' this run reads; choose another --out or --record");
  }
}

/// A1111 names carry the spacing ("DPM++ 2M Karras"): sampler and spacing, both recorded.
void split_a1111_name(SampleSettings& s, const SettingNames& named) {
  const diffuse::SamplerSpacingSpec split = diffuse::split_sampler_spacing(s.sampler);
  if (split.spacing.empty()) return;
  if (!s.schedule.empty()) {
    std::string chosen = trim(s.schedule.substr(0, s.schedule.find(':')));
    try {
      chosen = diffuse::Registry<diffuse::TimestepSpacing>::get().resolve(chosen, {}).first;
    } catch (const diffuse::Error&) {
    }
    require(chosen == split.spacing,
            named("--sampler", "sampler") + " '" + s.sampler + "' selects the " + split.spacing +
                " spacing, but " + named("--schedule", "schedule") + " is '" + s.schedule + "'");
  } else {
    s.schedule = split.spacing;
  }
  s.sampler = split.sampler;
}

/// The sampler, corrections and spacing of the settings, built before anything heavy is loaded.
struct Components {
  std::unique_ptr<diffuse::Sampler> sampler;
  std::vector<std::shared_ptr<diffuse::Correction>> corrections;
  std::optional<ScheduleFile> schedule_file;          ///< --schedule file:PATH
  std::shared_ptr<diffuse::TimestepSpacing> spacing;  ///< nullptr: the noise schedule's default
  std::shared_ptr<const diffuse::Guidance> guidance;  ///< --guidance with --cfg's scale
};

/// Builds every component: a bad name fails fast. A schedule file sets the steps.
Components build_components(SampleSettings& s, const SettingNames& named) {
  Components c;
  try {
    c.sampler = diffuse::sampler_from_spec(s.sampler);
  } catch (const diffuse::Error& e) {
    throw UsageError(named("--sampler", "sampler") + ": " + error_message(e));
  }
  try {
    const auto colon = s.guidance.find(':');
    const std::string name = s.guidance.substr(0, colon);
    diffuse::Config gc;
    if (colon != std::string::npos) gc = diffuse::parse_config(s.guidance.substr(colon + 1));
    if (!gc.count("scale")) gc["scale"] = diffuse::format_double(s.cfg);
    c.guidance = diffuse::make_guidance(name, gc);
  } catch (const diffuse::Error& e) {
    throw UsageError(named("--guidance", "guidance") + " " + s.guidance + ": " + error_message(e));
  }
  for (const std::string& spec : s.corrections) {
    try {
      c.corrections.push_back(diffuse::correction_from_spec(spec));
    } catch (const diffuse::Error& e) {
      throw UsageError(named("--correction", "corrections") + " " + spec + ": " + error_message(e));
    }
  }
  std::string spacing_text = s.schedule;
  if (s.schedule.rfind("file:", 0) == 0) {
    c.schedule_file = read_schedule_file(s.schedule.substr(5));
    spacing_text = spacing_spec(*c.schedule_file);
    require(static_cast<int64_t>(c.schedule_file->timesteps.size()) == s.steps ||
                !named.given("--steps"),
            "--steps " + std::to_string(s.steps) + " does not match the " +
                std::to_string(c.schedule_file->timesteps.size()) + " steps of schedule file '" +
                s.schedule.substr(5) + "'");
    s.steps = static_cast<int64_t>(c.schedule_file->timesteps.size());
  }
  if (!spacing_text.empty()) {
    try {
      c.spacing = diffuse::Registry<diffuse::TimestepSpacing>::get().make_from_spec(spacing_text);
    } catch (const diffuse::Error& e) {
      throw UsageError(named("--schedule", "schedule") + ": " + error_message(e));
    }
  }
  return c;
}

/// Class id per image: "" cycles through the classes, else a comma list of ids or names
/// (repeated cyclically over the images).
std::vector<int64_t> parse_classes(const std::string& text, const diffuse::ModelCard& card,
                                   int64_t num) {
  std::vector<int64_t> ids;
  if (card.num_classes == 0) {
    require(text.empty(), "--class " + text + ": the model is unconditional (num_classes=0)");
    return ids;
  }
  if (text.empty() || text == "all") {
    for (int64_t i = 0; i < num; ++i) ids.push_back(i % card.num_classes);
    return ids;
  }
  std::vector<int64_t> pattern;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    require(!item.empty(), "--class '" + text + "' has an empty item");
    int64_t id = -1;
    for (size_t k = 0; k < card.class_names.size(); ++k)
      if (card.class_names[k] == item) id = static_cast<int64_t>(k);
    if (id < 0) {
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      std::string names;
      for (const auto& n : card.class_names) names += (names.empty() ? "" : ", ") + n;
      require(*end == '\0' && v >= 0 && v < card.num_classes,
              "--class '" + item + "' is not a class id in [0, " +
                  std::to_string(card.num_classes - 1) + "]" +
                  (names.empty() ? std::string() : " or a class name (" + names + ")"));
      id = v;
    }
    pattern.push_back(id);
  }
  for (int64_t i = 0; i < num; ++i) ids.push_back(pattern[static_cast<size_t>(i) % pattern.size()]);
  return ids;
}

/// The loaded model and what follows from its card.
struct ModelPlan {
  diffuse::LoadedModel model;
  std::shared_ptr<const diffuse::NoiseSchedule> schedule;
  std::vector<int64_t> classes;  ///< class id per image (empty: unconditional)
  bool guided = false;           ///< classifier-free guidance (a conditional model, cfg != 1)
  bool embed_labels = false;     ///< hand the network label embeddings (CADS)
  int64_t nrow = 8;              ///< images per grid row
  at::Tensor init{};             ///< --init-image as [C, H, W] in [-1, 1] (undefined: none)
  at::Tensor mask{};             ///< --mask as [1, H, W] in [0, 1] (undefined: none)
  std::optional<diffuse::AutoencoderKL> vae;  ///< --vae: latents are decoded through it
};

/// A PNG of the model's size as [C, H, W] in [-1, 1] (errors name the option and the path).
at::Tensor read_model_image(const std::string& path, int64_t channels,
                            const std::vector<int64_t>& shape, const std::string& what) {
  at::Tensor img;
  try {
    img = diffuse::read_image(path, static_cast<int>(channels));
  } catch (const diffuse::Error& e) {
    throw UsageError(what + " '" + path + "': " + error_message(e));
  }
  std::vector<int64_t> want(shape.begin(), shape.end());
  want[0] = channels;
  require(img.sizes() == at::IntArrayRef(want),
          what + " '" + path + "' is " + std::to_string(img.size(2)) + "x" +
              std::to_string(img.size(1)) + " but the model makes " + std::to_string(shape[2]) +
              "x" + std::to_string(shape[1]) + " images");
  return img;
}

/// --mask as [1, H, W] in [0, 1] (white = 1) at the size `shape` gives.
at::Tensor read_mask(const std::string& path, const std::vector<int64_t>& shape) {
  return (read_model_image(path, 1, shape, "--mask") + 1.0) * 0.5;
}

/// Loads the model and checks the settings against its card.
ModelPlan load_model_plan(const SampleSettings& s, const Components& c, const Target& t) {
  ModelPlan p{load_cli_model(s.model, s.model_card, t.device, t.dtype),
              nullptr,
              {},
              false,
              false,
              8,
              {},
              {},
              std::nullopt};
  if (!p.model.precision.empty())
    spdlog::info("--dtype {} on {}: {}", dtype_name(t.dtype), t.device.str(), p.model.precision);
  const diffuse::ModelCard& card = p.model.card;
  p.schedule = p.model.make_schedule();
  if (c.schedule_file) {
    require(c.schedule_file->noise_schedule == card.schedule,
            "schedule file '" + s.schedule.substr(5) + "' was made for noise schedule '" +
                c.schedule_file->noise_schedule + "' but the model uses '" + card.schedule + "'");
  }
  p.classes = parse_classes(s.classes, card, s.num);
  p.guided = card.num_classes > 0 && s.cfg != 1.0;
  // CADS anneals the condition *embedding*: hand a DiT its label embeddings instead of the labels.
  for (const auto& corr : c.corrections)
    p.embed_labels = p.embed_labels || corr->name() == "condition_annealing";
  p.embed_labels = p.embed_labels && card.num_classes > 0;
  require(!p.embed_labels || p.model.dit.has_value(),
          "--correction cads needs a model that takes its condition as an embedding (diffuse's "
          "DiT); this " +
              p.model.format + " model takes class labels");
  p.nrow = s.nrow > 0 ? s.nrow : (card.num_classes > 0 && s.classes.empty() ? card.num_classes : 8);
  require(
      !s.vae.empty() || card.vae.empty(),
      "the model makes latents for the VAE '" + card.vae +
          "' (its card says so): give --vae DIR or FILE (a diffusers AutoencoderKL folder, e.g. "
          "stabilityai/sd-vae-ft-ema, or a .safetensors VAE) to decode them into images");
  if (!s.vae.empty()) {
    try {
      diffuse::LoadVaeOptions vo;
      vo.preset = s.vae_preset;
      p.vae = diffuse::load_vae(s.vae, vo);
    } catch (const diffuse::Error& e) {
      throw UsageError("--vae '" + s.vae + "': " + error_message(e));
    }
    const int64_t latent = (*p.vae)->options().latent_channels();
    require(card.sample_shape.size() == 3 && card.sample_shape[0] == latent,
            "--vae '" + s.vae + "' decodes " + std::to_string(latent) +
                "-channel latents; the model makes samples of shape " +
                diffuse::detail::card_shape_text(card.sample_shape));
    const int64_t f = (*p.vae)->options().downscale();
    require(s.vae_tile == 0 || s.vae_tile % f == 0, "--vae-tile " + std::to_string(s.vae_tile) +
                                                        " must be a multiple of the VAE's " +
                                                        "downscale factor " + std::to_string(f));
    (*p.vae)->to(t.device);
    if (t.dtype == at::kBFloat16 ||
        (t.dtype == at::kHalf && diffuse::detail::device_computes_float16(t.device)))
      (*p.vae)->to(t.dtype);
  }
  if (!s.init_image.empty() && p.vae) {
    // Latent img2img / inpainting: the image at the VAE's pixel size, encoded to the posterior
    // mean (diffusers' sample_mode="argmax"); the mask taken to the latent size by nearest
    // neighbour, as diffusers' inpainting pipelines do.
    diffuse::AutoencoderKL& vae = *p.vae;
    const int64_t f = vae->options().downscale();
    const std::vector<int64_t> pixels{vae->options().in_channels(), card.sample_shape[1] * f,
                                      card.sample_shape[2] * f};
    const at::Tensor img = read_model_image(s.init_image, pixels[0], pixels, "--init-image");
    diffuse::VaeTiling tiling;
    tiling.tile = s.vae_tile;
    torch::NoGradGuard no_grad;
    p.init = vae->encode(img.unsqueeze(0).to(t.device), nullptr, tiling).squeeze(0).cpu();
    if (!s.mask.empty()) {
      const at::Tensor m = read_mask(s.mask, pixels);
      namespace F = torch::nn::functional;
      p.mask =
          F::interpolate(m.unsqueeze(0),
                         F::InterpolateFuncOptions()
                             .size(std::vector<int64_t>{card.sample_shape[1], card.sample_shape[2]})
                             .mode(torch::kNearest))
              .squeeze(0);
    }
  } else if (!s.init_image.empty()) {
    require(
        card.sample_shape.size() == 3 && (card.sample_shape[0] == 1 || card.sample_shape[0] == 3),
        "--init-image needs a model that makes 1- or 3-channel images (C x H x W), this one "
        "makes samples of " +
            std::to_string(card.sample_shape.size()) + " dimensions with " +
            std::to_string(card.sample_shape.empty() ? 0 : card.sample_shape[0]) + " channels");
    p.init =
        read_model_image(s.init_image, card.sample_shape[0], card.sample_shape, "--init-image");
    if (!s.mask.empty()) p.mask = read_mask(s.mask, card.sample_shape);
  }
  return p;
}

/// The batch size when --batch-size is 0 (the record then holds the one chosen).
int64_t choose_batch_size(const SampleSettings& s, const SampleOutputs& o, const ModelPlan& p,
                          c10::ScalarType dtype, int world) {
  if (s.batch_size > 0) return s.batch_size;
  // One batch per rank; recorded, so that one process with the record makes the same bytes.
  if (world > 1) return (s.num + world - 1) / world;
  // As many images per network call as the memory budget allows (the estimate depends only on the
  // model, dtype and settings, so a record reproduces the same batches; batch composition can
  // change the rounding).
  return diffuse::auto_batch_size(p.model, dtype, s.num, p.guided,
                                  o.batch_memory_mib * 1024.0 * 1024.0);
}

/// The options every chunk shares: steps, spacing, corrections and guidance.
diffuse::SampleOptions base_options(const SampleSettings& s, const Components& c, bool guided) {
  diffuse::SampleOptions so;
  so.num_steps = s.steps;
  so.spacing = c.spacing;
  so.corrections = c.corrections;
  if (guided) so.guidance = c.guidance;
  return so;
}

void log_run(const SampleSettings& s, const Components& c, const ModelPlan& p, const Target& t,
             const std::string& model_path, const diffuse::TimeGrid& grid) {
  const diffuse::ModelCard& card = p.model.card;
  spdlog::info(
      "{} {} ({} classes, {}, {} schedule) | {} {} steps{}{} | {} images in batches of {}, seed {} "
      "({} noise) | {} on {}, {} thread(s)",
      p.model.format, model_path, card.num_classes, card.prediction_type, p.schedule->name(),
      s.sampler, s.steps, c.spacing ? " (" + c.spacing->name() + ")" : std::string(),
      p.guided ? ", " + s.guidance + " " + diffuse::format_double(s.cfg) : std::string(), s.num,
      s.batch_size, s.seed, s.noise, dtype_name(t.dtype), t.device.str(), at::get_num_threads());
  spdlog::debug("sampler {} | spacing {} | grid t {} .. {}", canonical_spec(*c.sampler),
                c.spacing ? canonical_spec(*c.spacing) : std::string("default"), grid.front().t,
                grid.back().t);
}

/// The steps one run takes (for the progress bar): the grid's, or its img2img share, plus
/// RePaint's re-run steps (SampleContext::resample_jump).
int64_t steps_per_run(const SampleSettings& s) {
  const int64_t n = s.steps;
  const int64_t first =
      s.init_image.empty()
          ? 0
          : n - static_cast<int64_t>(std::floor(static_cast<double>(n) * s.strength));
  int64_t steps = n - first;
  if (s.resample_jump > 0 && s.resample_times > 1)
    for (int64_t p = n; p - s.resample_jump > first; p -= s.resample_jump)
      steps += (s.resample_times - 1) * s.resample_jump;
  return steps;
}

/// Samples the images (this rank's share; rank 0 gathers all of them). Sample i uses seed + i,
/// whatever the chunking; with several ranks each samples a block of the chunks one process would
/// use (so the images are bit-identical).
at::Tensor sample_images(const SampleSettings& s, const Components& c, ModelPlan& p,
                         const Target& t, const diffuse::SampleOptions& so, RankGroup& group) {
  const diffuse::ModelCard& card = p.model.card;
  const int rank = group.info.rank, world = group.info.world_size;
  const int64_t chunk = s.batch_size;
  // --step-cache: one cache per chunk (a run's state), every chunk's counts summed for the log.
  require(s.step_cache == 0 || p.model.dit.has_value(),
          "--step-cache needs a DiT model; " + p.model.source + " is " + p.model.format);
  int64_t cache_computed = 0, cache_reused = 0;
  std::vector<int64_t> shape = {0};
  shape.insert(shape.end(), card.sample_shape.begin(), card.sample_shape.end());
  const auto topt = at::TensorOptions().dtype(t.dtype).device(t.device);
  const auto mine = diffuse::shard_items(s.num, chunk, rank, world);
  Progress bar("sampling", (mine.second - mine.first + chunk - 1) / chunk * steps_per_run(s),
               "steps");
  int64_t done_steps = 0;
  const c10::Device device = t.device;
  const auto make_chunk = [&](int64_t start, int64_t m) {
    c10::InferenceMode inference;  // no autograd state, no version counters
    shape[0] = m;
    diffuse::SampleOptions co = so;
    co.seed = s.seed + static_cast<uint64_t>(start);
    if (card.num_classes > 0) {
      co.cond.value =
          at::tensor(std::vector<int64_t>(p.classes.begin() + start, p.classes.begin() + start + m),
                     at::TensorOptions(at::kLong))
              .to(device);
      if (p.guided)
        co.uncond.value =
            at::full({m}, card.num_classes, at::TensorOptions(at::kLong).device(device));
      if (p.embed_labels) {
        diffuse::DiT& dit = *p.model.dit;
        co.cond.value = dit->label_embedding(co.cond.value, m, device);
        if (p.guided) co.uncond.value = dit->label_embedding(co.uncond.value, m, device);
      }
    }
    co.on_step = [&](const diffuse::StepInfo&) { bar.update(++done_steps); };
    if (p.init.defined()) {
      co.init_image = p.init.to(topt).unsqueeze(0).expand(shape).contiguous();
      co.strength = s.strength;
      if (p.mask.defined()) co.mask = p.mask.to(topt).unsqueeze(0);
    }
    co.resample_jump = s.resample_jump;
    co.resample_times = s.resample_times;
    // The starting noise is the source's first draw and the sampler continues the source (the
    // old records' stream restarted the per-sample generators for the steps instead).
    const bool restart = s.noise == kRestartNoise;
    std::shared_ptr<diffuse::NoiseSource> source =
        diffuse::make_noise(restart ? "per_sample" : s.noise, s.seed, static_cast<uint64_t>(start));
    at::Tensor noise = source->randn(shape, topt);
    co.noise =
        restart ? diffuse::make_noise("per_sample", s.seed, static_cast<uint64_t>(start)) : source;
    if (s.step_cache == 0) {
      const diffuse::Denoiser denoiser(p.model.network, p.model.denoiser_options());
      return diffuse::sample(*c.sampler, denoiser, *p.schedule, noise, co).cpu();
    }
    auto cache = std::make_shared<diffuse::DiTStepCache>(s.step_cache);
    const diffuse::Denoiser denoiser(p.model.cached_network(cache), p.model.denoiser_options());
    at::Tensor out = diffuse::sample(*c.sampler, denoiser, *p.schedule, noise, co).cpu();
    cache_computed += cache->computed();
    cache_reused += cache->reused();
    return out;
  };
  const std::vector<int64_t> item_shape(card.sample_shape.begin(), card.sample_shape.end());
  at::Tensor images = diffuse::sample_sharded(s.num, chunk, rank, world, item_shape, at::kFloat,
                                              make_chunk, group.all_gather());
  bar.finish();
  if (s.step_cache > 0) {
    spdlog::info("step cache (threshold {}): the DiT blocks ran in {} of {} network calls",
                 diffuse::format_double(s.step_cache), cache_computed,
                 cache_computed + cache_reused);
  }
  return images;
}

/// Latents [N, C, h, w] -> images [N, 3, 8h, 8w] through --vae, --batch-size at a time.
at::Tensor decode_latents(const SampleSettings& s, ModelPlan& p, const at::Tensor& latents) {
  torch::NoGradGuard no_grad;
  diffuse::VaeTiling tiling;
  tiling.tile = s.vae_tile;
  diffuse::VaeDecodeReport report;
  std::vector<at::Tensor> parts;
  const int64_t batch = std::max<int64_t>(1, std::min<int64_t>(s.batch_size, 16));
  for (int64_t i = 0; i < latents.size(0); i += batch) {
    const int64_t n = std::min(batch, latents.size(0) - i);
    parts.push_back((*p.vae)->decode(latents.narrow(0, i, n), tiling, &report).cpu());
  }
  spdlog::info("decoded {} latents through the VAE '{}' ({} decoder call{}{})", latents.size(0),
               s.vae, report.tiles, report.tiles == 1 ? "" : "s",
               report.float32_fallbacks > 0
                   ? ", " + std::to_string(report.float32_fallbacks) + " redone in float32"
                   : std::string());
  return at::cat(parts, 0);
}

int run_sample(SampleSettings s, const SampleOutputs& o, const ParallelArgs& par, CLI::App& app) {
  if (o.list) {
    print_lists(std::cout);
    return kExitOk;
  }
  RankGroup group;
  group.info = rank_from_env();
  check_parallel_args(par);
  if (!o.from_record.empty()) s = merge_record(s, o.from_record, app);
  // diffusers' defaults: img2img strength 0.8, inpainting 1 (the record keeps the value used).
  if (!s.init_image.empty() && s.strength == 0) s.strength = s.mask.empty() ? 0.8 : 1.0;
  s.threads = at::get_num_threads();
  const SettingNames named(app, o.from_record);
  check_settings(s, o, named);
  const Target target = parse_target(s, named);
  check_output_names(o);
  check_outputs_spare_inputs(o, s);
  split_a1111_name(s, named);
  const Components c = build_components(s, named);
  ModelPlan plan = load_model_plan(s, c, target);

  // --nproc N (after every check, so that bad arguments fail once, here): the same command as N
  // ranks, each sampling its share of the images; rank 0 writes the outputs.
  if (const auto rc = launch_if_requested(par, "sample")) return *rc;
  join_group(group, par);
  s.batch_size = choose_batch_size(s, o, plan, target.dtype, group.info.world_size);

  const diffuse::SampleOptions so = base_options(s, c, plan.guided);
  const diffuse::TimeGrid grid = diffuse::make_grid(*plan.schedule, so);
  const std::string model_path =
      plan.model.source == "default" ? diffuse::default_model_path() : plan.model.source;
  log_run(s, c, plan, target, model_path, grid);
  const at::Tensor images = sample_images(s, c, plan, target, so, group);
  if (group.info.rank != 0) return kExitOk;  // rank 0 writes the outputs
  if (!at::isfinite(images).all().item<bool>())
    throw diffuse::NumericalError("sampling produced NaN/Inf values");

  at::Tensor outputs = images;
  if (plan.vae) outputs = decode_latents(s, plan, images);

  ResolvedRun resolved;
  resolved.model = &plan.model;
  resolved.model_path = model_path;
  resolved.sampler = c.sampler.get();
  resolved.spacing = c.spacing.get();
  for (const auto& point : grid) resolved.grid_t.push_back(point.t);
  resolved.corrections = &c.corrections;
  resolved.guidance = plan.guided ? so.guidance.get() : nullptr;
  resolved.class_ids = &plan.classes;
  write_outputs(s, o, outputs, make_record(s, resolved), plan.nrow);
  return kExitOk;
}

std::function<int()> setup_sample(CLI::App& app) {
  auto s = std::make_shared<SampleSettings>();
  auto o = std::make_shared<SampleOutputs>();
  app.footer(R"(Examples:
  diffuse sample                                     # 40 Fashion-MNIST images from the shipped model
  diffuse sample --sampler euler_a --schedule karras --steps 30 --cfg 3 -o euler.png
  diffuse sample --class Sneaker,Bag -n 16 --correction epsilon_scaling:b=1.005
  diffuse sample --schedule file:ays.json            # a schedule written by `diffuse ays`
  diffuse sample --model run/model.pt --save-each frames/ --save-tensor x.npy
  diffuse sample --model exported.pt --model-card "sample_shape=1x28x28,num_classes=10"
  diffuse sample --from-record diffuse_samples.png -o again.png   # the same image again
  diffuse sample --list                              # every sampler, schedule, correction)");
  app.add_option("-m,--model", s->model,
                 "Model: 'default' (the shipped Fashion-MNIST DiT), a diffuse model file, a "
                 "training checkpoint, a "
                 "TorchScript module or .safetensors weights")
      ->capture_default_str();
  app.add_option(
      "--model-card", s->model_card,
      "Card for a model file without one (TorchScript, safetensors): "
      "\"sample_shape=1x28x28,num_classes=10,schedule=discrete,prediction_type=epsilon\"");
  app.add_option("-s,--sampler", s->sampler, "Sampler NAME[:option=value,...] (see --list)")
      ->capture_default_str();
  app.add_option("--schedule", s->schedule,
                 "Time spacing NAME[:option=value,...] (karras, ays, trailing, ...) or file:PATH; "
                 "default: the "
                 "model's");
  app.add_option("--steps", s->steps, "Solver steps")->capture_default_str();
  app.add_option("--guidance", s->guidance,
                 "Guidance: cfg (default), cfg_pp, apg, cfg_zero_star, with options as "
                 "name:key=value,...; the scale is --cfg's unless given (--cfg 1 = off)");
  app.add_option("--init-image", s->init_image,
                 "img2img / inpainting: start from this PNG (the model's image size)");
  app.add_option("--strength", s->strength,
                 "img2img: share of the steps run from --init-image, in (0, 1] (default 0.8; 1 "
                 "with --mask)");
  app.add_option("--mask", s->mask,
                 "Inpainting: PNG of the model's size, white = generate, black = keep "
                 "--init-image");
  app.add_option("--resample-jump", s->resample_jump,
                 "RePaint resampling (inpainting): every N steps from the end, noise the run back "
                 "N steps and re-run them (0 = off)")
      ->capture_default_str();
  app.add_option("--resample-times", s->resample_times,
                 "RePaint resampling: run each jumped span this many times (1 = off; RePaint: "
                 "10)")
      ->capture_default_str();
  app.add_option("--step-cache", s->step_cache,
                 "DiT step caching (TeaCache-style): skip the transformer blocks while the "
                 "accumulated relative change of their modulated input stays below this "
                 "threshold, reusing the last residual (0 = off; e.g. 0.1)")
      ->capture_default_str();
  app.add_option("--vae", s->vae,
                 "Decode the model's latents into images with this AutoencoderKL: a diffusers "
                 "folder (config.json + diffusion_pytorch_model.safetensors) or a .safetensors "
                 "file (diffusers or single-file SD names; architecture 'sd')");
  app.add_option("--vae-preset", s->vae_preset,
                 "Architecture of a --vae .safetensors file without a config: sd (SD 1.x/2.x, "
                 "DiT, SiT), sdxl (scaling 0.13025), sd3, flux")
      ->capture_default_str();
  app.add_option("--vae-tile", s->vae_tile,
                 "Tiled VAE decode: tile side in pixels (0 = whole images; e.g. 512 bounds the "
                 "memory of large images)")
      ->capture_default_str();
  app.add_option("--cfg", s->cfg, "Classifier-free guidance scale (1 = off; conditional models)")
      ->capture_default_str();
  app.add_option("--class", s->classes,
                 "Class ids or names, comma-separated (default: every class in turn)");
  app.add_option("-c,--correction", s->corrections,
                 "Correction NAME[:option=value,...]; repeat for several");
  app.add_option("--seed", s->seed, "Seed in [0, 2^64 - 1]; image i uses seed + i")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) {
            const std::string t = trim(v);
            if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos)
              return std::string(
                         "the seed must be an integer in [0, 18446744073709551615], got '") +
                     v + "'";
            return std::string();
          },
          "UINT64", "seed"));
  app.add_option("--noise", s->noise,
                 "Noise source: per_sample (a PyTorch CPU generator per image, seeded seed + i: "
                 "diffusers' list of generators), philox (counter-based, 4x faster, not PyTorch's "
                 "stream) or torch (one PyTorch generator per batch, seeded seed + the batch's "
                 "first index: depends on --batch-size)")
      ->capture_default_str();
  app.add_option("-n,--num", s->num,
                 "Number of images (at most 1,000,000; the grid shows the first 1,024)")
      ->capture_default_str();
  app.add_option("--batch-size", s->batch_size,
                 "Images per network batch (0 = automatic: as many as fit --batch-memory)")
      ->capture_default_str();
  app.add_option("--batch-memory", o->batch_memory_mib,
                 "Memory budget in MiB of one batch's network call when --batch-size is 0 (an "
                 "estimate from the "
                 "model's card; the images themselves take num x their size on top)")
      ->capture_default_str();
  app.add_option("--device", s->device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", s->dtype, "float32, float64, float16, bfloat16")->capture_default_str();
  app.add_option("--nrow", s->nrow, "Images per grid row (0 = number of classes, or 8)")
      ->capture_default_str();
  app.add_option(
         "-o,--out", o->out,
         "Grid to write: *.png (the settings go into its tEXt chunk \"diffuse\") or *.jpg / *.jpeg "
         "(quality 95; the settings only in the record)")
      ->capture_default_str();
  app.add_option("--record", o->record,
                 "Settings record JSON (default: the --out path with .json)");
  app.add_option("--save-each", o->save_each, "Also write each image as DIR/000000.png, ...");
  app.add_option("--save-tensor", o->save_tensor,
                 "Also write the images as a tensor: *.npy or *.pt (torch::save)");
  app.add_option(
      "--from-record", o->from_record,
      "Take the settings from a record (.json or a PNG written by diffuse sample); options given "
      "explicitly override it");
  app.add_flag("--list", o->list,
               "List the samplers, schedules, corrections and guidance, then exit");
  auto par = std::make_shared<ParallelArgs>();
  add_parallel_options(app, *par);
  return [s, o, par, &app] { return run_sample(*s, *o, *par, app); };
}

}  // namespace

}  // namespace diffuse::cli::sample_command

namespace diffuse::cli {

DIFFUSE_CLI_COMMAND(sample, "sample",
                    "Generate images with any sampler, schedule, guidance and corrections",
                    sample_command::setup_sample);

}  // namespace diffuse::cli
