// SPDX-License-Identifier: Apache-2.0
// diffuse encode: images (a folder, or Fashion-MNIST resized and made RGB) through a VAE into
// latent shards (<diffuse/training/latents.h>), resumable and atomic per shard, for
// `diffuse train --latents DIR`.
#include "cli.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include <ATen/ATen.h>

#include <diffuse/training/data.h>
#include <diffuse/training/latents.h>
#include <diffuse/training/vae.h>

namespace diffuse::cli {
namespace {

struct EncodeArgs {
  std::string vae;
  std::string vae_preset = "sd";
  std::string images;
  bool fashion_mnist = false;
  std::string data_dir;
  int64_t size = 0;
  int64_t limit = -1;
  std::string out;
  int64_t shard_size = 1024;
  int64_t batch_size = 8;
  bool mode = false;
  uint64_t seed = 0;
  int64_t vae_tile = 0;
  std::string device = "cpu";
};

int run_encode(const EncodeArgs& a) {
  require(!a.out.empty(), "--out is required");
  require(a.images.empty() != !a.fashion_mnist,
          "give exactly one source: --images DIR or --fashion-mnist");
  require(a.size >= 0 && a.size <= 4096,
          "--size must be in [0, 4096], got " + std::to_string(a.size));
  require(a.limit == -1 || a.limit >= 1,
          "--limit must be -1 (all) or >= 1, got " + std::to_string(a.limit));
  require(a.shard_size >= 1 && a.shard_size <= 1000000,
          "--shard-size must be in [1, 1000000], got " + std::to_string(a.shard_size));
  require(a.batch_size >= 1 && a.batch_size <= 4096,
          "--batch-size must be in [1, 4096], got " + std::to_string(a.batch_size));
  const c10::Device device = parse_device(a.device);
  diffuse::AutoencoderKL vae{nullptr};
  try {
    diffuse::LoadVaeOptions vo;
    vo.preset = a.vae_preset;
    vae = diffuse::load_vae(a.vae, vo);
  } catch (const diffuse::Error& e) {
    throw UsageError("--vae '" + a.vae + "': " + error_message(e));
  }
  vae->to(device);
  const int64_t f = vae->options().downscale();
  require(a.vae_tile == 0 || (a.vae_tile > 0 && a.vae_tile % f == 0),
          "--vae-tile " + std::to_string(a.vae_tile) + " must be 0 or a multiple of the VAE's " +
              "downscale factor " + std::to_string(f));

  diffuse::Dataset images;
  std::vector<std::string> class_names;
  if (a.fashion_mnist) {
    images = diffuse::load_fashion_mnist("train", a.data_dir, a.limit);
    class_names = diffuse::fashion_mnist_class_names();
    const int64_t side = a.size > 0 ? a.size : 32;  // 28 is not a multiple of 8
    // Bilinear resize of the [-1, 1] images (antialiasing is moot when enlarging).
    images.data =
        at::upsample_bilinear2d(images.data, {side, side}, /*align_corners=*/false).clamp(-1, 1);
    images.name += "@" + std::to_string(side);
  } else {
    diffuse::ImageFolderOptions io;
    io.size = a.size;
    io.channels = vae->options().in_channels() == 1 ? 1 : 3;
    io.limit = a.limit;
    images = diffuse::load_image_folder(a.images, io);
    class_names = diffuse::image_folder_classes(a.images);
  }
  require(images.data.size(2) % f == 0 && images.data.size(3) % f == 0,
          "images of " + std::to_string(images.data.size(3)) + "x" +
              std::to_string(images.data.size(2)) + " pixels: the sides must be multiples of the " +
              "VAE's downscale factor " + std::to_string(f) + " (use --size)");

  diffuse::EncodeLatentsOptions o;
  o.shard_size = a.shard_size;
  o.batch_size = a.batch_size;
  o.sample = !a.mode;
  o.seed = a.seed;
  o.tiling.tile = a.vae_tile;
  o.vae_name = a.vae;
  o.class_names = class_names;
  const auto start = std::chrono::steady_clock::now();
  o.on_shard = [&](int64_t done, int64_t total, const std::string& path, bool skipped) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("encode: {}/{} images ({:.0f}%), {} {} | {:.1f} s", done, total,
                 100.0 * static_cast<double>(done) / static_cast<double>(total),
                 skipped ? "kept existing" : "wrote", path, secs);
  };
  spdlog::info("encode: {} {} images of {}x{} through the VAE '{}' ({} posterior, seed {}) into {}",
               images.size(), images.name, images.data.size(3), images.data.size(2), a.vae,
               a.mode ? "mean of the" : "a sample of the", a.seed, a.out);
  const diffuse::EncodeLatentsResult r = diffuse::encode_latents(vae, images, a.out, o);
  spdlog::info(
      "encode: {} shard(s) written, {} kept from an earlier run; latents [{} x {} x {} x "
      "{}]",
      r.shards_written, r.shards_skipped, images.size(), vae->options().latent_channels(),
      images.data.size(2) / f, images.data.size(3) / f);
  return kExitOk;
}

std::function<int()> setup_encode(CLI::App& app) {
  auto a = std::make_shared<EncodeArgs>();
  app.footer(R"(Examples:
  diffuse encode --vae sd-vae-ft-ema --images photos/ --size 256 --out latents/     # subfolders = classes
  diffuse encode --vae sd-vae-ft-ema --fashion-mnist --size 64 --out fm_latents/    # 60000 x 4 x 8 x 8
  diffuse train --set latents=fm_latents --set vae=sd-vae-ft-ema -o run/

Output: shard_000000.safetensors, ... ("latents" float32, scaled by the VAE's scaling factor;
"labels" int64), each written atomically; run the same command again to resume.)");
  app.add_option("--vae", a->vae,
                 "AutoencoderKL: a diffusers folder or a .safetensors file (see `diffuse sample "
                 "--help`)")
      ->required();
  app.add_option("--vae-preset", a->vae_preset,
                 "Architecture of a --vae .safetensors file without a config (sd, sdxl, sd3, flux)")
      ->capture_default_str();
  app.add_option("--images", a->images, "Image folder (files, or one subfolder per class)");
  app.add_flag(
      "--fashion-mnist", a->fashion_mnist,
      "Encode the Fashion-MNIST training set (grey made RGB, resized to --size, default 32)");
  app.add_option("--data-dir", a->data_dir, "Fashion-MNIST folder");
  app.add_option("--size", a->size,
                 "Resize (centre crop) to SIZE x SIZE pixels (0 = as they are; Fashion-MNIST: 32)");
  app.add_option("--limit", a->limit, "Encode only the first N images (-1 = all)");
  app.add_option("-o,--out", a->out, "Latent folder (created; resumed when it holds shards)")
      ->required();
  app.add_option("--shard-size", a->shard_size, "Images per shard")->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "Images per VAE call")->capture_default_str();
  app.add_flag("--mode", a->mode, "Store the posterior mean instead of a sample");
  app.add_option("--seed", a->seed, "Seed of the posterior samples (image i uses seed + i)")
      ->capture_default_str();
  app.add_option("--vae-tile", a->vae_tile, "Tiled encoding: tile side in pixels (0 = none)");
  app.add_option("--device", a->device, "cpu, cuda, cuda:N")->capture_default_str();
  return [a] { return run_encode(*a); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(encode, "encode",
                    "Encode images through a VAE into latent shards for `diffuse train`",
                    setup_encode);

}  // namespace diffuse::cli
