// SPDX-License-Identifier: Apache-2.0
// The trainer's samples (declared in <diffuse/training/trainer.h>): sample() and sample_many()
// with the EMA model, and the periodic previews (samples_<step>.png, or .csv for points).
#include <diffuse/training/trainer.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <diffuse/config.h>
#include <diffuse/guidance.h>
#include <diffuse/noise.h>
#include <diffuse/sample.h>
#include <diffuse/sampler.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/image.h>

#include "trainer_state.h"

namespace diffuse {

Tensor TrainerBase::sample_many(int64_t n, uint64_t seed, int64_t chunk) {
  check(n >= 1, "Trainer::sample_many: n must be >= 1, got ", n);
  check(chunk >= 1, "Trainer::sample_many: chunk must be >= 1, got ", chunk);
  const auto& data = s_->data;
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t m = std::min(chunk, n - start);
    Tensor labels;
    if (data.labels.defined())
      labels = at::arange(start, start + m, at::kLong).remainder(data.num_classes);
    parts.push_back(sample(m, seed + static_cast<uint64_t>(start), labels).cpu());
  }
  return at::cat(parts);
}

Tensor TrainerBase::sample(int64_t n, uint64_t seed, Tensor labels) {
  auto& s = *s_;
  check(n >= 1, "Trainer::sample: n must be >= 1, got ", n);
  torch::NoGradGuard no_grad;
  s.ema->eval();
  DenoiserOptions dopt;
  dopt.prediction_type = s.objective->prediction_type();
  dopt.clip_sample = s.data.data.dim() == 4 && s.options.clip_samples();
  Denoiser denoiser(s.hooks.network(s.ema), dopt);
  auto sampler = sampler_from_spec(s.options.sampler());
  SampleOptions so;
  so.num_steps = s.options.sample_steps();
  so.seed = seed;
  if (s.data.labels.defined()) {
    if (!labels.defined()) labels = at::arange(n, at::kLong).remainder(s.data.num_classes);
    check(labels.dim() == 1 && labels.size(0) == n, "Trainer::sample: labels must have shape [", n,
          "], got ", labels.sizes());
    so.cond.value = labels.to(s.device);
    if (s.options.cfg_scale() != 1.0) {
      so.guidance = make_guidance("cfg", {{"scale", format_double(s.options.cfg_scale())}});
      so.uncond.value =
          at::full({n}, s.data.num_classes, at::TensorOptions(at::kLong).device(s.device));
    }
  }
  std::vector<int64_t> shape(s.data.data.sizes().begin(), s.data.data.sizes().end());
  shape[0] = n;
  Tensor noise = randn(shape, seed, s.data.data.options().device(s.device));
  return diffuse::sample(*sampler, denoiser, *s.schedule, noise, so);
}

void TrainerBase::preview() {
  auto& s = *s_;
  const auto& o = s.options;
  Tensor x = sample(o.sample_count(), o.seed()).cpu();
  std::string path;
  if (!o.output_dir().empty()) {
    char name[64];
    std::snprintf(name, sizeof(name), "samples_%08lld", static_cast<long long>(s.step));
    if (x.dim() == 4) {
      path = (std::filesystem::path(o.output_dir()) / (std::string(name) + ".png")).string();
      const Tensor images = s.callbacks.to_images ? s.callbacks.to_images(x).cpu() : x;
      save_image_grid(path, images.clamp(-1, 1), o.sample_nrow());
    } else {
      path = (std::filesystem::path(o.output_dir()) / (std::string(name) + ".csv")).string();
      Tensor flat = x.reshape({x.size(0), -1}).to(at::kDouble).contiguous();
      std::ostringstream os;
      auto a = flat.accessor<double, 2>();
      for (int64_t i = 0; i < flat.size(0); ++i) {
        for (int64_t j = 0; j < flat.size(1); ++j) os << (j ? "," : "") << format_double(a[i][j]);
        os << "\n";
      }
      write_text_file_atomic(path, os.str());
    }
  }
  detail::write_loss_plot(s);
  if (s.callbacks.on_sample) s.callbacks.on_sample(x, path, s.step);
}

}  // namespace diffuse
