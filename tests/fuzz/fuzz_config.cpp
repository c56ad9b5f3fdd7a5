// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: configuration strings. The input is split into lines:
//   0 schedule spec, 1 spacing spec, 2 sampler spec, 3 correction spec, 4 guidance spec
// ("name" or "name:key=value,..."), 5 a diffusers scheduler class name and 6 its config
// (from_diffusers); every line also goes through parse_config and the typed ConfigReader getters.
// Whatever builds must rebuild from its canonical form (name + to_config), and a schedule + spacing
// (+ sampler, + correction) that build are run: a 1..8-step grid is validated and a [2, 3] batch is
// sampled with a small closed-form network.
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <diffuse/all.h>
#include <diffuse/diffusers.h>

#include "fuzz_util.h"

namespace {

using namespace diffuse;

template <class T>
std::unique_ptr<T> build(const char* what, const std::string& spec) {
  std::unique_ptr<T> out;
  fuzz::clean(what, [&] { out = Registry<T>::get().make_from_spec(spec); });
  if (out) {
    // The canonical form of what was built must build again (records and cards store it).
    const std::string name = out->name();
    const Config config = out->to_config();
    try {
      (void)Registry<T>::get().make(name, config);
    } catch (const Error& e) {
      std::fprintf(stderr, "FINDING: %s '%s' does not rebuild from '%s:%s': %s\n", what,
                   spec.c_str(), name.c_str(), format_config(config).c_str(), e.what());
      std::abort();
    }
  }
  return out;
}

void read_typed(const std::string& line) {
  fuzz::clean("parse_config", [&] {
    const Config c = parse_config(line);
    ConfigReader r(c, "fuzz");
    for (const auto& kv : c) {
      fuzz::clean("get_double", [&] { (void)r.get_double(kv.first, 0.0); });
      fuzz::clean("get_int", [&] { (void)r.get_int(kv.first, 0); });
      fuzz::clean("get_bool", [&] { (void)r.get_bool(kv.first, false); });
      fuzz::clean("get_doubles", [&] { (void)r.get_doubles(kv.first); });
      fuzz::clean("get_choice", [&] { (void)r.get_choice(kv.first, "a", {"a", "b"}); });
    }
    r.finish();
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string line; lines.size() < 7 && std::getline(is, line);) lines.push_back(line);
  lines.resize(7);
  for (const std::string& line : lines) read_typed(line);

  auto schedule = build<NoiseSchedule>("schedule", lines[0]);
  auto spacing = build<TimestepSpacing>("spacing", lines[1]);
  auto sampler = build<Sampler>("sampler", lines[2]);
  std::shared_ptr<Correction> correction = build<Correction>("correction", lines[3]);
  (void)build<Guidance>("guidance", lines[4]);
  const int64_t steps = 1 + static_cast<int64_t>(size % 8);
  fuzz::clean("from_diffusers", [&] {
    const DiffusersScheduler d =
        from_diffusers(diffuse::detail::trim(lines[5]), parse_config(lines[6]));
    validate_grid(d.grid(steps));
  });
  if (!schedule || !spacing) return 0;

  bool grid_ok = false;
  fuzz::clean("grid", [&] {
    validate_grid(spacing->grid(*schedule, steps));
    grid_ok = true;
  });
  if (!grid_ok || !sampler) return 0;
  fuzz::clean("sample", [&] {
    Network net = [](const Tensor& x, const Tensor&, const Conditioning&) {
      return at::tanh(x) * 0.5;
    };
    Denoiser denoiser(net);
    SampleOptions o;
    o.num_steps = steps;
    o.spacing = std::shared_ptr<const TimestepSpacing>(std::move(spacing));
    if (correction) o.corrections.push_back(correction);
    o.seed = 1;
    const Tensor noise = at::ones({2, 3}, at::kDouble);
    (void)sample(*sampler, denoiser, *schedule, noise, o);
  });
  return 0;
}
