// SPDX-License-Identifier: Apache-2.0
// diffuse_example_guidance_sweep: what each guidance does as its scale grows, on a problem whose
// answer is known (docs/experiments.md, experiment 4).
//
// The model is the exact denoiser of the "classes_2d" conditional Gaussian mixture (nine
// components on a ring, three classes of three; <diffuse/gaussian_mixture.h>) with a WEAK
// conditioner: beta = 1.5 instead of the preset's 6, so the conditional model puts only
// e^1.5 / (e^1.5 + 2) = 69% of its mass on the asked-for class — an under-fitted conditional
// network, the situation guidance exists for. The target of class c is the mixture of c's three
// components alone. For every guidance and scale, each class is sampled from the same noise and
// compared with draws of its target:
//   - FD: Frechet distance of Gaussians fitted to samples and target (2-D, float64);
//   - precision / recall: improved k-NN precision and recall (k = 3, Kynkaanniemi et al. 2019);
//   - class: share of samples whose nearest component belongs to the class;
//   - inner: share on the class's inner component (the target has 1/3): strong guidance
//     collapses a class onto it, the component farthest from the other classes.
// The rows are averages over the three classes.
//
//   diffuse_example_guidance_sweep [--samples 2000] [--steps 20] [--sampler dpmpp_2m]
//                                  [--beta 1.5] [--seed 0] [--threads N] > sweep.csv
#include <diffuse/all.h>
#include <diffuse/training/evaluation.h>

#include <ATen/Parallel.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

using diffuse::Config;
using diffuse::Tensor;

struct Args {
  int64_t samples = 2000;
  int64_t steps = 20;
  std::string sampler = "dpmpp_2m";
  double beta = 1.5;
  uint64_t seed = 0;
  int64_t threads = 1;
};

[[noreturn]] void usage(int code) {
  std::cout << "usage: diffuse_example_guidance_sweep [--samples 2000] [--steps 20] [--sampler "
               "dpmpp_2m] [--beta 1.5] [--seed 0] [--threads 1]\n"
               "Samples the classes_2d conditional Gaussian mixture (weak conditioner beta) "
               "with CFG, CFG in an\ninterval, APG, CFG++ and CFG-Zero* over a range of scales "
               "and prints CSV: FD, precision,\nrecall, class share and inner-component share "
               "against the exact class distributions.\n";
  std::exit(code);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") usage(0);
    if (i + 1 >= argc) {
      std::cerr << "error: " << k << " needs a value\n";
      usage(2);
    }
    const std::string v = argv[++i];
    try {
      size_t used = 0;
      if (k == "--samples") {
        a.samples = std::stoll(v, &used);
      } else if (k == "--steps") {
        a.steps = std::stoll(v, &used);
      } else if (k == "--beta") {
        a.beta = std::stod(v, &used);
      } else if (k == "--seed") {
        a.seed = std::stoull(v, &used);
      } else if (k == "--threads") {
        a.threads = std::stoll(v, &used);
      } else if (k == "--sampler") {
        a.sampler = v;
        used = v.size();
      } else {
        std::cerr << "error: unknown option " << k << "\n";
        usage(2);
      }
      if (used != v.size()) throw std::invalid_argument(v);
    } catch (const std::exception&) {
      std::cerr << "error: bad value '" << v << "' for " << k << "\n";
      usage(2);
    }
  }
  if (a.samples < 10 || a.steps < 1 || a.threads < 1 || !(a.beta > 0)) {
    std::cerr << "error: need --samples >= 10, --steps >= 1, --threads >= 1, --beta > 0\n";
    usage(2);
  }
  return a;
}

struct Method {
  std::string label;     ///< CSV column "method"
  std::string guidance;  ///< registry name
  Config options;        ///< everything but the scale
  std::vector<double> scales;
  /// The option "scale" is scale + offset (APG's paper form c + (w - 1) (...) is the registry's
  /// original_formulation with scale w - 1).
  double offset = 0;
};

struct Scores {
  double fd = 0, precision = 0, recall = 0, class_share = 0, inner_share = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  at::set_num_threads(static_cast<int>(args.threads));
  try {
    const auto preset = diffuse::ConditionalMixture::preset("classes_2d");
    const diffuse::ConditionalMixture cm(preset.mixture(), preset.component_class(),
                                         preset.class_embeddings(), args.beta);
    const diffuse::GaussianMixture& gm = cm.mixture();
    std::shared_ptr<const diffuse::NoiseSchedule> schedule = diffuse::make_schedule("vp");
    const diffuse::Denoiser denoiser(cm.network(schedule));
    const auto sampler = diffuse::sampler_from_spec(args.sampler);
    const int64_t classes = cm.num_classes(), n = args.samples;

    // The exact class distributions (the class's components, their weights renormalised) and one
    // draw of each, the same size as the samples.
    std::vector<Tensor> targets;
    std::vector<Tensor> members;
    for (int64_t c = 0; c < classes; ++c) {
      const Tensor idx = (cm.component_class() == c).nonzero().reshape({-1});
      members.push_back(idx);
      const Tensor w = gm.weights().index_select(0, idx);
      const diffuse::GaussianMixture target(w / w.sum(), gm.means().index_select(0, idx),
                                            gm.variances().index_select(0, idx));
      targets.push_back(target.sample(n, args.seed + 1000 + static_cast<uint64_t>(c)).x0);
    }
    // The inner component of each class: its member whose nearest foreign component is farthest.
    std::vector<int64_t> inner;
    const Tensor means = gm.means().to(at::kDouble);
    for (int64_t c = 0; c < classes; ++c) {
      double best = -1;
      int64_t best_k = -1;
      for (int64_t k : std::vector<int64_t>(members[c].data_ptr<int64_t>(),
                                            members[c].data_ptr<int64_t>() + members[c].numel())) {
        const Tensor foreign = (cm.component_class() != c).nonzero().reshape({-1});
        const double d =
            (means.index_select(0, foreign) - means[k]).pow(2).sum(1).min().item<double>();
        if (d > best) {
          best = d;
          best_k = k;
        }
      }
      inner.push_back(best_k);
    }

    const std::vector<double> w_scales{1, 1.5, 2, 3, 4, 6, 8, 12};
    // The interval: guidance only while the class is being decided, above sigma_ve = 16 (the
    // spacing of neighbouring components); once a sample chooses among its class's components the
    // run is conditional only.
    const std::vector<Method> methods{
        {"cfg", "cfg", {}, w_scales},
        {"cfg_interval", "cfg", {{"sigma_lo", "16"}}, w_scales},
        // APG as in the paper (Sadat et al. 2024, Alg. 1): x0 space, the parallel part dropped
        // (eta 0), momentum -0.5, c + (w - 1) D; no norm threshold (its published values are for
        // image latents).
        {"apg",
         "apg",
         {{"eta", "0"},
          {"momentum", "-0.5"},
          {"norm_threshold", "0"},
          {"space", "x0"},
          {"original_formulation", "true"}},
         w_scales,
         -1.0},
        {"cfg_pp", "cfg_pp", {}, {0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0}},
        {"cfg_zero_star", "cfg_zero_star", {}, w_scales},
    };

    std::printf(
        "# diffuse_example_guidance_sweep: classes_2d, beta=%g, vp schedule, %s, %lld "
        "steps, %lld samples per class, seed %llu, %lld thread(s)\n",
        args.beta, args.sampler.c_str(), static_cast<long long>(args.steps),
        static_cast<long long>(n), static_cast<unsigned long long>(args.seed),
        static_cast<long long>(args.threads));
    std::printf("method,scale,fd,precision,recall,class_share,inner_share\n");
    for (const Method& m : methods) {
      for (double scale : m.scales) {
        Config opts = m.options;
        opts["scale"] = diffuse::format_double(scale + m.offset);
        std::shared_ptr<const diffuse::Guidance> guidance =
            diffuse::make_guidance(m.guidance, opts);
        Scores mean;
        for (int64_t c = 0; c < classes; ++c) {
          diffuse::SampleOptions o;
          o.num_steps = args.steps;
          o.seed = args.seed + 100 * static_cast<uint64_t>(c);
          o.guidance = guidance;
          o.cond.value = cm.embed(at::full({n}, c, at::kLong));
          o.uncond.value = cm.null_embedding(n);
          const Tensor noise =
              diffuse::randn({n, 2}, args.seed + static_cast<uint64_t>(c), at::kDouble);
          const Tensor x = diffuse::sample(*sampler, denoiser, *schedule, noise, o);
          const Tensor comp = cm.nearest_component(x);
          const Tensor cls = cm.component_class().index_select(0, comp);
          const auto pr = diffuse::precision_recall(targets[c], x, 3);
          mean.fd += diffuse::frechet_distance(targets[c], x) / classes;
          mean.precision += pr.precision / classes;
          mean.recall += pr.recall / classes;
          mean.class_share += (cls == c).to(at::kDouble).mean().item<double>() / classes;
          mean.inner_share += (comp == inner[c]).to(at::kDouble).mean().item<double>() / classes;
        }
        std::printf("%s,%g,%.3f,%.3f,%.3f,%.3f,%.3f\n", m.label.c_str(), scale, mean.fd,
                    mean.precision, mean.recall, mean.class_share, mean.inner_share);
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
