// SPDX-License-Identifier: Apache-2.0
// The trainer's checkpoints (declared in <diffuse/training/trainer.h>): the resume fingerprint,
// writing and reading the full training state, initialising from another run, and resuming from
// the newest intact checkpoint (corrupt ones are set aside).
#include <diffuse/training/trainer.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <diffuse/config.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/checkpoint.h>
#include <diffuse/training/fault_injection.h>

#include "trainer_state.h"

namespace diffuse {

namespace {

constexpr int64_t kFormat = 1;

/// key=value lines -> map (fingerprints are stored as text in checkpoints).
std::map<std::string, std::string> parse_fingerprint(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

/// Loads `path` into `ar` and checks that it is a trainer checkpoint of this format.
/// Throws CorruptCheckpointError.
void open_checkpoint(torch::serialize::InputArchive& ar, const std::string& path) {
  try {
    ar.load_from(path);
  } catch (const std::exception& ex) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    throw CorruptCheckpointError(
        detail::cat("cannot read checkpoint '", path, "' (",
                    ec ? std::string("unreadable") : detail::cat(size, " bytes"),
                    "; truncated or damaged?): ", detail::exception_first_line(ex)));
  }
  c10::IValue v;
  if (!ar.try_read("format", v) || !v.isInt()) {
    throw CorruptCheckpointError(detail::cat("'", path, "' is not a diffuse trainer checkpoint"));
  }
  if (v.toInt() != kFormat) {
    throw CorruptCheckpointError(detail::cat("checkpoint '", path, "' has format ", v.toInt(),
                                             ", this build reads ", kFormat));
  }
}

/// The state entries of an opened checkpoint whose fingerprint matched.
void read_checkpoint_state(detail::TrainerState& s, torch::serialize::InputArchive& ar) {
  c10::IValue v;
  torch::serialize::InputArchive m, e, o;
  ar.read("model", m);
  ar.read("ema", e);
  ar.read("optimizer", o);
  s.model->load(m);
  s.ema->load(e);
  s.optimizer->load(o);
  ar.read("step", v);
  s.step = v.toInt();
  ar.read("epoch", v);
  s.epoch = v.toInt();
  ar.read("position", v);
  s.position = v.toInt();
  s.permutation = Tensor();
  // read() into a defined tensor would set_() it in place: use a fresh tensor for each.
  Tensor rng_objective, rng_labels, log_window;
  ar.read("rng_objective", rng_objective);
  set_generator_state(s.objective_gen, rng_objective);
  ar.read("rng_labels", rng_labels);
  set_generator_state(s.label_gen, rng_labels);
  ar.read("log_window", log_window);
  ar.read("log_terms", v);
  s.log.set_window(log_window, v.toStringRef());
  s.precision.load(ar);
}

}  // namespace

namespace detail {

std::string make_fingerprint(const TrainerState& s) {
  std::ostringstream os;
  const auto& o = s.options;
  os << "batch_size=" << o.batch_size() << "\n"
     << "grad_accum=" << o.grad_accum() << "\n"
     << "lr=" << format_double(o.lr()) << "\n"
     << "betas=" << format_double(std::get<0>(o.betas())) << ";"
     << format_double(std::get<1>(o.betas())) << "\n"
     << "adam_eps=" << format_double(o.adam_eps()) << "\n"
     << "weight_decay=" << format_double(o.weight_decay()) << "\n"
     << "warmup_steps=" << o.warmup_steps() << "\n"
     << "grad_clip=" << format_double(o.grad_clip()) << "\n"
     << "ema_decay=" << format_double(o.ema_decay()) << (o.ema_warmup() ? " (warm-up)" : "") << "\n"
     << "label_dropout=" << format_double(o.label_dropout()) << "\n"
     << "seed=" << o.seed() << "\n"
     << "objective=" << s.objective->name() << ":" << format_config(s.objective->to_config())
     << "\n"
     << "schedule=" << s.schedule->name() << ":" << format_config(s.schedule->to_config()) << "\n"
     << "dataset=" << s.data.name << " " << s.data.data.sizes() << " classes " << s.data.num_classes
     << "\n";
  int64_t count = 0;
  std::ostringstream shapes;
  for (const auto& item : s.model->named_parameters(true)) {
    shapes << item.key() << item.value().sizes() << ";";
    count += item.value().numel();
  }
  for (const auto& item : s.model->named_buffers(true))
    shapes << item.key() << item.value().sizes() << ";";
  os << "model=" << s.model->name() << " " << count << " parameters\n"
     << "model_config=" << o.model_config() << "\n"
     << "model_shapes=" << shapes.str() << "\n";
  if (o.autocast() != Autocast::off)
    os << "autocast=" << to_string(o.autocast()) << "\n";  // absent: old checkpoints match
  return os.str();
}

}  // namespace detail

std::string TrainerBase::save_checkpoint() {
  auto& s = *s_;
  check(!s.checkpoint_dir.empty(), "Trainer: no checkpoint_dir (set checkpoint_dir or output_dir)");
  create_directories_or_throw(s.checkpoint_dir);
  const std::string path =
      (std::filesystem::path(s.checkpoint_dir) / checkpoint_filename(s.step)).string();
  save_checkpoint(path);
  fault_point("after_checkpoint");
  prune_checkpoints(s.checkpoint_dir, s.options.keep_checkpoints());
  if (s.callbacks.on_checkpoint) s.callbacks.on_checkpoint(path, s.step);
  return path;
}

void TrainerBase::save_checkpoint(const std::string& path) {
  auto& s = *s_;
  torch::serialize::OutputArchive ar;
  torch::serialize::OutputArchive m, e, o;
  s.model->save(m);
  s.ema->save(e);
  s.optimizer->save(o);
  ar.write("model", m);
  ar.write("ema", e);
  ar.write("optimizer", o);
  ar.write("format", c10::IValue(static_cast<int64_t>(kFormat)));
  ar.write("step", c10::IValue(s.step));
  ar.write("epoch", c10::IValue(s.epoch));
  ar.write("position", c10::IValue(s.position));
  ar.write("fingerprint", c10::IValue(s.fingerprint));
  ar.write("rng_objective", generator_state(s.objective_gen));
  ar.write("rng_labels", generator_state(s.label_gen));
  ar.write("log_window", s.log.window_tensor());
  ar.write("log_terms", c10::IValue(s.log.window_names()));
  s.precision.save(ar);
  write_file_atomic(path, [&](std::ostream& os) { ar.save_to(os); });
}

void TrainerBase::load_checkpoint(const std::string& path) {
  auto& s = *s_;
  torch::serialize::InputArchive ar;
  open_checkpoint(ar, path);
  c10::IValue v;
  if (!ar.try_read("fingerprint", v) || !v.isString()) {
    throw CorruptCheckpointError(
        detail::cat("checkpoint '", path, "' has no fingerprint (damaged?)"));
  }
  const std::string theirs = v.toStringRef();
  if (theirs != s.fingerprint) {
    const auto a = parse_fingerprint(theirs), b = parse_fingerprint(s.fingerprint);
    std::string diff;
    for (const auto& kv : b) {
      auto it = a.find(kv.first);
      const std::string old = it == a.end() ? "<missing>" : it->second;
      if (old != kv.second)
        diff += "\n  " + kv.first + ": checkpoint " + old + ", this run " + kv.second;
    }
    for (const auto& kv : a)
      if (!b.count(kv.first))
        diff += "\n  " + kv.first + ": checkpoint " + kv.second + ", this run <missing>";
    throw ConfigError(detail::cat("cannot resume from '", path,
                                  "': it was written for a different setup:", diff));
  }
  try {
    read_checkpoint_state(s, ar);
  } catch (const std::exception& ex) {
    throw CorruptCheckpointError(
        detail::cat("checkpoint '", path, "' is damaged: ", detail::exception_first_line(ex)));
  }
  s.resumed = true;
}

void TrainerBase::initialize_from(const std::string& path) {
  auto& s = *s_;
  torch::serialize::InputArchive ar;
  open_checkpoint(ar, path);
  c10::IValue v;
  ar.read("fingerprint", v);
  const auto theirs = parse_fingerprint(v.toStringRef());
  const auto ours = parse_fingerprint(s.fingerprint);
  const auto shapes = [](const std::map<std::string, std::string>& f) {
    auto it = f.find("model_shapes");
    return it == f.end() ? std::string() : it->second;
  };
  check(shapes(theirs) == shapes(ours), "cannot initialise from '", path,
        "': its model has different parameter names or shapes (checkpoint model: ",
        theirs.count("model") ? theirs.at("model") : "?", ", this run: ", ours.at("model"), ")");
  torch::serialize::InputArchive m, e;
  ar.read("model", m);
  ar.read("ema", e);
  s.model->load(m);
  s.ema->load(e);
}

std::string TrainerBase::resume_latest() {
  auto& s = *s_;
  const bool rank0 = s.dp.rank() == 0;
  if (s.checkpoint_dir.empty()) return "";
  if (rank0) remove_stale_temporaries(s.checkpoint_dir);
  const auto all = list_checkpoints(s.checkpoint_dir);
  if (all.empty()) return "";
  std::vector<std::pair<std::string, std::string>> skipped;  // (path, reason), newest first
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      load_checkpoint(it->second);
    } catch (const CorruptCheckpointError& e) {
      skipped.emplace_back(it->second, detail::exception_first_line(e));
      continue;
    }
    for (const auto& [path, why] : skipped) {
      const std::string renamed = rank0 ? set_aside(path) : std::string();
      if (rank0 && s.callbacks.on_checkpoint_skipped)
        s.callbacks.on_checkpoint_skipped(path, why, renamed);
    }
    // A run killed between writing a checkpoint and pruning the old ones.
    if (rank0) prune_checkpoints(s.checkpoint_dir, s.options.keep_checkpoints());
    return it->second;
  }
  std::string list;
  for (const auto& [path, why] : skipped) list += "\n  " + why;
  throw CorruptCheckpointError(detail::cat("none of the ", skipped.size(), " checkpoint(s) in '",
                                           s.checkpoint_dir, "' can be read:", list));
}

std::string TrainerBase::set_aside(const std::string& path) {
  for (int n = 0; n < 1000; ++n) {
    const std::string to = path + ".corrupt" + (n == 0 ? std::string() : "." + std::to_string(n));
    std::error_code ec;
    if (std::filesystem::exists(to, ec)) continue;
    std::filesystem::rename(path, to, ec);
    return ec ? std::string() : to;
  }
  return "";
}

}  // namespace diffuse
