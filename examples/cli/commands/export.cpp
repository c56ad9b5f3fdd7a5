// SPDX-License-Identifier: Apache-2.0
// diffuse export: rewrites any model diffuse can load (a training checkpoint's EMA weights, a model
// file) as a self-describing diffuse model file or as safetensors (reference-DiT names, the card in
// the metadata), optionally with a new description and class names.
#include "cli.h"

#include <spdlog/spdlog.h>

#include <sstream>

#include <diffuse/training/model_file.h>
#include <diffuse/training/safetensors.h>

namespace diffuse::cli {
namespace {

struct ExportArgs {
  std::string model;
  std::string model_card;
  std::string out;
  std::string description;
  std::string class_names;
  bool force = false;
};

int run_export(const ExportArgs& a) {
  require(!a.out.empty(), "--out is required");
  std::error_code ec;
  require(a.force || !std::filesystem::exists(a.out, ec),
          "'" + a.out + "' exists; pass --force to replace it");
  diffuse::LoadedModel m =
      load_cli_model(a.model, a.model_card, c10::Device(c10::kCPU), c10::kFloat);
  require(m.dit.has_value(), "export writes DiT models only; '" + a.model + "' is " + m.format);
  diffuse::ModelCard card = m.card;
  if (!a.description.empty()) card.description = a.description;
  if (!a.class_names.empty()) {
    card.class_names.clear();
    std::stringstream ss(a.class_names);
    std::string n;
    while (std::getline(ss, n, ';')) card.class_names.push_back(trim(n));
    require(static_cast<int64_t>(card.class_names.size()) == card.num_classes,
            "--class-names lists " + std::to_string(card.class_names.size()) + " names for " +
                std::to_string(card.num_classes) + " classes");
  }
  const std::string ext = ".safetensors";
  if (a.out.size() > ext.size() && a.out.compare(a.out.size() - ext.size(), ext.size(), ext) == 0) {
    diffuse::save_model_safetensors(a.out, *m.dit, card);  // reference-DiT names + card metadata
  } else {
    diffuse::save_model(a.out, *m.dit, card);
  }
  spdlog::info("wrote {} ({} from {})", a.out, m.format, m.source);
  return kExitOk;
}

std::function<int()> setup_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  app.footer(R"(Examples:
  diffuse export --model run/checkpoints/ckpt_00031106.pt --out fashion.pt --description "tiny DiT, FD 33.7"
  diffuse export --model fashion.pt --out copy.pt --force
  diffuse export --model default --out fashion.safetensors      # reference-DiT tensor names + card metadata)");
  app.add_option("-m,--model", a->model, "Model to read (see `diffuse sample --help`)")->required();
  app.add_option("--model-card", a->model_card, "Card for a file without one");
  app.add_option(
         "-o,--out", a->out,
         "Model file to write (atomically): .safetensors, or a diffuse model file otherwise")
      ->required();
  app.add_option("--description", a->description, "New description for the card");
  app.add_option("--class-names", a->class_names, "Class names separated by ';'");
  app.add_flag("--force", a->force, "Replace an existing --out file");
  return [a] { return run_export(*a); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(export_model, "export",
                    "Write a model (e.g. a checkpoint's EMA weights) as a diffuse model file",
                    setup_export);

}  // namespace diffuse::cli
