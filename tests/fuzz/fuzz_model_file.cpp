// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: diffuse model files and training checkpoints. The input is tried as
//  - a model card (parse_model_card),
//  - a checkpoint fingerprint (the card load_model derives from a Trainer checkpoint),
//  - a checkpoint file name (parse_checkpoint_filename, which must never throw),
//  - the bytes of a model file given to load_model() (LibTorch's zip reader, then our checks).
#include <cstdio>
#include <string>

#include <diffuse/training/checkpoint.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/objectives/denoising.h>  // registers the objectives fingerprints name
#include <diffuse/training/objectives/masked_denoising.h>

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
  if (size >= 4 && data[0] == 'P' && data[1] == 'K') {
    static const std::string path = fuzz::temp_path(".pt");
    fuzz::write_bytes(path, data, size);
    fuzz::clean("load_model", [&] { (void)load_model(path); });
    std::remove(path.c_str());
  }
  return 0;
}
