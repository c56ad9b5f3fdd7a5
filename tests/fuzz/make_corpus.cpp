// SPDX-License-Identifier: Apache-2.0
// Writes the seed files of the fuzz corpus that need the library to make: a tiny DiT as our model
// file, as a checkpoint-like archive (fingerprint + EMA weights), as safetensors, and the card and
// fingerprint texts. Usage: fuzz_make_corpus <corpus dir> (writes into <dir>/model_file/ and
// <dir>/safetensors/). The other seeds (idx, PNG, spec strings) are plain files in the repository.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <diffuse/training/safetensors.h>

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace diffuse;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir / "model_file");
  std::filesystem::create_directories(dir / "safetensors");
  at::manual_seed(0);
  DiT dit(DiTOptions(4, 1).patch_size(2).hidden_size(8).depth(1).num_heads(2).num_classes(2));
  ModelCard card;
  card.schedule = "discrete:num_train_timesteps=10";
  card.class_names = {"a", "b"};
  card.description = "fuzz seed";
  save_model((dir / "model_file" / "tiny_dit.pt").string(), dit, card);
  card.architecture = "DiT";
  card.model = to_config(dit->options);
  card.sample_shape = {1, 4, 4};
  card.num_classes = 2;
  write_text((dir / "model_file" / "card.txt").string(), model_card_text(card));
  write_text((dir / "model_file" / "card_one_line.txt").string(),
             "sample_shape=1x4x4,num_classes=2,prediction_type=v,schedule=discrete:beta_end=0.02");

  const std::string fingerprint =
      "objective=denoising:prediction_type=epsilon\nschedule=discrete:num_train_timesteps=10\n"
      "dataset=fuzz [4, 1, 4, 4] classes 2\nmodel_config=DiT " +
      format_config(to_config(dit->options)) + "\n";
  write_text((dir / "model_file" / "fingerprint.txt").string(), fingerprint);
  {
    torch::serialize::OutputArchive weights, ar;
    dit->save(weights);
    ar.write("fingerprint", c10::IValue(fingerprint));
    ar.write("ema", weights);
    ar.save_to((dir / "model_file" / "checkpoint.pt").string());
  }

  save_model_safetensors((dir / "safetensors" / "tiny_dit.safetensors").string(), dit, card);
  write_safetensors((dir / "safetensors" / "dtypes.safetensors").string(),
                    {{"f64", at::arange(3, at::kDouble)},
                     {"f16", at::ones({2, 2}, at::kHalf)},
                     {"i8", at::arange(4, at::kChar)},
                     {"flag", at::ones({2}, at::kBool)},
                     {"empty", at::empty({0, 3}, at::kFloat)}},
                    {{"note", "seed"}});
  write_safetensors((dir / "safetensors" / "nothing.safetensors").string(), {});
  return 0;
}
