// SPDX-License-Identifier: Apache-2.0
// diffuse sample: what it writes (the grid PNG, the record JSON, one PNG per image, the images as a
// tensor) and what --list prints.
#include "commands/sample.h"

#include "cli.h"

#include <spdlog/spdlog.h>
#include <torch/serialize.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>

#include <diffuse/all.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/image.h>

namespace diffuse::cli::sample_command {

namespace fs = std::filesystem;

namespace {

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

/// Writes a .npy (format 1.0, little-endian, C order) of a CPU tensor of float32/float64.
void save_npy(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.contiguous().cpu();
  const std::string descr = c.scalar_type() == at::kDouble ? "<f8" : "<f4";
  const at::Tensor data = c.scalar_type() == at::kDouble ? c : c.to(at::kFloat);
  std::string shape = "(";
  for (int64_t i = 0; i < data.dim(); ++i)
    shape +=
        std::to_string(data.size(i)) + (data.dim() == 1 ? "," : (i + 1 < data.dim() ? ", " : ""));
  shape += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
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

/// Creates the folder `path` goes into; one that cannot be created is an I/O error.
void ensure_parent(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw diffuse::IOError("cannot create the folder of '" + path + "': " + ec.message());
}

/// --save-each DIR: DIR/000000.png, ... each with the record and its index.
void save_each_image(const std::string& dir, const at::Tensor& images, const std::string& record) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw diffuse::IOError("cannot create --save-each folder '" + dir + "': " + ec.message());
  for (int64_t i = 0; i < images.size(0); ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "%06lld.png", static_cast<long long>(i));
    diffuse::save_png((fs::path(dir) / name).string(), images[i].clamp(-1, 1),
                      {{"diffuse", record}, {"diffuse_index", std::to_string(i)}});
  }
}

/// --save-tensor FILE: *.npy (NumPy) or *.pt (torch::save).
void save_tensor(const std::string& path, const at::Tensor& images) {
  ensure_parent(path);
  if (ends_with_ci(path, ".npy")) {
    save_npy(path, images);
  } else {
    diffuse::write_file_atomic(path, [&](std::ostream& os) { torch::save(images, os); });
  }
}

}  // namespace

std::string default_record_path(const std::string& out) {
  fs::path p(out);
  return (p.parent_path() / (p.stem().string() + ".json")).string();
}

void print_lists(std::ostream& os) {
  list_registry<diffuse::Sampler>(os, "Samplers (--sampler NAME[:option=value,...])");
  list_registry<diffuse::TimestepSpacing>(
      os,
      "Schedules / spacings (--schedule NAME[:option=value,...] or file:PATH from `diffuse ays`)");
  list_registry<diffuse::Correction>(
      os, "Corrections (--correction NAME[:option=value,...], repeatable)");
  list_registry<diffuse::Guidance>(os, "Guidance (--cfg SCALE uses cfg)");
  list_registry<diffuse::NoiseSchedule>(os, "Noise schedules (set by the model's card)");
}

bool ends_with_ci(const std::string& text, const std::string& suffix) {
  if (text.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[text.size() - suffix.size() + i])) !=
        suffix[i])
      return false;
  return true;
}

void write_outputs(const SampleSettings& s, const SampleOutputs& o, const at::Tensor& images,
                   const nlohmann::json& record, int64_t nrow) {
  // The grid shows at most kMaxGridImages images (a million would make a 30,000-pixel-wide PNG);
  // --save-each and --save-tensor keep all of them.
  const int64_t shown = std::min(s.num, kMaxGridImages);
  if (shown < s.num)
    spdlog::warn(
        "the grid shows the first {} of the {} images; --save-each DIR or --save-tensor FILE keeps "
        "all",
        shown, s.num);
  ensure_parent(o.out);
  diffuse::save_image(o.out,
                      diffuse::make_image_grid(images.narrow(0, 0, shown).clamp(-1, 1), nrow),
                      {{"diffuse", record.dump()}});
  const std::string record_path = o.record.empty() ? default_record_path(o.out) : o.record;
  ensure_parent(record_path);
  diffuse::write_text_file_atomic(record_path, record.dump(2) + "\n");
  if (!o.save_each.empty()) save_each_image(o.save_each, images, record.dump());
  if (!o.save_tensor.empty()) save_tensor(o.save_tensor, images);
  const int64_t cols = diffuse::image_grid_columns(shown, nrow);
  spdlog::info("wrote {} ({} image{} in {} row{} of {}) and {}{}{}", o.out, shown,
               shown == 1 ? "" : "s", (shown + cols - 1) / cols,
               (shown + cols - 1) / cols == 1 ? "" : "s", cols, record_path,
               o.save_each.empty() ? "" : ", " + o.save_each + "/",
               o.save_tensor.empty() ? "" : ", " + o.save_tensor);
}

}  // namespace diffuse::cli::sample_command
