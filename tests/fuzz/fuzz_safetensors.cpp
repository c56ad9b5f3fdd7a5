// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the safetensors reader (parse_safetensors on the raw bytes) and, for inputs
// it accepts, load_model() of the same bytes as "x.safetensors" (card and DiT options from the
// metadata, strict state-dict load).
#include <cstdio>
#include <string>

#include <diffuse/training/safetensors.h>

#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace diffuse;
  bool parsed = false;
  fuzz::clean("parse_safetensors", [&] {
    SafetensorsFile f = parse_safetensors(data, size, "fuzz.safetensors");
    parsed = f.metadata.count(kCardMetadataKey) || f.metadata.count(kDiTMetadataKey);
  });
  if (parsed) {
    static const std::string path = fuzz::temp_path(".safetensors");
    fuzz::write_bytes(path, data, size);
    fuzz::clean("load_model(safetensors)", [&] { (void)load_model(path); });
    std::remove(path.c_str());
  }
  return 0;
}
