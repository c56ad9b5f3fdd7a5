// SPDX-License-Identifier: Apache-2.0
// diffuse sample: images from a model (the shipped Fashion-MNIST DiT by default, a diffuse model
// file, a training checkpoint, a TorchScript module or safetensors weights) with any registered
// sampler, spacing, guidance scale and corrections. Writes a PNG grid whose tEXt chunk "diffuse"
// and a JSON file next to it record every setting, so `--from-record` regenerates the same bytes.
#include "cli.h"
#include "parallel.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/serialize.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <diffuse/all.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/image.h>
#include <diffuse/training/model_file.h>

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// Everything that determines the images (the record). Output paths are not part of it.
struct SampleSettings {
  std::string model = "default";
  std::string model_card;
  std::string sampler = "dpmpp_2m";
  std::string schedule;  // spacing spec; empty = the noise schedule's default
  int64_t steps = 20;
  double cfg = 2.0;
  std::string classes;  // "" = cycle through all classes; "3", "0,3,7", names
  std::vector<std::string> corrections;
  uint64_t seed = 0;
  int64_t num = 40;
  int64_t batch_size = 0;  // 0 = all at once
  std::string device = "cpu";
  std::string dtype = "float32";
  int64_t nrow = 0;  // 0 = number of classes when cycling, else 8
};

struct SampleOutputs {
  std::string out = "diffuse_samples.png";
  std::string record;  // default: <out without .png>.json
  std::string save_each;
  std::string save_tensor;
  std::string from_record;
  bool list = false;
};

// ----- registry listing

template <class Base>
void list_registry(std::ostream& os, const std::string& title) {
  const auto& reg = diffuse::Registry<Base>::get();
  os << title << ":\n";
  for (const std::string& n : reg.names()) {
    std::string label = n.find(' ') != std::string::npos ? "\"" + n + "\"" : n;
    if (label.size() < 34) label += std::string(34 - label.size(), ' ');
    os << "  " << label << " " << reg.summary(n) << "\n";
  }
  os << "\n";
}

void print_lists(std::ostream& os) {
  list_registry<diffuse::Sampler>(os, "Samplers (--sampler NAME[:option=value,...])");
  list_registry<diffuse::TimestepSpacing>(
      os, "Schedules / spacings (--schedule NAME[:option=value,...] or file:PATH from `diffuse ays`)");
  list_registry<diffuse::Correction>(os, "Corrections (--correction NAME[:option=value,...], repeatable)");
  list_registry<diffuse::Guidance>(os, "Guidance (--cfg SCALE uses cfg)");
  list_registry<diffuse::NoiseSchedule>(os, "Noise schedules (set by the model's card)");
}

// ----- settings <-> JSON

json to_json(const SampleSettings& s) {
  json j;
  j["diffuse_sample"] = 1;
  j["model"] = s.model;
  if (!s.model_card.empty()) j["model_card"] = s.model_card;
  j["sampler"] = s.sampler;
  j["schedule"] = s.schedule;
  j["steps"] = s.steps;
  j["cfg"] = s.cfg;
  j["classes"] = s.classes;
  j["corrections"] = s.corrections;
  j["seed"] = s.seed;
  j["num"] = s.num;
  j["batch_size"] = s.batch_size;
  j["device"] = s.device;
  j["dtype"] = s.dtype;
  j["nrow"] = s.nrow;
  return j;
}

SampleSettings from_json(const json& j, const std::string& path) {
  auto fail = [&](const std::string& why) { throw UsageError("record '" + path + "': " + why); };
  if (!j.is_object() || !j.contains("diffuse_sample")) fail("not a diffuse sample record");
  if (j["diffuse_sample"] != 1) fail("unsupported record version " + j["diffuse_sample"].dump());
  SampleSettings s;
  try {
    s.model = j.at("model").get<std::string>();
    s.model_card = j.value("model_card", "");
    s.sampler = j.at("sampler").get<std::string>();
    s.schedule = j.at("schedule").get<std::string>();
    s.steps = j.at("steps").get<int64_t>();
    s.cfg = j.at("cfg").get<double>();
    s.classes = j.at("classes").get<std::string>();
    s.corrections = j.at("corrections").get<std::vector<std::string>>();
    s.seed = j.at("seed").get<uint64_t>();
    s.num = j.at("num").get<int64_t>();
    s.batch_size = j.at("batch_size").get<int64_t>();
    s.device = j.at("device").get<std::string>();
    s.dtype = j.at("dtype").get<std::string>();
    s.nrow = j.at("nrow").get<int64_t>();
  } catch (const json::exception& e) {
    fail(std::string("missing or mistyped field: ") + e.what());
  }
  return s;
}

json read_record(const std::string& path) {
  require_file(path, "record");
  try {
    if (path.size() > 4 && path.compare(path.size() - 4, 4, ".png") == 0) {
      const auto text = diffuse::read_png_text(path);
      auto it = text.find("diffuse");
      require(it != text.end(), "PNG '" + path + "' carries no diffuse record (tEXt chunk \"diffuse\")");
      return json::parse(it->second).at("settings");
    }
    std::ifstream f(path);
    json j = json::parse(f);
    return j.contains("settings") ? j.at("settings") : j;
  } catch (const json::exception& e) {
    throw UsageError("record '" + path + "' is not valid: " + std::string(e.what()));
  }
}

// ----- helpers

/// FNV-1a 64 of a file's bytes, hex: identifies the exact weights a record was made with.
std::string file_checksum(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint64_t h = 1469598103934665603ull;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof(buf));
    for (std::streamsize i = 0; i < f.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 1099511628211ull;
    }
  }
  char out[32];
  std::snprintf(out, sizeof(out), "fnv1a64:%016llx", static_cast<unsigned long long>(h));
  return out;
}

/// Class id per image: "" cycles through the classes, else a comma list of ids or names
/// (repeated cyclically over the images).
std::vector<int64_t> parse_classes(const std::string& text, const diffuse::ModelCard& card, int64_t num) {
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
    item = diffuse::detail::trim(item);
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
              "--class '" + item + "' is not a class id in [0, " + std::to_string(card.num_classes - 1) + "]" +
                  (names.empty() ? std::string() : " or a class name (" + names + ")"));
      id = v;
    }
    pattern.push_back(id);
  }
  for (int64_t i = 0; i < num; ++i) ids.push_back(pattern[static_cast<size_t>(i) % pattern.size()]);
  return ids;
}

/// Writes a .npy (format 1.0, little-endian, C order) of a CPU tensor of float32/float64.
void save_npy(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.contiguous().cpu();
  const std::string descr = c.scalar_type() == at::kDouble ? "<f8" : "<f4";
  const at::Tensor data = c.scalar_type() == at::kDouble ? c : c.to(at::kFloat);
  std::string shape = "(";
  for (int64_t i = 0; i < data.dim(); ++i) shape += std::to_string(data.size(i)) + (data.dim() == 1 ? "," : (i + 1 < data.dim() ? ", " : ""));
  shape += ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string bytes = "\x93NUMPY";
  bytes += '\x01';
  bytes += '\x00';
  const uint16_t len = static_cast<uint16_t>(header.size());
  bytes += static_cast<char>(len & 0xff);
  bytes += static_cast<char>(len >> 8);
  bytes += header;
  bytes.append(static_cast<const char*>(data.data_ptr()), static_cast<size_t>(data.nbytes()));
  diffuse::write_bytes_atomic(path, bytes.data(), bytes.size());
}

std::string default_record_path(const std::string& out) {
  fs::path p(out);
  return (p.parent_path() / (p.stem().string() + ".json")).string();
}

void ensure_parent(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  require(!ec, "cannot create the folder of '" + path + "': " + ec.message());
}

// ----- the command

int run_sample(SampleSettings s, const SampleOutputs& o, const ParallelArgs& par, CLI::App& app) {
  if (o.list) {
    print_lists(std::cout);
    return kExitOk;
  }
  RankGroup group;
  group.info = rank_from_env();
  check_parallel_args(par);
  if (!o.from_record.empty()) {
    // The record's settings, then whatever was given explicitly on this command line.
    SampleSettings given = s;
    s = from_json(read_record(o.from_record), o.from_record);
    auto given_opt = [&](const char* name) { return app.get_option(name)->count() > 0; };
    if (given_opt("--model")) s.model = given.model;
    if (given_opt("--model-card")) s.model_card = given.model_card;
    if (given_opt("--sampler")) s.sampler = given.sampler;
    if (given_opt("--schedule")) s.schedule = given.schedule;
    if (given_opt("--steps")) s.steps = given.steps;
    if (given_opt("--cfg")) s.cfg = given.cfg;
    if (given_opt("--class")) s.classes = given.classes;
    if (given_opt("--correction")) s.corrections = given.corrections;
    if (given_opt("--seed")) s.seed = given.seed;
    if (given_opt("--num")) s.num = given.num;
    if (given_opt("--batch-size")) s.batch_size = given.batch_size;
    if (given_opt("--device")) s.device = given.device;
    if (given_opt("--dtype")) s.dtype = given.dtype;
    if (given_opt("--nrow")) s.nrow = given.nrow;
  }
  require(s.steps >= 1 && s.steps <= 100000, "--steps must be in [1, 100000], got " + std::to_string(s.steps));
  require(s.num >= 1 && s.num <= 1000000, "--num must be in [1, 1000000], got " + std::to_string(s.num));
  require(s.batch_size >= 0, "--batch-size must be >= 0 (0 = all at once), got " + std::to_string(s.batch_size));
  require(s.nrow >= 0, "--nrow must be >= 0, got " + std::to_string(s.nrow));
  require(std::isfinite(s.cfg), "--cfg must be finite, got " + diffuse::detail::format_double(s.cfg));
  const c10::Device device = parse_device(s.device);
  const c10::ScalarType dtype = parse_dtype(s.dtype);

  // Build every component before loading anything heavy: a bad name fails fast.
  std::unique_ptr<diffuse::Sampler> sampler;
  try {
    sampler = diffuse::sampler_from_spec(s.sampler);
  } catch (const diffuse::Error& e) {
    throw UsageError("--sampler: " + error_message(e));
  }
  std::vector<std::shared_ptr<diffuse::Correction>> corrections;
  for (const std::string& spec : s.corrections) {
    try {
      corrections.push_back(diffuse::correction_from_spec(spec));
    } catch (const diffuse::Error& e) {
      throw UsageError("--correction " + spec + ": " + error_message(e));
    }
  }
  std::optional<ScheduleFile> schedule_file;
  std::string spacing_text = s.schedule;
  if (s.schedule.rfind("file:", 0) == 0) {
    schedule_file = read_schedule_file(s.schedule.substr(5));
    spacing_text = spacing_spec(*schedule_file);
    require(static_cast<int64_t>(schedule_file->timesteps.size()) == s.steps ||
                app.get_option("--steps")->count() == 0,
            "--steps " + std::to_string(s.steps) + " does not match the " +
                std::to_string(schedule_file->timesteps.size()) + " steps of schedule file '" + s.schedule.substr(5) +
                "'");
    s.steps = static_cast<int64_t>(schedule_file->timesteps.size());
  }
  std::shared_ptr<diffuse::TimestepSpacing> spacing;
  if (!spacing_text.empty()) {
    try {
      spacing = diffuse::Registry<diffuse::TimestepSpacing>::get().make_from_spec(spacing_text);
    } catch (const diffuse::Error& e) {
      throw UsageError("--schedule: " + error_message(e));
    }
  }

  diffuse::LoadedModel model = load_cli_model(s.model, s.model_card, device, dtype);
  const diffuse::ModelCard& card = model.card;
  auto schedule = model.make_schedule();
  if (schedule_file) {
    require(schedule_file->noise_schedule == card.schedule,
            "schedule file '" + s.schedule.substr(5) + "' was made for noise schedule '" +
                schedule_file->noise_schedule + "' but the model uses '" + card.schedule + "'");
  }
  const std::vector<int64_t> classes = parse_classes(s.classes, card, s.num);
  const bool guided = card.num_classes > 0 && s.cfg != 1.0;
  // CADS anneals the condition *embedding*: hand a DiT its label embeddings instead of the labels.
  bool embed_labels = false;
  for (const auto& c : corrections) embed_labels = embed_labels || c->name() == "condition_annealing";
  embed_labels = embed_labels && card.num_classes > 0;
  require(!embed_labels || model.dit.has_value(),
          "--correction cads needs a model that takes its condition as an embedding (diffuse's DiT); this " +
              model.format + " model takes class labels");
  const int64_t nrow = s.nrow > 0 ? s.nrow : (card.num_classes > 0 && s.classes.empty() ? card.num_classes : 8);
  // --nproc N (after every check, so that bad arguments fail once, here): the same command as N
  // ranks, each sampling its share of the images; rank 0 writes the outputs.
  if (const auto rc = launch_if_requested(par, "sample")) return *rc;
  join_group(group, par);
  const int rank = group.info.rank, world = group.info.world_size;
  if (world > 1 && s.batch_size == 0) {
    // One batch per rank; recorded, so that one process with the record makes the same bytes.
    s.batch_size = (s.num + world - 1) / world;
  }
  const int64_t chunk = s.batch_size > 0 ? s.batch_size : s.num;

  diffuse::Denoiser denoiser(model.network, model.denoiser_options());
  diffuse::SampleOptions so;
  so.num_steps = s.steps;
  so.spacing = spacing;
  so.corrections = corrections;
  if (guided) so.guidance = diffuse::make_guidance("cfg", {{"scale", diffuse::detail::format_double(s.cfg)}});
  const diffuse::TimeGrid grid = diffuse::make_grid(*schedule, so);

  spdlog::info("{} model {} ({} classes, {}, {} schedule) | {} {} steps{}{} | {} images, seed {} | {} on {}",
               model.format, model.source == "default" ? diffuse::default_model_path() : model.source,
               card.num_classes, card.prediction_type, schedule->name(), s.sampler, s.steps,
               spacing ? " (" + spacing->name() + ")" : std::string(),
               guided ? ", cfg " + diffuse::detail::format_double(s.cfg) : std::string(), s.num, s.seed,
               dtype_name(dtype), device.str());
  spdlog::debug("sampler {} | spacing {} | grid t {} .. {}", canonical_spec(*sampler),
                spacing ? canonical_spec(*spacing) : std::string("default"), grid.front().t, grid.back().t);

  std::vector<int64_t> shape = {0};
  shape.insert(shape.end(), card.sample_shape.begin(), card.sample_shape.end());
  const auto topt = at::TensorOptions().dtype(dtype).device(device);
  const auto mine = diffuse::shard_items(s.num, chunk, rank, world);
  Progress bar("sampling", (mine.second - mine.first + chunk - 1) / chunk * s.steps);
  int64_t done_steps = 0;
  // Sample i uses seed + i, whatever the chunking; with several ranks each samples a block of the
  // chunks one process would use (so the images are bit-identical) and rank 0 gathers them.
  const auto make_chunk = [&](int64_t start, int64_t m) {
    at::NoGradGuard no_grad;
    shape[0] = m;
    diffuse::SampleOptions co = so;
    co.seed = s.seed + static_cast<uint64_t>(start);
    if (card.num_classes > 0) {
      co.cond.value = at::tensor(std::vector<int64_t>(classes.begin() + start, classes.begin() + start + m),
                                 at::TensorOptions(at::kLong))
                          .to(device);
      if (guided) co.uncond.value = at::full({m}, card.num_classes, at::TensorOptions(at::kLong).device(device));
      if (embed_labels) {
        diffuse::DiT& dit = *model.dit;
        co.cond.value = dit->label_embedding(co.cond.value, m, device);
        if (guided) co.uncond.value = dit->label_embedding(co.uncond.value, m, device);
      }
    }
    co.on_step = [&](const diffuse::StepInfo&) { bar.update(++done_steps); };
    at::Tensor noise = diffuse::randn(shape, co.seed, topt);
    return diffuse::sample(*sampler, denoiser, *schedule, noise, co).cpu();
  };
  const std::vector<int64_t> item_shape(card.sample_shape.begin(), card.sample_shape.end());
  at::Tensor images =
      diffuse::sample_sharded(s.num, chunk, rank, world, item_shape, at::kFloat, make_chunk, group.all_gather());
  bar.finish();
  if (rank != 0) return kExitOk;  // rank 0 writes the outputs
  require(at::isfinite(images).all().item<bool>(), "sampling produced NaN/Inf values");

  // The record: settings (regenerable) + what they resolved to (for reading).
  SampleSettings canonical = s;
  json record;
  record["settings"] = to_json(canonical);
  json resolved;
  resolved["diffuse_version"] = DIFFUSE_VERSION_STRING;
  resolved["model_format"] = model.format;
  resolved["model_checksum"] = file_checksum(model.source == "default" ? diffuse::default_model_path() : model.source);
  resolved["model_card"] = diffuse::model_card_text(card);
  resolved["sampler"] = canonical_spec(*sampler);
  resolved["spacing"] = spacing ? canonical_spec(*spacing) : std::string("default");
  std::vector<double> times;
  for (const auto& p : grid) times.push_back(p.t);
  resolved["grid_t"] = times;
  std::vector<std::string> corr;
  for (const auto& c : corrections) corr.push_back(canonical_spec(*c));
  resolved["corrections"] = corr;
  resolved["guidance"] = guided ? canonical_spec(*so.guidance) : std::string("none");
  resolved["class_ids"] = classes;
  record["resolved"] = resolved;
  const std::string record_text = record.dump(2) + "\n";

  ensure_parent(o.out);
  diffuse::save_png(o.out, diffuse::make_image_grid(images.clamp(-1, 1), nrow), {{"diffuse", record.dump()}});
  const std::string record_path = o.record.empty() ? default_record_path(o.out) : o.record;
  ensure_parent(record_path);
  diffuse::write_text_file_atomic(record_path, record_text);
  if (!o.save_each.empty()) {
    std::error_code ec;
    fs::create_directories(o.save_each, ec);
    require(!ec, "cannot create --save-each folder '" + o.save_each + "': " + ec.message());
    for (int64_t i = 0; i < images.size(0); ++i) {
      char name[64];
      std::snprintf(name, sizeof(name), "%06lld.png", static_cast<long long>(i));
      diffuse::save_png((fs::path(o.save_each) / name).string(), images[i].clamp(-1, 1),
                        {{"diffuse", record.dump()}, {"diffuse_index", std::to_string(i)}});
    }
  }
  if (!o.save_tensor.empty()) {
    ensure_parent(o.save_tensor);
    const std::string& p = o.save_tensor;
    if (p.size() > 4 && p.compare(p.size() - 4, 4, ".npy") == 0) {
      save_npy(p, images);
    } else {
      diffuse::write_file_atomic(p, [&](std::ostream& os) { torch::save(images, os); });
    }
  }
  spdlog::info("wrote {} ({} images, {} per row) and {}{}{}", o.out, s.num, nrow, record_path,
               o.save_each.empty() ? "" : ", " + o.save_each + "/", o.save_tensor.empty() ? "" : ", " + o.save_tensor);
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
                 "Model: 'default' (the shipped Fashion-MNIST DiT), a diffuse model file, a training checkpoint, a "
                 "TorchScript module or .safetensors weights")
      ->capture_default_str();
  app.add_option("--model-card", s->model_card,
                 "Card for a model file without one (TorchScript, safetensors): "
                 "\"sample_shape=1x28x28,num_classes=10,schedule=discrete,prediction_type=epsilon\"");
  app.add_option("-s,--sampler", s->sampler, "Sampler NAME[:option=value,...] (see --list)")->capture_default_str();
  app.add_option("--schedule", s->schedule,
                 "Time spacing NAME[:option=value,...] (karras, ays, trailing, ...) or file:PATH; default: the "
                 "model's");
  app.add_option("--steps", s->steps, "Solver steps")->capture_default_str();
  app.add_option("--cfg", s->cfg, "Classifier-free guidance scale (1 = off; conditional models)")
      ->capture_default_str();
  app.add_option("--class", s->classes, "Class ids or names, comma-separated (default: every class in turn)");
  app.add_option("-c,--correction", s->corrections, "Correction NAME[:option=value,...]; repeat for several");
  app.add_option("--seed", s->seed, "Seed; image i uses seed + i")->capture_default_str();
  app.add_option("-n,--num", s->num, "Number of images")->capture_default_str();
  app.add_option("--batch-size", s->batch_size, "Images per network batch (0 = all at once)")->capture_default_str();
  app.add_option("--device", s->device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", s->dtype, "float32, float64, float16, bfloat16")->capture_default_str();
  app.add_option("--nrow", s->nrow, "Images per grid row (0 = number of classes, or 8)")->capture_default_str();
  app.add_option("-o,--out", o->out, "PNG grid to write (the settings go into its tEXt chunk \"diffuse\")")
      ->capture_default_str();
  app.add_option("--record", o->record, "Settings record JSON (default: the --out path with .json)");
  app.add_option("--save-each", o->save_each, "Also write each image as DIR/000000.png, ...");
  app.add_option("--save-tensor", o->save_tensor, "Also write the images as a tensor: .npy or .pt (torch::save)");
  app.add_option("--from-record", o->from_record,
                 "Take the settings from a record (.json or a PNG written by diffuse sample); options given "
                 "explicitly override it");
  app.add_flag("--list", o->list, "List the samplers, schedules, corrections and guidance, then exit");
  auto par = std::make_shared<ParallelArgs>();
  add_parallel_options(app, *par);
  return [s, o, par, &app] { return run_sample(*s, *o, *par, app); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(sample, "sample", "Generate images with any sampler, schedule, guidance and corrections",
                    setup_sample);

}  // namespace diffuse::cli
