// SPDX-License-Identifier: Apache-2.0
// How sampling and training scale with batch size and resolution on one CPU process.
//
// Part 1, sampling vs batch size: the shipped Fashion-MNIST model (DiT tiny, patch 4, 28x28x1,
// 49 tokens), `ddim` (deterministic), a fixed number of steps, batches 1..32.
// Part 2, sampling vs resolution: DiT mini (d 128 x 6, 4 heads) with patch 2 at 16, 32, 64
// (64, 256, 1024 tokens), random weights, a fixed batch; time relative to resolution 32 next to
// the token-count^1 and ^2 expectations and the model's MAC count (scaling.h dit_forward_macs);
// the shipped model at 28 as a reference row (another architecture: not part of the ratios).
// Part 3, training images/s vs batch size: unmasked steps of the shipped model's architecture and
// of training_step.h's Fashion-MNIST MaskDiT (patch 2, 196 tokens, encoder + decoder).
//
// Times are CPU time of the process (timing.h cpu_seconds(); with one intra-op thread, the compute
// a dedicated core needs; unlike wall time, not inflated by other processes on a shared machine),
// the least of --runs sampling runs (after a warm-up) or training steps (after a warm-up step);
// wall times are reported beside them (sampling: the least; training: the median). Ratios are
// within this one run. Peak memory is
// exact tensor memory from the allocators' reports (training_step.h's PeakMemory), complete with
// one intra-op thread (the default). Measurement code: scaling.h (shared with `diffuse bench
// --suite scaling`).
//
//   diffuse_bench_scaling [--threads 1] [--runs 3] [--steps 10] [--batches 1,2,4,8,16,32]
//                         [--resolutions 16,32,64] [--res-batch 4] [--train-batches 1,2,...,32]
//                         [--train-configs tiny28,fmnist] [--parts batch,resolution,training]
//                         [--csv PREFIX] [--plot PREFIX]
//
// --csv PREFIX writes PREFIX_batch.csv, PREFIX_resolution.csv, PREFIX_training.csv; --plot PREFIX
// writes PREFIX_batch.png (images/s relative to batch 1, sampling and training, next to the ideal
// = batch), PREFIX_memory.png (peak tensor MiB vs batch) and PREFIX_resolution.png (time per step
// relative to resolution 32 next to tokens^1, tokens^2 and the MAC model); x axes are log2.
#include <diffuse/training/image.h>
#include <diffuse/training/plot.h>

#include "scaling.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace {

namespace bench = diffuse::bench;

struct Args {
  int threads = 1;
  int64_t runs = 3, steps = 10, res_batch = 4;
  std::vector<int64_t> batches{1, 2, 4, 8, 16, 32}, resolutions{16, 32, 64},
      train_batches{1, 2, 4, 8, 16, 32};
  std::vector<std::string> train_configs{"tiny28", "fmnist"};
  std::set<std::string> parts{"batch", "resolution", "training"};
  std::string csv, plot;
};

std::vector<int64_t> int_list(const std::string& option, const std::string& v) {
  std::vector<int64_t> out;
  for (const auto& s : bench::split_list(v, ',')) {
    char* end = nullptr;
    const long long x = std::strtoll(s.c_str(), &end, 10);
    diffuse::check(end && *end == '\0' && x >= 1, option, ": '", s,
                   "' is not an integer >= 1 (a comma-separated list is expected)");
    out.push_back(x);
  }
  diffuse::check(!out.empty(), option, " is empty");
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::printf(
          "usage: %s [--threads 1] [--runs 3] [--steps 10] [--batches 1,2,4,8,16,32]\n"
          "          [--resolutions 16,32,64] [--res-batch 4] [--train-batches 1,2,4,8,16,32]\n"
          "          [--train-configs tiny28,fmnist] [--parts batch,resolution,training]\n"
          "          [--csv PREFIX] [--plot PREFIX]\n",
          argv[0]);
      std::exit(0);
    }
    diffuse::check(i + 1 < argc, "option ", k, " needs a value (see --help)");
    const std::string v = argv[++i];
    if (k == "--threads")
      a.threads = static_cast<int>(int_list(k, v).at(0));
    else if (k == "--runs")
      a.runs = int_list(k, v).at(0);
    else if (k == "--steps")
      a.steps = int_list(k, v).at(0);
    else if (k == "--res-batch")
      a.res_batch = int_list(k, v).at(0);
    else if (k == "--batches")
      a.batches = int_list(k, v);
    else if (k == "--resolutions")
      a.resolutions = int_list(k, v);
    else if (k == "--train-batches")
      a.train_batches = int_list(k, v);
    else if (k == "--train-configs")
      a.train_configs = bench::split_list(v, ',');
    else if (k == "--parts") {
      const auto p = bench::split_list(v, ',');
      a.parts = {p.begin(), p.end()};
    } else if (k == "--csv")
      a.csv = v;
    else if (k == "--plot")
      a.plot = v;
    else
      throw diffuse::Error("unknown option '" + k + "' (see --help)");
  }
  for (const auto& p : a.parts)
    diffuse::check(p == "batch" || p == "resolution" || p == "training", "--parts: unknown part '",
                   p, "' (batch, resolution, training)");
  for (const auto& c : a.train_configs)
    diffuse::check(c == "tiny28" || c == "fmnist", "--train-configs: unknown config '", c,
                   "' (tiny28, fmnist)");
  return a;
}

std::ofstream open_csv(const Args& a, const std::string& part, const std::string& header) {
  std::ofstream f;
  if (a.csv.empty()) return f;
  const std::string path = a.csv + "_" + part + ".csv";
  f.open(path);
  diffuse::check(static_cast<bool>(f), "cannot write --csv file ", path);
  f << header << "\n";
  return f;
}

void plot(const Args& a, const std::string& part, const std::vector<std::string>& names,
          const std::vector<std::vector<double>>& xs, const std::vector<std::vector<double>>& ys,
          const std::string& title) {
  if (a.plot.empty()) return;
  diffuse::PlotOptions po;
  po.title = title;
  po.log_y = true;
  po.width = 900;
  po.height = 560;
  const std::string path = a.plot + "_" + part + ".png";
  diffuse::plot_curves_png(path, names, xs, ys, po);
  std::printf("plot: %s\n", path.c_str());
}

double log2d(int64_t v) { return std::log2(static_cast<double>(v)); }

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  at::set_num_threads(args.threads);
  std::printf("threads %d, runs %lld, %lld ddim steps per sample\n\n", args.threads,
              static_cast<long long>(args.runs), static_cast<long long>(args.steps));

  // Curves for the batch plots: name, log2 batch, images/s relative to batch 1, peak MiB.
  std::vector<std::string> names, mem_names;
  std::vector<std::vector<double>> xs, ys, mem_xs, mem_ys;

  if (args.parts.count("batch")) {
    const bench::SamplingModel m = bench::shipped_model();
    std::printf("## Sampling vs batch: %s, ddim %lld steps\n\n", m.description.c_str(),
                static_cast<long long>(args.steps));
    std::printf(
        "| batch | ms/step | wall ms/step | images/s | ms/image | peak MiB | MiB/image | network "
        "%% | images/s ÷ batch 1 | ms/step ÷ batch 1 "
        "|\n|---|---|---|---|---|---|---|---|---|---|\n");
    auto csv = open_csv(
        args, "batch",
        "model,batch,steps,ms_per_step,wall_ms_per_step,images_per_s,ms_per_image,peak_mib,"
        "network_share,images_per_s_ratio");
    std::vector<double> x, y, my;
    double ips1 = 0, step1 = 0;
    for (const int64_t b : args.batches) {
      const bench::SamplingScale s = bench::measure_sampling(m, b, args.steps, 0.0, args.runs);
      if (ips1 == 0) ips1 = s.images_per_second(), step1 = s.ms_per_step();
      const double peak = bench::mib(s.peak_bytes);
      std::printf("| %lld | %.2f | %.2f | %.1f | %.2f | %.2f | %.3f | %.0f | ×%.2f | ×%.2f |\n",
                  static_cast<long long>(b), s.ms_per_step(), s.wall_ms_per_step(),
                  s.images_per_second(), s.ms_per_image(), peak, peak / static_cast<double>(b),
                  100 * s.network_share(), s.images_per_second() / ips1, s.ms_per_step() / step1);
      std::fflush(stdout);
      if (csv)
        csv << m.name << "," << b << "," << args.steps << "," << s.ms_per_step() << ","
            << s.wall_ms_per_step() << "," << s.images_per_second() << "," << s.ms_per_image()
            << "," << peak << "," << s.network_share() << "," << s.images_per_second() / ips1
            << "\n";
      x.push_back(log2d(b));
      y.push_back(s.images_per_second() / ips1);
      my.push_back(peak);
    }
    std::printf("\n(the first batch, %lld, is the ratios' reference)\n\n",
                static_cast<long long>(args.batches.front()));
    names.push_back("sampling shipped 28");
    xs.push_back(x);
    ys.push_back(y);
    mem_names.push_back("sampling shipped 28");
    mem_xs.push_back(x);
    mem_ys.push_back(my);
  }

  if (args.parts.count("training")) {
    for (const auto& cfg : bench::scaling_training_configs()) {
      if (std::find(args.train_configs.begin(), args.train_configs.end(), cfg.name) ==
          args.train_configs.end())
        continue;
      std::printf(
          "## Training vs batch: %s, unmasked, AdamW, %lld steps (least CPU, median wall)\n\n",
          cfg.description.c_str(), static_cast<long long>(args.runs));
      std::printf(
          "| batch | ms/step | wall ms/step | images/s | ms/image | step peak MiB | MiB/image | "
          "images/s ÷ batch 1 |\n|---|---|---|---|---|---|---|---|\n");
      auto csv = open_csv(
          args, "training_" + cfg.name,
          "config,batch,ms_per_step,wall_ms_per_step,images_per_s,peak_mib,images_per_s_ratio");
      std::vector<double> x, y, my;
      double ips1 = 0;
      int64_t params = 0;
      for (const int64_t b : args.train_batches) {
        const bench::TrainingScale s = bench::measure_training(cfg, b, 0.0, args.runs);
        params = s.parameters;
        if (ips1 == 0) ips1 = s.images_per_second();
        const double peak = bench::mib(s.peak_bytes);
        std::printf("| %lld | %.1f | %.1f | %.1f | %.2f | %.1f | %.2f | ×%.2f |\n",
                    static_cast<long long>(b), s.cpu_seconds * 1e3, s.seconds * 1e3,
                    s.images_per_second(), s.cpu_seconds * 1e3 / static_cast<double>(b), peak,
                    peak / static_cast<double>(b), s.images_per_second() / ips1);
        std::fflush(stdout);
        if (csv)
          csv << cfg.name << "," << b << "," << s.cpu_seconds * 1e3 << "," << s.seconds * 1e3 << ","
              << s.images_per_second() << "," << peak << "," << s.images_per_second() / ips1
              << "\n";
        x.push_back(log2d(b));
        y.push_back(s.images_per_second() / ips1);
        my.push_back(peak);
      }
      std::printf("\n%lld parameters\n\n", static_cast<long long>(params));
      names.push_back("training " + cfg.name);
      xs.push_back(x);
      ys.push_back(y);
      mem_names.push_back("training " + cfg.name);
      mem_xs.push_back(x);
      mem_ys.push_back(my);
    }
  }

  if (!names.empty()) {
    std::vector<double> x, y;
    for (const auto& v : xs.front())
      x.push_back(v), y.push_back(std::pow(2.0, v) / std::pow(2.0, xs.front().front()));
    names.push_back("ideal (= batch)");
    xs.push_back(x);
    ys.push_back(y);
    plot(args, "batch", names, xs, ys,
         "images/s at batch b / at the first batch; x = log2 b, y log");
    plot(args, "memory", mem_names, mem_xs, mem_ys, "peak tensor MiB vs batch; x = log2 b, y log");
  }

  if (args.parts.count("resolution")) {
    std::printf(
        "## Sampling vs resolution: DiT mini (d 128 x 6, 4 heads), patch 2, C = 4, random "
        "weights, batch %lld, ddim %lld steps\n\n",
        static_cast<long long>(args.res_batch), static_cast<long long>(args.steps));
    std::printf(
        "| model | resolution | tokens | GMAC/image | ms/step | wall ms/step | images/s | ms/image "
        "| peak MiB | network %% | time ÷ ref | tokens ÷ ref | tokens² ÷ ref | MAC ÷ ref |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    auto csv = open_csv(
        args, "resolution",
        "model,resolution,tokens,gmac,batch,steps,ms_per_step,wall_ms_per_step,images_per_s,"
        "ms_per_image,peak_mib,network_share,time_ratio,tokens_ratio,"
        "tokens2_ratio,mac_ratio");
    // The reference is resolution 32 when measured, else the first resolution.
    const bool has32 =
        std::find(args.resolutions.begin(), args.resolutions.end(), 32) != args.resolutions.end();
    const int64_t ref_res = has32 ? 32 : args.resolutions.front();
    std::vector<bench::SamplingScale> runs;
    std::vector<bench::SamplingModel> models;
    for (const int64_t r : args.resolutions) {
      models.push_back(bench::scaling_dit(r));
      runs.push_back(
          bench::measure_sampling(models.back(), args.res_batch, args.steps, 0.0, args.runs));
    }
    size_t ref = 0;
    for (size_t i = 0; i < models.size(); ++i)
      if (models[i].resolution == ref_res) ref = i;
    std::vector<double> x, t, n1, n2, mac;
    auto row = [&](const bench::SamplingModel& m, const bench::SamplingScale& s, bool in_ratios) {
      const double tr = s.cpu_seconds / runs[ref].cpu_seconds;
      const double nr = static_cast<double>(m.tokens) / static_cast<double>(models[ref].tokens);
      const double mr = m.gmac / models[ref].gmac;
      const double peak = bench::mib(s.peak_bytes);
      if (in_ratios)
        std::printf(
            "| DiT mini/2 | %lld | %lld | %.3f | %.1f | %.1f | %.2f | %.1f | %.1f | %.0f | ×%.3f | "
            "×%.3g | ×%.3g | ×%.3f |\n",
            static_cast<long long>(m.resolution), static_cast<long long>(m.tokens), m.gmac,
            s.ms_per_step(), s.wall_ms_per_step(), s.images_per_second(), s.ms_per_image(), peak,
            100 * s.network_share(), tr, nr, nr * nr, mr);
      else
        std::printf(
            "| shipped tiny/4 (reference only) | %lld | %lld | %.3f | %.1f | %.1f | %.2f | "
            "%.1f | %.1f | %.0f | - | - | - | - |\n",
            static_cast<long long>(m.resolution), static_cast<long long>(m.tokens), m.gmac,
            s.ms_per_step(), s.wall_ms_per_step(), s.images_per_second(), s.ms_per_image(), peak,
            100 * s.network_share());
      if (csv)
        csv << m.name << "," << m.resolution << "," << m.tokens << "," << m.gmac << "," << s.batch
            << "," << s.steps << "," << s.ms_per_step() << "," << s.wall_ms_per_step() << ","
            << s.images_per_second() << "," << s.ms_per_image() << "," << peak << ","
            << s.network_share() << "," << (in_ratios ? tr : NAN) << "," << (in_ratios ? nr : NAN)
            << "," << (in_ratios ? nr * nr : NAN) << "," << (in_ratios ? mr : NAN) << "\n";
      if (in_ratios) {
        x.push_back(log2d(m.tokens));
        t.push_back(tr);
        n1.push_back(nr);
        n2.push_back(nr * nr);
        mac.push_back(mr);
      }
    };
    for (size_t i = 0; i < models.size(); ++i) row(models[i], runs[i], true);
    const bench::SamplingModel shipped = bench::shipped_model();
    row(shipped, bench::measure_sampling(shipped, args.res_batch, args.steps, 0.0, args.runs),
        false);
    std::printf("\n(ratios to resolution %lld)\n\n", static_cast<long long>(ref_res));
    plot(args, "resolution", {"measured time", "tokens^1", "tokens^2", "MAC model"}, {x, x, x, x},
         {t, n1, n2, mac},
         "time per step / at resolution " + std::to_string(ref_res) +
             "; x = log2 tokens (patch 2), y log");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "diffuse_bench_scaling: %s\n", e.what());
  return 1;
}
