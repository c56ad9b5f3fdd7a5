// SPDX-License-Identifier: Apache-2.0
// Declared in <diffuse/training/model_file.h>.
#include <diffuse/training/model_file.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <diffuse/config.h>
#include <diffuse/denoiser.h>
#include <diffuse/objective.h>
#include <diffuse/sample.h>
#include <diffuse/schedule.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/safetensors.h>
#include <diffuse/training/torch_checkpoint.h>
#include <diffuse/training/torchscript.h>

namespace diffuse {

namespace detail {

/// Registered loaders of other formats.
struct ModelLoaderRegistry {
  std::mutex mu;
  std::vector<std::pair<std::string, ModelLoader>> loaders;
  /// The built-in loaders of other formats come first (safetensors, TorchScript: formerly
  /// registered by their headers when included, the umbrella in this order).
  ModelLoaderRegistry() {
    loaders.emplace_back("safetensors", load_safetensors_model);
    loaders.emplace_back("TorchScript", load_torchscript_model);
  }
  static ModelLoaderRegistry& get() {
    static ModelLoaderRegistry r;
    return r;
  }
};

}  // namespace detail

namespace detail {

std::vector<std::string> split_text(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream is(s);
  while (std::getline(is, item, sep)) out.push_back(item);
  return out;
}

std::string first_line(const std::string& text) {
  const auto nl = text.find('\n');
  return trim(nl == std::string::npos ? text : text.substr(0, nl));
}

std::vector<int64_t> parse_shape_text(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  for (const std::string& part : split_text(text, 'x')) {
    const std::string p = trim(part);
    char* end = nullptr;
    errno = 0;
    const long long v = p.empty() ? -1 : std::strtoll(p.c_str(), &end, 10);
    check(!p.empty() && end && *end == '\0' && errno == 0 && v >= 1 && v <= (1LL << 24), what,
          ": sample_shape must be sizes >= 1 joined by 'x' (e.g. 1x28x28), got '", text, "'");
    out.push_back(v);
  }
  check(!out.empty(), what, ": sample_shape is empty");
  return out;
}

std::string card_shape_text(const std::vector<int64_t>& shape) {
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? "x" : "") + std::to_string(shape[i]);
  return out;
}

Parameterization parse_prediction_type(const std::string& name, const std::string& what) {
  return parse_enum(name, parameterization_names(), what + ": prediction_type");
}

std::shared_ptr<NoiseSchedule> schedule_from_card(const std::string& spec,
                                                  const std::string& what) {
  const auto colon = spec.find(':');
  std::string name = trim(spec.substr(0, colon));
  Config opts;
  if (colon != std::string::npos) {
    std::string rest = spec.substr(colon + 1);
    for (char& ch : rest)
      if (ch == ';') ch = ',';
    opts = parse_config(rest);
  }
  try {
    return std::shared_ptr<NoiseSchedule>(diffuse::make_schedule(name, opts));
  } catch (const Error& e) {
    throw Error(cat(what, ": schedule '", spec, "': ", e.what()));
  }
}

std::string schedule_card_spec(const NoiseSchedule& s) {
  std::string opts = format_config(s.to_config());
  for (char& ch : opts)
    if (ch == ',') ch = ';';
  return opts.empty() ? s.name() : s.name() + ":" + opts;
}

double dit_min_weights(const DiTOptions& o) {
  const double d = static_cast<double>(o.hidden_size()), p = static_cast<double>(o.patch_size());
  const double side = static_cast<double>(o.input_size()) / p;
  return static_cast<double>(o.depth()) * 10.0 * d * d + side * side * d +
         (o.num_classes() > 0 ? (static_cast<double>(o.num_classes()) + 1.0) * d : 0.0) +
         static_cast<double>(o.in_channels()) * d * p * p;
}

void check_dit_fits_file(const DiTOptions& o, uint64_t file_bytes, const std::string& what) {
  const double need = 2.0 * dit_min_weights(o);
  check(need <= static_cast<double>(file_bytes), what, ": the card's DiT (input_size ",
        o.input_size(), ", patch_size ", o.patch_size(), ", hidden_size ", o.hidden_size(),
        ", depth ", o.depth(), ") needs at least ", format_double(need),
        " bytes of weights, more than the file's ", file_bytes,
        " bytes: the card does not describe this file");
}

DiT dit_from_card(const ModelCard& card, const std::string& what, uint64_t file_bytes) {
  check(card.architecture == "DiT", what, ": architecture '", card.architecture, "' is not DiT");
  DiTOptions o(1, 1);
  try {
    o = dit_options_from_config(card.model);
  } catch (const Error& e) {
    throw Error(cat(what, ": bad DiT options in the model card: ", e.what()));
  }
  check(card.sample_shape.size() == 3 && card.sample_shape[0] == o.in_channels() &&
            card.sample_shape[1] == o.input_size() && card.sample_shape[2] == o.input_size(),
        what, ": sample_shape ", card_shape_text(card.sample_shape), " does not match the DiT (",
        o.in_channels(), "x", o.input_size(), "x", o.input_size(), ")");
  check(card.num_classes == o.num_classes(), what, ": num_classes ", card.num_classes,
        " does not match the DiT's ", o.num_classes());
  if (file_bytes > 0) check_dit_fits_file(o, file_bytes, what);
  return unloaded_dit(o);  // every caller loads all of its weights (strictly)
}

void load_dit_checked(DiT& model, torch::serialize::InputArchive& ar, const std::string& what) {
  const DiT reference = unloaded_dit(model->options);  // for the shapes
  try {
    model->load(ar);
  } catch (const c10::Error& e) {
    throw Error(
        cat(what, ": weights do not fit the card's DiT: ", first_line(e.what_without_backtrace())));
  }
  std::vector<std::string> bad;
  const auto want = reference->named_parameters(true);
  for (const auto& p : model->named_parameters(true)) {
    const at::Tensor* w = want.find(p.key());
    if (w && w->sizes() != p.value().sizes())
      bad.push_back(p.key() + " " + c10::str(p.value().sizes()) +
                    " (card: " + c10::str(w->sizes()) + ")");
  }
  const auto want_b = reference->named_buffers(true);
  for (const auto& b : model->named_buffers(true)) {
    const at::Tensor* w = want_b.find(b.key());
    if (w && w->sizes() != b.value().sizes())
      bad.push_back(b.key() + " " + c10::str(b.value().sizes()) +
                    " (card: " + c10::str(w->sizes()) + ")");
  }
  if (!bad.empty()) {
    const size_t n = bad.size();
    if (n > 3) bad.resize(3);
    throw Error(cat(what, ": ", n, " weight(s) do not have the shape the card's DiT needs: ",
                    join(bad, "; "), n > 3 ? "; ..." : ""));
  }
}

/// Our DiT as the card's network: learned-variance channels kept when the card says so, time
/// reversed for SiT cards; blocks step-cached with a cache.
Network dit_network(const DiT& model, const ModelCard& card, std::shared_ptr<DiTStepCache> cache) {
  Network net = cache ? as_network(model, card.learned_variance, std::move(cache))
                      : as_network(model, card.learned_variance);
  if (card.reversed_time) {
    // SiT: time 0 = noise, 1 = data, velocity d x / d t along it = -(d x / d sigma).
    net = [net](const Tensor& x, const Tensor& t, const Conditioning& c) {
      return net(x, 1.0 - t, c).neg();
    };
  }
  return net;
}

/// A float32 network that also takes float16 inputs (and then returns float16).
Network accept_half(Network inner) {
  return [inner](const at::Tensor& x, const at::Tensor& t, const Conditioning& c) {
    if (x.scalar_type() != at::kHalf) return inner(x, t, c);
    return inner(x.to(at::kFloat), t.to(at::kFloat), c).to(at::kHalf);
  };
}

LoadedModel finish_dit(DiT model, ModelCard card, const LoadModelOptions& options,
                       std::string source, std::string format) {
  model->to(options.device, options.dtype);
  model->eval();
  LoadedModel m;
  m.card = std::move(card);
  m.dit = model;
  m.dtype = options.dtype;
  check(!m.card.learned_variance || model->options.learn_sigma(), source,
        ": the card says learned_variance=true but the DiT has no learn_sigma head");
  m.network = dit_network(model, m.card, nullptr);
  m.source = std::move(source);
  m.format = std::move(format);
  return m;
}

ModelCard card_from_fingerprint(const std::string& fingerprint, const std::string& what) {
  std::map<std::string, std::string> f;
  for (const std::string& line : split_text(fingerprint, '\n')) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) f[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto need = [&](const std::string& key) -> const std::string& {
    auto it = f.find(key);
    check(it != f.end() && !it->second.empty(), what, ": the checkpoint's fingerprint has no ",
          key);
    return it->second;
  };
  ModelCard card;
  const std::string& model_config = need("model_config");
  check(model_config.rfind("DiT ", 0) == 0, what,
        ": the checkpoint's model is not a DiT (model_config '", model_config,
        "'); use the program that trained it");
  card.architecture = "DiT";
  card.model = parse_config(model_config.substr(4));
  // objective=<name>:<config>  ->  its prediction type
  const std::string& objective = need("objective");
  std::unique_ptr<Objective> obj = objective_from_spec(objective);
  card.prediction_type = to_string(obj->prediction_type());
  // schedule=<name>:<config>
  const std::string& schedule = need("schedule");
  const auto colon = schedule.find(':');
  std::unique_ptr<NoiseSchedule> s =
      colon == std::string::npos ? diffuse::make_schedule(schedule)
                                 : diffuse::make_schedule(schedule.substr(0, colon),
                                                          parse_config(schedule.substr(colon + 1)));
  card.schedule = schedule_card_spec(*s);
  const DiTOptions o = dit_options_from_config(card.model);
  card.sample_shape = {o.in_channels(), o.input_size(), o.input_size()};
  card.num_classes = o.num_classes();
  card.clip_sample = true;
  card.description = "EMA weights of a training checkpoint (" + need("dataset") + ")";
  return card;
}

bool archive_has(torch::serialize::InputArchive& ar, const std::string& key) {
  c10::IValue v;
  return ar.try_read(key, v);
}

std::vector<std::string> card_items(const std::string& text) {
  std::vector<std::string> items = split_text(text, '\n');
  if (items.size() <= 1 && text.find('\n') == std::string::npos) items = split_text(text, ',');
  return items;
}

std::string override_card_text(const std::string& base, const std::string& overrides) {
  std::vector<std::pair<std::string, std::string>> merged;
  for (const std::string& text : {base, overrides}) {
    for (const std::string& raw : card_items(text)) {
      const std::string item = trim(raw);
      const auto eq = item.find('=');
      if (item.empty() || item[0] == '#' || eq == std::string::npos) continue;
      const std::string key = trim(item.substr(0, eq));
      auto it = std::find_if(merged.begin(), merged.end(),
                             [&](const auto& kv) { return kv.first == key; });
      if (it == merged.end()) {
        merged.emplace_back(key, item);
      } else {
        it->second = item;
      }
    }
  }
  std::string out;
  for (const auto& kv : merged) out += kv.second + "\n";
  return out;
}

}  // namespace detail

ModelCard parse_model_card(const std::string& text, const std::string& origin) {
  const std::string what = origin.empty() ? std::string("model card") : origin;
  const std::vector<std::string> items = detail::card_items(text);
  ModelCard card;
  bool have_shape = false;
  std::map<std::string, bool> seen;
  for (const std::string& raw : items) {
    const std::string item = detail::trim(raw);
    if (item.empty() || item[0] == '#') continue;
    const auto eq = item.find('=');
    check(eq != std::string::npos && eq > 0, what, ": card line '", item, "' is not key=value");
    const std::string key = detail::trim(item.substr(0, eq));
    const std::string value = detail::trim(item.substr(eq + 1));
    check(!seen[key], what, ": card key '", key, "' given twice");
    seen[key] = true;
    // The value of a true/false key, and of a count in [0, max].
    auto bool_value = [&] {
      check(value == "true" || value == "false", what, ": ", key, " must be true or false, got '",
            value, "'");
      return value == "true";
    };
    auto count_value = [&](long long max) {
      char* end = nullptr;
      const long long n = std::strtoll(value.c_str(), &end, 10);
      check(!value.empty() && *end == '\0' && n >= 0 && n <= max, what, ": ", key,
            " must be an integer >= 0, got '", value, "'");
      return static_cast<int64_t>(n);
    };
    if (key == "architecture") {
      card.architecture = value;
    } else if (key == "model") {
      card.model = parse_config(value);
    } else if (key == "schedule") {
      card.schedule = value;
    } else if (key == "prediction_type") {
      (void)detail::parse_prediction_type(value, what);
      card.prediction_type = value;
    } else if (key == "sample_shape") {
      card.sample_shape = detail::parse_shape_text(value, what);
      have_shape = true;
    } else if (key == "num_classes") {
      card.num_classes = count_value((1LL << 31) - 1);
    } else if (key == "class_names") {
      card.class_names = detail::split_text(value, ';');
      for (auto& n : card.class_names) n = detail::trim(n);
    } else if (key == "clip_sample") {
      card.clip_sample = bool_value();
    } else if (key == "edm_preconditioning") {
      card.edm_preconditioning = bool_value();
    } else if (key == "sigma_data") {
      char* end = nullptr;
      const double v = std::strtod(value.c_str(), &end);
      check(!value.empty() && *end == '\0' && std::isfinite(v) && v > 0, what,
            ": sigma_data must be a finite number > 0, got '", value, "'");
      card.sigma_data = v;
    } else if (key == "reversed_time") {
      card.reversed_time = bool_value();
    } else if (key == "learned_variance") {
      card.learned_variance = bool_value();
    } else if (key == "guided_channels") {
      card.guided_channels = count_value(std::numeric_limits<long long>::max());
    } else if (key == "vae") {
      card.vae = value;
    } else if (key == "description") {
      card.description = value;
    } else {
      throw Error(detail::cat(
          what, ": unknown card key '", key,
          "' (architecture, model, schedule, prediction_type, sample_shape, num_classes, "
          "class_names, clip_sample, edm_preconditioning, sigma_data, reversed_time, "
          "learned_variance, guided_channels, vae, "
          "description)"));
    }
  }
  check(have_shape, what, ": the model card has no sample_shape (e.g. sample_shape=1x28x28)");
  check(
      card.class_names.empty() || static_cast<int64_t>(card.class_names.size()) == card.num_classes,
      what, ": class_names lists ", card.class_names.size(),
      " names for num_classes=", card.num_classes);
  (void)detail::schedule_from_card(card.schedule, what);
  check(!card.reversed_time ||
            detail::parse_prediction_type(card.prediction_type, what) == Parameterization::kFlow,
        what, ": reversed_time=true needs prediction_type=flow_prediction, got '",
        card.prediction_type, "'");
  return card;
}

std::string model_card_text(const ModelCard& c) {
  std::ostringstream os;
  os << "architecture=" << c.architecture << "\n";
  if (!c.model.empty()) os << "model=" << format_config(c.model) << "\n";
  os << "schedule=" << c.schedule << "\n"
     << "prediction_type=" << c.prediction_type << "\n"
     << "sample_shape=" << detail::card_shape_text(c.sample_shape) << "\n"
     << "num_classes=" << c.num_classes << "\n";
  if (!c.class_names.empty()) os << "class_names=" << detail::join(c.class_names, ";") << "\n";
  os << "clip_sample=" << (c.clip_sample ? "true" : "false") << "\n";
  if (c.edm_preconditioning)
    os << "edm_preconditioning=true\nsigma_data=" << format_double(c.sigma_data) << "\n";
  if (c.reversed_time) os << "reversed_time=true\n";
  if (c.learned_variance) os << "learned_variance=true\n";
  if (c.guided_channels > 0) os << "guided_channels=" << c.guided_channels << "\n";
  if (!c.vae.empty()) os << "vae=" << c.vae << "\n";
  if (!c.description.empty()) {
    std::string d = c.description;
    for (char& ch : d)
      if (ch == '\n') ch = ' ';
    os << "description=" << d << "\n";
  }
  return os.str();
}

DenoiserOptions LoadedModel::denoiser_options() const {
  DenoiserOptions o;
  o.prediction_type = detail::parse_prediction_type(card.prediction_type, source);
  o.clip_sample = card.clip_sample;
  // With clipping, steps that use eps (DDIM, DDPM) re-derive it from the clipped x0, as ADM's and
  // the DDIM paper's samplers do. diffusers' DDIMScheduler keeps the network's own eps by default
  // (use_clipped_model_output=False); with guidance pushing x0 outside [-1, 1] that mismatch
  // leaves visible noise in the images (shipped model, DDIM, 20 steps, CFG 2: FD 138.6 against
  // 58.7 at 10 steps; re-derived: see docs/cli.md).
  o.use_clipped_model_output = card.clip_sample;
  o.edm_preconditioning = card.edm_preconditioning;
  o.sigma_data = card.sigma_data;
  o.learned_variance = card.learned_variance;
  o.guided_channels = card.guided_channels;
  // A float16 / bfloat16 network gets x_t in its dtype (the sampler computes in float32).
  o.network_dtype = dtype;
  return o;
}

double LoadedModel::inference_bytes_per_sample(at::ScalarType dtype) const {
  const double elem = static_cast<double>(c10::elementSize(dtype));
  if (dit.has_value()) {
    const DiTOptions& o = (*dit)->options;
    const double side = static_cast<double>(o.input_size()) / static_cast<double>(o.patch_size());
    const double tokens = side * side, d = static_cast<double>(o.hidden_size());
    const double width =
        std::max(d, static_cast<double>(o.decoder_depth() > 0 ? o.decoder_hidden_size() : 0));
    const double heads = static_cast<double>(
        std::max(o.num_heads(), o.decoder_depth() > 0 ? o.decoder_num_heads() : 0));
    const double values =
        tokens * width * (6.0 + 2.0 * o.mlp_ratio()) + 2.0 * heads * tokens * tokens;
    return 2.0 * values * elem;
  }
  double numel = 1;
  for (int64_t s : card.sample_shape) numel *= static_cast<double>(s);
  return 1024.0 * numel * elem;
}

int64_t auto_batch_size(const LoadedModel& model, at::ScalarType dtype, int64_t num, bool guided,
                        double budget_bytes) {
  check(num >= 1, "auto_batch_size: num must be >= 1, got ", num);
  check(std::isfinite(budget_bytes) && budget_bytes > 0,
        "auto_batch_size: the memory budget must be > 0 bytes, got ", budget_bytes);
  const double per_image = model.inference_bytes_per_sample(dtype) * (guided ? 2.0 : 1.0);
  const double fit = std::floor(budget_bytes / per_image);
  return fit >= static_cast<double>(num) ? num : std::max<int64_t>(1, static_cast<int64_t>(fit));
}

std::shared_ptr<NoiseSchedule> LoadedModel::make_schedule() const {
  return detail::schedule_from_card(card.schedule, source);
}

bool register_model_loader(const std::string& name, ModelLoader loader) {
  auto& r = detail::ModelLoaderRegistry::get();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& entry : r.loaders) {
    if (entry.first == name) {
      entry.second = std::move(loader);
      return true;
    }
  }
  r.loaders.emplace_back(name, std::move(loader));
  return true;
}

void save_model(const std::string& path, DiT model, ModelCard card) {
  card.architecture = "DiT";
  card.model = to_config(model->options);
  card.sample_shape = {model->options.in_channels(), model->options.input_size(),
                       model->options.input_size()};
  card.num_classes = model->options.num_classes();
  const std::string text = model_card_text(card);
  (void)parse_model_card(text, path);  // never write a card that cannot be read back
  torch::serialize::OutputArchive weights;
  model->save(weights);
  torch::serialize::OutputArchive ar;
  ar.write("diffuse_model_format", c10::IValue(kModelFileFormat));
  ar.write("card", c10::IValue(text));
  ar.write("model", weights);
  write_file_atomic(path, [&](std::ostream& os) { ar.save_to(os); });
}

namespace detail {

bool device_computes_float16(const c10::Device& device) {
  if (!device.is_cpu()) return true;
  static const bool ok = [] {
    try {
      const at::Tensor a = at::ones({2, 2}, at::kHalf);
      (void)at::mm(a, a);
      (void)at::softmax(a, -1);
      (void)at::layer_norm(a, {2});
      (void)at::conv2d(a.view({1, 1, 2, 2}), at::ones({1, 1, 1, 1}, at::kHalf));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return ok;
}

}  // namespace detail

LoadedModel load_model(const std::string& path, const LoadModelOptions& options) {
  if (options.dtype != at::kHalf || detail::device_computes_float16(options.device))
    return detail::load_model_as(path, options);
  // float16 where LibTorch cannot compute it: float32 arithmetic; our DiT's weights are rounded to
  // float16 first, so the network is the float16 one up to the arithmetic's rounding.
  LoadModelOptions as_float = options;
  as_float.dtype = at::kFloat;
  LoadedModel m = detail::load_model_as(path, as_float);
  if (m.dit.has_value()) {
    at::NoGradGuard no_grad;
    for (auto& p : (*m.dit)->parameters()) p.copy_(p.to(at::kHalf));
    for (auto& b : (*m.dit)->buffers())
      if (b.is_floating_point()) b.copy_(b.to(at::kHalf));
    m.precision = "float16 weights, float32 arithmetic (this LibTorch has no float16 CPU kernels)";
  } else {
    m.precision = "float32 (this LibTorch has no float16 CPU kernels)";
  }
  // Callers that feed the network float16 tensors themselves get float16 back.
  m.network = detail::accept_half(m.network);
  m.half_inputs = true;
  return m;
}

Network LoadedModel::cached_network(std::shared_ptr<DiTStepCache> cache) const {
  check(dit.has_value(), "step caching needs a DiT model; ", source, " is ", format);
  check(cache != nullptr, "LoadedModel::cached_network: the cache is null");
  Network net = detail::dit_network(*dit, card, std::move(cache));
  return half_inputs ? detail::accept_half(std::move(net)) : net;
}

LoadedModel detail::load_model_as(const std::string& path, const LoadModelOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  check(!path.empty(), "model path is empty");
  check_io(fs::exists(path, ec), "model file '", path, "' does not exist");
  check_io(fs::is_regular_file(path, ec), "model file '", path, "' is not a regular file");
  check(at::isFloatingType(options.dtype), "model dtype must be a floating type, got ",
        options.dtype);
  // Our formats are zip archives written by torch::serialize; other formats go to the loaders.
  check_io(std::ifstream(path, std::ios::binary).good(), "cannot open model file '", path, "'");
  const bool is_zip = detail::starts_with_zip_magic(path);
  // A card given for one of our formats replaces only the keys it names (override_card_text);
  // the other formats' loaders read options.card as the whole card.
  const bool card_override = !options.card.empty();
  const uint64_t file_bytes = static_cast<uint64_t>(std::filesystem::file_size(path, ec));
  if (is_zip) {
    torch::serialize::InputArchive ar;
    bool readable = true;
    std::string why;
    try {
      ar.load_from(path, options.device);
    } catch (const c10::Error& e) {
      readable = false;
      why = e.what_without_backtrace();
    } catch (const std::exception& e) {
      readable = false;
      why = e.what();
    }
    if (readable && detail::archive_has(ar, "diffuse_model_format")) {
      c10::IValue v;
      ar.read("diffuse_model_format", v);
      check_io(v.isInt() && v.toInt() == kModelFileFormat, "model file '", path, "' has format ",
               v.isInt() ? std::to_string(v.toInt()) : std::string("?"),
               "; this build reads format ", kModelFileFormat);
      ar.read("card", v);
      check_io(v.isString(), "model file '", path, "': its card is not text");
      // --model-card replaces the keys it names; the file's own card gives the rest.
      ModelCard card =
          card_override
              ? parse_model_card(detail::override_card_text(v.toStringRef(), options.card),
                                 path + " with --model-card")
              : parse_model_card(v.toStringRef(), path);
      DiT model = detail::dit_from_card(card, path, file_bytes);
      torch::serialize::InputArchive weights;
      check_io(ar.try_read("model", weights), "model file '", path, "' has no weights ('model')");
      detail::load_dit_checked(model, weights, "model file '" + path + "'");
      return detail::finish_dit(model, std::move(card), options, path, "diffuse model");
    }
    if (readable && detail::archive_has(ar, "fingerprint") && detail::archive_has(ar, "ema")) {
      c10::IValue v;
      ar.read("fingerprint", v);
      check_io(v.isString(), "checkpoint '", path, "': its fingerprint is not text");
      ModelCard card = detail::card_from_fingerprint(v.toStringRef(), path);
      if (card_override)
        card = parse_model_card(detail::override_card_text(model_card_text(card), options.card),
                                path + " with --model-card");
      DiT model = detail::dit_from_card(card, path, file_bytes);
      torch::serialize::InputArchive ema;
      ar.read("ema", ema);
      detail::load_dit_checked(model, ema, "checkpoint '" + path + "'");
      return detail::finish_dit(model, std::move(card), options, path,
                                "training checkpoint (EMA weights)");
    }
    if (!readable) {
      if (auto m = detail::load_torch_save_model(path, options)) {
        m->dtype = options.dtype;
        return *m;
      }
    }
    if (!readable)
      throw IOError(detail::cat(
          "model file '", path,
          "' is corrupt or not a model (unreadable archive: ", detail::first_line(why), ")"));
  }
  std::vector<std::pair<std::string, ModelLoader>> loaders;
  {
    auto& r = detail::ModelLoaderRegistry::get();
    std::lock_guard<std::mutex> lock(r.mu);
    loaders = r.loaders;
  }
  std::vector<std::string> names;
  for (auto& [name, loader] : loaders) {
    names.push_back(name);
    if (auto m = loader(path, options)) {
      m->dtype = options.dtype;
      return *m;
    }
  }
  throw IOError(detail::cat("model file '", path, "' is not a diffuse model, a training checkpoint",
                            names.empty() ? std::string() : ", or " + detail::join(names, " / "),
                            " file (corrupt or of another format)"));
}

}  // namespace diffuse
