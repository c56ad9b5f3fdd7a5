// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: diffuse model files and training checkpoints. The input is tried as
//  - a model card (parse_model_card),
//  - a checkpoint fingerprint (the card load_model derives from a Trainer checkpoint),
//  - a checkpoint file name (parse_checkpoint_filename, which must never throw),
//  - the data.pkl of a torch.save() file (our restricted pickle machine, parse_torch_pickle; every
//    storage record it asks for is 256 bytes of zeros),
//  - with DIFFUSE_FUZZ_LIBTORCH_ZIP=1 in the environment, the bytes of a model file given to
//    load_model() (LibTorch's zip reader and TorchScript importer, then our checks). Off by
//    default: LibTorch 1.13 itself crashes (SEGV in torch::jit::ScriptTypeParser) and reserves
//    up to 4 GiB (torch::jit::Unpickler::readBytes) on mutated archives, which no caller can
//    catch, so CI would report LibTorch's bugs as ours (docs/reliability.md).
#include <cstdio>
#include <cstdlib>
#include <string>

#include <diffuse/training/checkpoint.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/objectives/denoising.h>  // registers the objectives fingerprints name
#include <diffuse/training/objectives/masked_denoising.h>
#include <diffuse/training/torch_checkpoint.h>

#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace diffuse;
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::clean("parse_model_card", [&] {
    const ModelCard card = parse_model_card(text, "fuzz card");
    // What we write must read back.
    (void)parse_model_card(model_card_text(card), "fuzz card (written back)");
  });
  fuzz::clean("card_from_fingerprint",
              [&] { (void)diffuse::detail::card_from_fingerprint(text, "fuzz"); });
  fuzz::clean("parse_checkpoint_filename", [&] { (void)parse_checkpoint_filename(text); });
  fuzz::clean("parse_torch_pickle", [&] {
    static const std::string zeros(256, '\0');
    (void)diffuse::detail::parse_torch_pickle(
        data, size,
        [](const std::string&) {
          return diffuse::detail::PickleRecord{zeros.data(), zeros.size(), nullptr};
        },
        "fuzz data.pkl");
  });
  static const bool zip = std::getenv("DIFFUSE_FUZZ_LIBTORCH_ZIP") != nullptr;
  if (zip && size >= 4 && data[0] == 'P' && data[1] == 'K') {
    static const std::string path = fuzz::temp_path(".pt");
    fuzz::write_bytes(path, data, size);
    fuzz::clean("load_model", [&] { (void)load_model(path); });
    std::remove(path.c_str());
  }
  return 0;
}
