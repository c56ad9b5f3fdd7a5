// SPDX-License-Identifier: Apache-2.0
// Latent datasets: images encoded once through a VAE into shards, then trained on (as MaskDiT
// and fast-DiT train on pre-encoded latents).
//
// A latent folder holds shard_000000.safetensors, shard_000001.safetensors, ...: tensors
// "latents" float32 [n, C, h, w] (scaled: what the diffusion model sees, (z - shift) * scale) and
// "labels" int64 [n] (labelled sources only), with string metadata
//   diffuse_latents = 1, vae (path or name given), vae_config (vae_to_config of the VAE, its
//   scaling and shift included), source (dataset name), count (images in the source), first (index
//   of the shard's first image), num_classes, class_names (';'-joined, optional), posterior
//   ("sample" or "mode"), seed, image_size ("HxW").
// Each shard is written atomically, so an interrupted encode resumes by skipping the shards that
// are there (after checking they were made with the same settings; a shard made with other
// settings is an error, never overwritten).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <diffuse/config.h>
#include <diffuse/training/dataset.h>
#include <diffuse/training/vae.h>

namespace diffuse {

struct EncodeLatentsOptions {
  /// Images per shard. Default 1024; >= 1.
  int64_t shard_size = 1024;
  /// Images per VAE call. Default 8; >= 1.
  int64_t batch_size = 8;
  /// Posterior sample (true, default: fast-DiT's extract_features) or its mean (false).
  bool sample = true;
  /// Seed of the posterior samples: image i uses a generator seeded seed + i, so the latents do
  /// not depend on batch size or on where an interrupted run resumed. Default 0.
  uint64_t seed = 0;
  /// Tiled encoding (large images). Default none.
  VaeTiling tiling;
  /// How the VAE is named in the metadata (its path or name). Required.
  std::string vae_name;
  /// Names of the source's classes, recorded (optional; num_classes of them).
  std::vector<std::string> class_names;
  /// Called after every shard written or skipped: (images done, total, shard path, skipped).
  std::function<void(int64_t, int64_t, const std::string&, bool)> on_shard;
};

/// What encode_latents did.
struct EncodeLatentsResult {
  int64_t shards_written = 0, shards_skipped = 0;
};

/// Encodes `images` (data [N, C, H, W] in [-1, 1]; 1-channel images are repeated to the VAE's 3
/// input channels) into shards in `dir` (created). Resumable: shards already there with the same
/// metadata are kept; one with different metadata is a ConfigError naming the file and the field.
EncodeLatentsResult encode_latents(AutoencoderKL& vae, const Dataset& images,
                                   const std::string& dir, const EncodeLatentsOptions& options);

/// What load_latents found besides the data.
struct LatentsInfo {
  /// The metadata shared by every shard (without "first"), e.g. "vae", "vae_config".
  std::map<std::string, std::string> metadata;
  int64_t shards = 0;
  /// The VAE options of vae_config (its scaling and shift).
  AutoencoderKLOptions vae_options() const;
  std::vector<std::string> class_names() const;
};

/// Loads every shard of `dir` into one Dataset (data = the scaled latents, labels, num_classes,
/// name "latents:<dir>"). The shards must be consecutive from 0, agree on their metadata and
/// cover the source's `count` images exactly. Errors name the shard and the problem.
Dataset load_latents(const std::string& dir, LatentsInfo* info = nullptr);

}  // namespace diffuse
