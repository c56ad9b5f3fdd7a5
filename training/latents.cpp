// SPDX-License-Identifier: Apache-2.0
#include <diffuse/training/latents.h>

#include <cstdio>
#include <filesystem>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include <diffuse/training/atomic_file.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/safetensors.h>

namespace diffuse {

namespace {

int64_t meta_int(const std::map<std::string, std::string>& m, const std::string& key,
                 const std::string& path) {
  auto it = m.find(key);
  check_io(it != m.end(), path, ": no '", key, "' metadata");
  try {
    size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  throw IOError(
      detail::cat(path, ": metadata '", key, "' is '", it->second, "', not an integer >= 0"));
}

std::string shard_name(int64_t k) {
  char name[64];
  std::snprintf(name, sizeof(name), "shard_%06lld.safetensors", static_cast<long long>(k));
  return name;
}

// The metadata every shard of one encoding shares.
std::map<std::string, std::string> shared_metadata(AutoencoderKL& vae, const Dataset& images,
                                                   const EncodeLatentsOptions& o,
                                                   const std::vector<std::string>& class_names) {
  std::map<std::string, std::string> m;
  m["diffuse_latents"] = "1";
  m["vae"] = o.vae_name;
  m["vae_config"] = format_config(vae_to_config(vae->options()));
  m["source"] = images.name;
  m["count"] = std::to_string(images.size());
  m["num_classes"] = std::to_string(images.num_classes);
  if (!class_names.empty()) m["class_names"] = detail::join(class_names, ";");
  m["posterior"] = o.sample ? "sample" : "mode";
  m["seed"] = std::to_string(o.seed);
  m["image_size"] = std::to_string(images.data.size(2)) + "x" + std::to_string(images.data.size(3));
  return m;
}

}  // namespace

EncodeLatentsResult encode_latents(AutoencoderKL& vae, const Dataset& images,
                                   const std::string& dir, const EncodeLatentsOptions& o) {
  images.validate();
  check(images.data.dim() == 4, "encode_latents: dataset '", images.name,
        "' must hold images [N, C, H, W], got ", images.data.sizes());
  const int64_t c = images.data.size(1), in = vae->options().in_channels();
  check(c == in || (c == 1 && in == 3), "encode_latents: dataset '", images.name, "' has ", c,
        "-channel images; the VAE takes ", in);
  check(o.shard_size >= 1, "encode_latents: shard_size must be >= 1, got ", o.shard_size);
  check(o.batch_size >= 1, "encode_latents: batch_size must be >= 1, got ", o.batch_size);
  check(!o.vae_name.empty(), "encode_latents: vae_name (the VAE's path or name) is required");
  create_directories_or_throw(dir);
  std::map<std::string, std::string> meta = shared_metadata(vae, images, o, o.class_names);
  const int64_t n = images.size();
  EncodeLatentsResult result;
  const at::Device device = vae->parameters().front().device();
  torch::NoGradGuard no_grad;
  for (int64_t first = 0, k = 0; first < n; first += o.shard_size, ++k) {
    const int64_t count = std::min(o.shard_size, n - first);
    const std::string path = (std::filesystem::path(dir) / shard_name(k)).string();
    std::map<std::string, std::string> m = meta;
    m["first"] = std::to_string(first);
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      const SafetensorsFile old =
          read_safetensors(path, [](const std::string& name) { return name == "labels"; });
      for (const auto& [key, value] : m) {
        auto it = old.metadata.find(key);
        check(it != old.metadata.end() && it->second == value, path,
              ": an existing shard made with other settings (metadata '", key, "' is '",
              it == old.metadata.end() ? std::string("(absent)") : it->second, "', this run has '",
              value, "'); remove it or encode into another folder");
      }
      ++result.shards_skipped;
      if (o.on_shard) o.on_shard(first + count, n, path, true);
      continue;
    }
    std::vector<at::Tensor> parts;
    for (int64_t b = first; b < first + count; b += o.batch_size) {
      const int64_t m_b = std::min(o.batch_size, first + count - b);
      at::Tensor x = images.data.narrow(0, b, m_b);
      if (x.size(1) != in) x = x.expand({m_b, in, x.size(2), x.size(3)});
      const LatentDistribution d = vae->encode_distribution(x.to(device), o.tiling);
      at::Tensor z = d.mean;
      if (o.sample) {
        std::vector<at::Tensor> noise;
        for (int64_t i = 0; i < m_b; ++i) {
          at::Generator gen = at::detail::createCPUGenerator(o.seed + static_cast<uint64_t>(b + i));
          noise.push_back(at::randn(d.mean.sizes().slice(1), gen, at::TensorOptions(at::kFloat)));
        }
        z = d.mean + d.stddev() * at::stack(noise).to(d.mean.device());
      }
      parts.push_back(vae->scale_latents(z).to(at::kFloat).cpu().contiguous());
    }
    std::map<std::string, at::Tensor> tensors{{"latents", at::cat(parts, 0)}};
    if (images.labels.defined()) tensors["labels"] = images.labels.narrow(0, first, count).clone();
    write_safetensors(path, tensors, m);
    ++result.shards_written;
    if (o.on_shard) o.on_shard(first + count, n, path, false);
  }
  return result;
}

AutoencoderKLOptions LatentsInfo::vae_options() const {
  auto it = metadata.find("vae_config");
  check(it != metadata.end(), "latents: no vae_config metadata");
  return vae_options_from_config(parse_config(it->second));
}

std::vector<std::string> LatentsInfo::class_names() const {
  auto it = metadata.find("class_names");
  return it == metadata.end() ? std::vector<std::string>{} : detail::split_text(it->second, ';');
}

Dataset load_latents(const std::string& dir, LatentsInfo* info) {
  namespace fs = std::filesystem;
  std::error_code ec;
  check_io(fs::is_directory(dir, ec), "latents folder '", dir, "' does not exist");
  std::vector<at::Tensor> latents, labels;
  std::map<std::string, std::string> shared;
  int64_t k = 0, next_first = 0, count = -1;
  for (;; ++k) {
    const std::string path = (fs::path(dir) / shard_name(k)).string();
    if (!fs::exists(path, ec)) break;
    SafetensorsFile f = read_safetensors(path);
    std::map<std::string, std::string> m = f.metadata;
    check_io(m.count("diffuse_latents") && m["diffuse_latents"] == "1", path,
             ": not a latent shard written by diffuse encode (no diffuse_latents metadata)");
    const std::string first = m["first"];
    m.erase("first");
    check_io(first == std::to_string(next_first), path, ": starts at image ", first, ", expected ",
             next_first, " (a shard is missing or from another encoding)");
    if (k == 0) {
      shared = m;
      count = meta_int(m, "count", path);
      (void)meta_int(m, "num_classes", path);
    } else {
      for (const auto& [key, value] : shared)
        check_io(m.count(key) && m[key] == value, path, ": metadata '", key, "' is '",
                 m.count(key) ? m[key] : "(absent)", "', shard 0 has '", value, "'");
    }
    auto it = f.tensors.find("latents");
    check_io(
        it != f.tensors.end() && it->second.dim() == 4 && it->second.scalar_type() == at::kFloat,
        path, ": no float32 [n, C, h, w] tensor 'latents'");
    const int64_t n = it->second.size(0);
    const bool labelled = meta_int(shared, "num_classes", path) > 0;
    auto lab = f.tensors.find("labels");
    check_io(!labelled || (lab != f.tensors.end() && lab->second.dim() == 1 &&
                           lab->second.size(0) == n && lab->second.scalar_type() == at::kLong),
             path, ": a labelled source needs int64 'labels' [", n, "]");
    latents.push_back(it->second);
    if (labelled) labels.push_back(lab->second);
    next_first += n;
  }
  check_io(k > 0, "latents folder '", dir,
           "' has no shard_000000.safetensors (write one with "
           "`diffuse encode`)");
  check_io(next_first == count, "latents folder '", dir, "' holds ", next_first,
           " latents of the source's ", count,
           " (an encode that has not finished? run it again "
           "to resume)");
  Dataset d;
  d.data = at::cat(latents, 0);
  if (!labels.empty()) {
    d.labels = at::cat(labels, 0);
    d.num_classes = meta_int(shared, "num_classes", dir);
  }
  d.name = "latents:" + dir;
  d.validate();
  if (info) {
    info->metadata = shared;
    info->shards = k;
  }
  return d;
}

}  // namespace diffuse
