// SPDX-License-Identifier: Apache-2.0
// Every dtype `diffuse sample --dtype` offers (float32, float64, float16, bfloat16) runs every
// sampler with every model format on the CPU: a diffuse model file, a training checkpoint (its EMA
// weights), safetensors and TorchScript. Samplers compute float16/bfloat16 runs in float32, so the
// network is handed x_t in its own dtype (DenoiserOptions::network_dtype); LibTorch 1.13 has no
// float16 CPU kernels, so there a float16 model computes in float32 (LoadedModel::precision).
// Each run must be finite, of the noise's dtype, and close to the float64 run of the same model.
#include <diffuse/guidance.h>
#include <diffuse/sample.h>
#include <diffuse/sampler.h>
#include <diffuse/training/model_file.h>
#include <diffuse/training/safetensors.h>
#include <diffuse/training/torchscript.h>
#include <diffuse/training/trainer.h>

#include <cmath>
#include <map>
#include <optional>

#include <gtest/gtest.h>

#include "test_util.h"
#include "training/temp_dir.h"

namespace diffuse {
namespace {

using test::TempDir;
using testing::fixture_path;

DiTOptions tiny_options() {
  return DiTOptions(8, 1).patch_size(4).hidden_size(32).depth(1).num_heads(2).num_classes(3);
}

ModelCard tiny_card() {
  ModelCard card;
  card.architecture = "DiT";
  card.schedule = "discrete";
  card.prediction_type = "epsilon";
  card.sample_shape = {1, 8, 8};
  card.num_classes = 3;
  card.clip_sample = true;
  return card;
}

DiT random_dit(uint64_t seed) {
  torch::manual_seed(seed);
  DiT m(tiny_options());
  at::Generator g = at::detail::createCPUGenerator(seed);
  at::NoGradGuard ng;
  for (auto& p : m->parameters()) p.copy_(at::randn(p.sizes(), g) * 0.1);
  return m;
}

struct Format {
  std::string name, path;
  LoadModelOptions options;  // the card for formats without one
  /// Compare every dtype's samples with the float64 ones. Only for the trained shipped model: a
  /// random network's first step divides its output by alpha ~ 0.006, so its samples disagree
  /// between float32 and float64 already by 4e-4 and are no measure of a dtype's accuracy.
  bool accuracy = false;
};

std::vector<Format> make_formats(const TempDir& dir) {
  std::vector<Format> out;
  out.push_back({"diffuse model (shipped)", default_model_path(), {}, true});
  DiT m = random_dit(3);
  save_model(dir / "model.pt", m, tiny_card());
  out.push_back({"diffuse model (random tiny DiT)", dir / "model.pt", {}});
  save_model_safetensors(dir / "model.safetensors", m, tiny_card());
  out.push_back({"safetensors", dir / "model.safetensors", {}});
  {
    Dataset data;
    at::Generator g = at::detail::createCPUGenerator(0);
    data.data = at::rand({8, 1, 8, 8}, g) * 2 - 1;
    data.labels = at::arange(8, at::kLong).remainder(3);
    data.num_classes = 3;
    data.name = "toy";
    DiT model(tiny_options());
    TrainerOptions o;
    o.steps(1)
        .batch_size(4)
        .threads(-1)
        .output_dir(dir / "run")
        .checkpoint_every(1)
        .ema_decay(0.5)
        .model_config("DiT " + format_config(to_config(tiny_options())));
    Trainer<DiT> trainer(model, objective_from_spec("denoising"), make_schedule("discrete"), data,
                         o);
    trainer.train();
    out.push_back({"training checkpoint", latest_checkpoint(trainer.checkpoint_dir()).value(), {}});
  }
  {
    // A module written for any dtype (tests/training/fixtures/tiny_eps.pt computes its time
    // embedding in float32 and so runs only in float32, see below).
    torch::jit::Module ts("AnyDtype");
    ts.register_parameter("w", at::full({1, 1, 1, 1}, 0.3), false);
    ts.register_attribute(
        "diffuse_card", c10::StringType::get(),
        std::string("sample_shape=1x8x8,num_classes=4,prediction_type=epsilon,schedule=discrete"));
    ts.define(R"(
def forward(self, x, t, y):
    return x * self.w + 0.0001 * t.to(x.dtype).view(-1, 1, 1, 1) + 0.01 * y.to(x.dtype).view(-1, 1, 1, 1)
)");
    ts.save(dir / "any_dtype.pt");
    out.push_back({"TorchScript", dir / "any_dtype.pt", {}});
  }
  return out;
}

TEST(Dtypes, EveryDtypeRunsEverySamplerWithEveryModelFormat) {
  TempDir dir("dtypes");
  const std::vector<Format> formats = make_formats(dir);
  const std::vector<std::string> samplers = distinct_sampler_names();
  ASSERT_GE(samplers.size(), 10u);
  int runs = 0;
  for (const Format& f : formats) {
    std::map<std::string, at::Tensor> reference;  // float64 result per sampler
    std::optional<Denoiser> exact;                // the float64 model
    for (const at::ScalarType dtype : {at::kDouble, at::kFloat, at::kBFloat16, at::kHalf}) {
      LoadModelOptions lo = f.options;
      lo.dtype = dtype;
      const LoadedModel m = load_model(f.path, lo);
      // float16 computes in float16 where LibTorch can, else in float32 and says so.
      if (dtype == at::kHalf && !detail::device_computes_float16(at::kCPU)) {
        EXPECT_EQ(m.dtype, at::kFloat) << f.name;
        EXPECT_NE(m.precision.find("no float16 CPU kernels"), std::string::npos) << f.name;
      } else {
        EXPECT_EQ(m.dtype, dtype) << f.name;
        EXPECT_TRUE(m.precision.empty()) << f.name;
      }
      const Denoiser denoiser(m.network, m.denoiser_options());
      auto schedule = m.make_schedule();
      if (dtype == at::kDouble) exact.emplace(m.network, m.denoiser_options());
      if (f.accuracy && dtype != at::kDouble) {
        // The network's output in this dtype, against float64, at a noisy, a middle and a clean
        // time: relative L2 error within the dtype's precision (bfloat16 has 8 significant bits;
        // float16 here has float16 weights, so about 11).
        const double tol = dtype == at::kFloat ? 1e-5 : dtype == at::kBFloat16 ? 0.05 : 5e-3;
        Conditioning c;
        c.value = at::tensor(at::ArrayRef<int64_t>{0, 7});
        std::vector<int64_t> shape{2};
        shape.insert(shape.end(), m.card.sample_shape.begin(), m.card.sample_shape.end());
        const at::Tensor x = randn(shape, 9, at::TensorOptions().dtype(at::kDouble));
        for (const double t : {999.0, 500.0, 50.0}) {
          const TimePoint tp = schedule->at(t);
          const at::Tensor want = exact->call_network(x * std::hypot(tp.alpha, tp.sigma), tp, c);
          const at::Tensor got = denoiser.call_network(
              (x * std::hypot(tp.alpha, tp.sigma)).to(Sampler::compute_dtype(dtype)), tp, c);
          const double rel = ((got.to(at::kDouble) - want).norm() / want.norm()).item<double>();
          EXPECT_LT(rel, tol) << f.name << " " << c10::toString(dtype) << " t=" << t;
        }
      }
      for (const std::string& name : samplers) {
        SampleOptions o;
        o.num_steps = 3;
        o.seed = 11;
        o.cond.value = at::tensor(at::ArrayRef<int64_t>{0, 2});
        o.uncond.value = at::full({2}, m.card.num_classes, at::kLong);
        o.guidance = make_guidance("cfg", {{"scale", "1.5"}});
        std::vector<int64_t> shape{2};
        shape.insert(shape.end(), m.card.sample_shape.begin(), m.card.sample_shape.end());
        const at::Tensor noise = randn(shape, 5, at::TensorOptions().dtype(dtype));
        at::Tensor out;
        try {
          out = sample(*sampler_from_spec(name), denoiser, *schedule, noise, o);
        } catch (const std::exception& e) {
          ADD_FAILURE() << f.name << " " << c10::toString(dtype) << " " << name << ": " << e.what();
          continue;
        }
        ++runs;
        EXPECT_EQ(out.scalar_type(), dtype) << f.name << " " << name;
        EXPECT_TRUE(at::isfinite(out).all().item<bool>())
            << f.name << " " << c10::toString(dtype) << " " << name;
        if (dtype == at::kDouble) {
          reference[name] = out;
          continue;
        }
        // float32 samples stay near the float64 ones; 3 large steps amplify the network's
        // rounding too much for a bound on bfloat16 / float16 samples (its accuracy is checked
        // on the network above).
        if (!f.accuracy || dtype != at::kFloat) continue;
        const double err = (out.to(at::kDouble) - reference.at(name)).abs().mean().item<double>();
        // DPM2 ancestral's 3 steps go from sigma 14.6 down to sigma_down ~ sigma_next^2 / sigma,
        // and its midpoint slope enters x' multiplied by (sigma - sigma_down) / sigma_mid ~ 7.5:
        // the float32 network's ~1e-5 error in x0 becomes 1.6e-4 (the deterministic dpm_2: 2.1e-5).
        // PLMS / PNDM: three steps of ~333 training steps are far outside their stable range; the
        // Adams-Bashforth extrapolation of eps over them (and PNDM's Runge-Kutta stages at
        // extrapolated states) blows the sample up (mean |x| 2.1-2.5 against 0.6 for the others,
        // shipped model) and the float32 network's error with it: 1.5e-4 (plms), 2.6e-3 (pndm).
        // Bounded relative to the sample there.
        if (name == "plms" || name == "pndm") {
          EXPECT_LT(err, 2e-3 * reference.at(name).abs().mean().item<double>())
              << f.name << " " << name;
          continue;
        }
        // An adaptive sampler (dopri5) decides its steps from an error estimate computed in the
        // run's dtype: float32 and float64 runs may take different steps and then agree to the
        // tolerance (rtol 1e-3 of states up to sigma_ve ~ 15 in the ve space: measured 2.0e-3).
        if (sampler_from_spec(name)->adaptive()) {
          EXPECT_LT(err, 1e-2) << f.name << " " << name;
          continue;
        }
        EXPECT_LT(err, name == "dpm_2_ancestral" ? 4e-4 : 1e-4) << f.name << " " << name;
      }
    }
  }
  EXPECT_EQ(runs, static_cast<int>(formats.size() * 4 * samplers.size()));
  ASSERT_EQ(formats.size(), 5u);  // shipped, random tiny DiT, safetensors, checkpoint, TorchScript
}

TEST(Dtypes, ModuleThatRunsOnlyInFloat32SaysSo) {
  LoadModelOptions o;
  o.card = "sample_shape=1x8x8,num_classes=4,prediction_type=epsilon,schedule=discrete";
  EXPECT_NO_THROW(load_model(fixture_path("tiny_eps.pt"), o));
  o.dtype = at::kDouble;
  try {
    load_model(fixture_path("tiny_eps.pt"), o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("tiny_eps.pt"), std::string::npos) << m;
    EXPECT_NE(m.find("in Double"), std::string::npos) << m;
    EXPECT_NE(m.find("try float32"), std::string::npos) << m;
  }
}

TEST(Dtypes, NetworkDtypeCastsTheNetworkCallOnly) {
  // The network sees x_t in its dtype and t in the sampler's; the sampler gets its own dtype back.
  at::ScalarType seen_x = at::kFloat, seen_t = at::kDouble;
  DenoiserOptions o;
  o.network_dtype = at::kBFloat16;
  const Denoiser d(
      [&](const at::Tensor& x, const at::Tensor& t, const Conditioning&) {
        seen_x = x.scalar_type();
        seen_t = t.scalar_type();
        return x * 0.5;
      },
      o);
  const at::Tensor x = at::ones({2, 3}, at::kFloat) * 3.0;
  const at::Tensor out = d.call_network(x, TimePoint{999, 0.1, 0.99}, {});
  EXPECT_EQ(seen_x, at::kBFloat16);
  EXPECT_EQ(seen_t, at::kFloat);
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(out, at::full({2, 3}, 1.5, at::kFloat)));
}

}  // namespace
}  // namespace diffuse
