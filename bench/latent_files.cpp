// SPDX-License-Identifier: Apache-2.0
// Random-weight stand-ins of the published latent checkpoints, for timing `diffuse sample` on the
// real sizes without downloading them (README "Running the published DiT / SiT checkpoints"):
//   DIR/DiT-XL-2-256x256.safetensors  DiT-XL/2 (input 32, 4 channels, 1000 classes, learn_sigma;
//                                     675,129,632 parameters) with the card of the published
//                                     checkpoint (reference_dit_card), seeded initialisation
//   DIR/sd-vae.safetensors            the SD VAE (sd-vae-ft-ema architecture, 83,653,863
//                                     parameters), seeded initialisation
// The DiT's adaLN-Zero initialisation makes its output zero; the compute is that of the real model.
//   diffuse_bench_latent_files --out DIR [--input-size 32]
// With --decode SIDE [--tile T] it instead decodes one random latent of SIDE/8 x SIDE/8 cells with
// DIR/sd-vae.safetensors (tiled when T > 0) and prints the wall time and the peak resident memory
// of the process (docs/benchmarks.md, "VAE decode memory").
#include <chrono>
#include <cstdlib>

#include <sys/resource.h>
#include <filesystem>
#include <iostream>
#include <string>

#include <torch/utils.h>

#include <diffuse/training/atomic_file.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/safetensors.h>
#include <diffuse/training/torch_checkpoint.h>
#include <diffuse/training/vae.h>

int main(int argc, char** argv) {
  std::string out;
  int64_t input_size = 32, decode = 0, tile = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--out")
      out = argv[i + 1];
    else if (a == "--input-size")
      input_size = std::atoll(argv[i + 1]);
    else if (a == "--decode")
      decode = std::atoll(argv[i + 1]);
    else if (a == "--tile")
      tile = std::atoll(argv[i + 1]);
  }
  if (out.empty() || input_size <= 0 || input_size % 2 != 0) {
    std::cerr << "usage: diffuse_bench_latent_files --out DIR [--input-size 32 (256 px) | 64]\n";
    return 2;
  }
  try {
    if (decode > 0) {
      diffuse::AutoencoderKL vae =
          diffuse::load_vae((std::filesystem::path(out) / "sd-vae.safetensors").string());
      torch::NoGradGuard no_grad;
      const at::Tensor z = at::randn({1, 4, decode / 8, decode / 8});
      diffuse::VaeTiling t;
      t.tile = tile;
      diffuse::VaeDecodeReport report;
      const auto start = std::chrono::steady_clock::now();
      const at::Tensor image = vae->decode(z, t, &report);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      struct rusage ru {};
      getrusage(RUSAGE_SELF, &ru);
      std::cout << "decode " << decode << "x" << decode << " tile " << tile << ": " << report.tiles
                << " tile(s), " << secs << " s, peak RSS " << ru.ru_maxrss / 1024 << " MiB, image "
                << image.sizes() << "\n";
      return 0;
    }
    diffuse::create_directories_or_throw(out);
    torch::manual_seed(0);
    const diffuse::DiTOptions o =
        diffuse::dit_preset("XL/2", input_size, 4).num_classes(1000).learn_sigma(true);
    diffuse::DiT dit(o);
    const std::string side = std::to_string(input_size * 8);
    const std::string dit_path =
        (std::filesystem::path(out) / ("DiT-XL-2-" + side + "x" + side + ".safetensors")).string();
    diffuse::save_model_safetensors(dit_path, dit, diffuse::reference_dit_card(o, false));
    diffuse::AutoencoderKL vae(diffuse::vae_preset("sd"));
    const std::string vae_path = (std::filesystem::path(out) / "sd-vae.safetensors").string();
    diffuse::save_vae(vae_path, vae);
    std::cout << dit_path << "\n" << vae_path << "\n";
  } catch (const std::exception& e) {
    std::cerr << "diffuse_bench_latent_files: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
