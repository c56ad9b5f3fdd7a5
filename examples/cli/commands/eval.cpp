// SPDX-License-Identifier: Apache-2.0
// diffuse eval: sample quality of a model under one or several sampler settings, measured against
// the Fashion-MNIST test set: Frechet distance, precision and recall in the feature space of the
// shipped classifier (training/evaluation.h), and the exposure-bias metric per step on real test
// images (diffuse/exposure_bias.h). --sampler, --schedule, --steps and --cfg take lists; every
// combination is one row of the table. Writes eval.csv, exposure_bias.csv, eval.md and two PNG plots
// into --out and prints the markdown table.
#include "cli.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

#include <diffuse/all.h>
#include <diffuse/exposure_bias.h>
#include <diffuse/training/atomic_file.h>
#include <diffuse/training/data.h>
#include <diffuse/training/evaluation.h>
#include <diffuse/training/image.h>
#include <diffuse/training/model_file.h>

namespace diffuse::cli {
namespace {

namespace fs = std::filesystem;
using diffuse::detail::format_double;

struct EvalArgs {
  std::string model = "default";
  std::string model_card;
  std::vector<std::string> samplers;
  std::vector<std::string> schedules;
  std::vector<std::string> steps;
  std::vector<std::string> cfgs;
  std::vector<std::string> corrections;
  uint64_t seed = 0;
  int64_t num = 500;
  int64_t batch_size = 250;
  int64_t reference_limit = -1;
  int64_t eb_num = 200;
  std::string eb_mode = "accumulated";
  std::string data_dir;
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string out = "diffuse_eval";
};

/// One row of the table.
struct Setting {
  std::string sampler, schedule;  // schedule "" = the model's default spacing
  int64_t steps = 0;
  double cfg = 1;
};

/// Splits a list of specs at top-level commas: a piece with '=' but no ':' before it continues the
/// previous spec's options ("dpmpp_2m:order=2,solver_type=midpoint,euler" -> 2 specs).
std::vector<std::string> split_specs(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    std::stringstream ss(v);
    std::string piece;
    bool first = true;
    while (std::getline(ss, piece, ',')) {
      const auto eq = piece.find('='), colon = piece.find(':');
      const bool option = eq != std::string::npos && (colon == std::string::npos || colon > eq);
      if (option && !first && !out.empty()) {
        out.back() += "," + piece;
      } else {
        out.push_back(diffuse::detail::trim(piece));
      }
      first = false;
    }
  }
  return out;
}

std::vector<std::string> split_plain(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& v : values) {
    std::stringstream ss(v);
    std::string piece;
    while (std::getline(ss, piece, ',')) out.push_back(diffuse::detail::trim(piece));
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::vector<std::shared_ptr<diffuse::Correction>> make_corrections(const std::vector<std::string>& specs) {
  std::vector<std::shared_ptr<diffuse::Correction>> out;
  for (const std::string& spec : specs) {
    try {
      out.push_back(diffuse::correction_from_spec(spec));
    } catch (const diffuse::Error& e) {
      throw UsageError("--correction " + spec + ": " + error_message(e));
    }
  }
  return out;
}

/// The spacing of a --schedule value ("" = default: null), with the steps of a schedule file.
std::shared_ptr<diffuse::TimestepSpacing> make_spacing_for(const std::string& spec, int64_t steps,
                                                          std::string* noise_schedule) {
  if (spec.empty()) return nullptr;
  std::string text = spec;
  if (spec.rfind("file:", 0) == 0) {
    const ScheduleFile f = read_schedule_file(spec.substr(5));
    require(static_cast<int64_t>(f.timesteps.size()) == steps,
            "--steps " + std::to_string(steps) + " does not match the " + std::to_string(f.timesteps.size()) +
                " steps of schedule file '" + spec.substr(5) + "'");
    if (noise_schedule) *noise_schedule = f.noise_schedule;
    text = spacing_spec(f);
  }
  try {
    return diffuse::Registry<diffuse::TimestepSpacing>::get().make_from_spec(text);
  } catch (const diffuse::Error& e) {
    throw UsageError("--schedule " + spec + ": " + error_message(e));
  }
}

int run_eval(const EvalArgs& a) {
  // ----- arguments (all checked before anything heavy is loaded)
  std::vector<std::string> samplers = split_specs(a.samplers.empty() ? std::vector<std::string>{"dpmpp_2m"} : a.samplers);
  std::vector<std::string> schedules = a.schedules.empty() ? std::vector<std::string>{""} : split_specs(a.schedules);
  for (auto& s : schedules)
    if (s == "default") s.clear();
  std::vector<int64_t> steps;
  for (const std::string& s : split_plain(a.steps.empty() ? std::vector<std::string>{"10,20"} : a.steps)) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    require(!s.empty() && *end == '\0', "--steps: '" + s + "' is not an integer");
    require(v >= 1 && v <= 100000, "--steps must be in [1, 100000], got " + s);
    steps.push_back(v);
  }
  std::vector<double> cfgs;
  for (const std::string& s : split_plain(a.cfgs.empty() ? std::vector<std::string>{"2"} : a.cfgs)) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    require(!s.empty() && *end == '\0' && std::isfinite(v), "--cfg: '" + s + "' is not a finite number");
    cfgs.push_back(v);
  }
  require(a.num >= 4 && a.num <= 1000000, "--num must be in [4, 1000000], got " + std::to_string(a.num));
  require(a.batch_size >= 1, "--batch-size must be >= 1, got " + std::to_string(a.batch_size));
  require(a.reference_limit == -1 || a.reference_limit >= 4,
          "--reference-limit must be -1 (all 10000) or >= 4, got " + std::to_string(a.reference_limit));
  require(a.eb_num == 0 || a.eb_num >= 2, "--eb-num must be 0 (off) or >= 2, got " + std::to_string(a.eb_num));
  require(a.reference_limit == -1 || a.eb_num <= a.reference_limit,
          "--eb-num " + std::to_string(a.eb_num) + " exceeds --reference-limit " + std::to_string(a.reference_limit));
  require(a.eb_mode == "accumulated" || a.eb_mode == "single_step",
          "--eb-mode must be accumulated or single_step, got '" + a.eb_mode + "'");
  for (const std::string& s : samplers) {
    try {
      (void)diffuse::sampler_from_spec(s);
    } catch (const diffuse::Error& e) {
      throw UsageError("--sampler: " + error_message(e));
    }
  }
  (void)make_corrections(a.corrections);
  for (const std::string& sch : schedules)
    for (int64_t n : steps) (void)make_spacing_for(sch, n, nullptr);
  const c10::Device device = parse_device(a.device);
  const c10::ScalarType dtype = parse_dtype(a.dtype);

  std::vector<Setting> settings;
  for (const auto& sampler : samplers)
    for (const auto& schedule : schedules)
      for (double cfg : cfgs)
        for (int64_t n : steps) settings.push_back({sampler, schedule, n, cfg});

  // ----- model, classifier, reference
  const auto t_start = std::chrono::steady_clock::now();
  diffuse::LoadedModel model = load_cli_model(a.model, a.model_card, device, dtype);
  const diffuse::ModelCard& card = model.card;
  require(card.sample_shape == std::vector<int64_t>({1, 28, 28}),
          "eval measures Fashion-MNIST models (sample_shape 1x28x28); the model's is " +
              diffuse::detail::card_shape_text(card.sample_shape));
  auto schedule = model.make_schedule();
  for (const std::string& sch : schedules) {
    std::string ns;
    for (int64_t n : steps) (void)make_spacing_for(sch, n, &ns);
    if (!ns.empty())
      require(ns == card.schedule, "schedule file '" + sch.substr(5) + "' was made for noise schedule '" + ns +
                                       "' but the model uses '" + card.schedule + "'");
  }
  diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
  const diffuse::Dataset test = diffuse::load_fashion_mnist("test", a.data_dir, a.reference_limit);
  const diffuse::FashionReference ref = diffuse::make_fashion_reference(classifier, test);
  const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  spdlog::info("model {} ({}), {} settings x {} samples (seed {}), reference {} ({} images), exposure bias on {} "
               "test images ({}) | set-up {:.1f} s",
               model.source == "default" ? std::string("default") : model.source, model.format, settings.size(), a.num,
               a.seed, ref.name, test.size(), a.eb_num, a.eb_mode, setup_s);

  diffuse::Denoiser denoiser(model.network, model.denoiser_options());
  const auto topt = at::TensorOptions().dtype(dtype).device(device);
  const int64_t chunk = std::min(a.batch_size, a.num);
  const int64_t chunks = (a.num + chunk - 1) / chunk;
  int64_t total_work = 0;
  for (const auto& s : settings) total_work += s.steps * (chunks + (a.eb_num > 0 ? 1 : 0));
  Progress bar("eval", total_work);
  int64_t done = 0;

  std::string csv = "sampler,schedule,steps,cfg,corrections,num_samples,fd,precision,recall,eb_total_delta,"
                    "eb_final_variance_ratio,seconds\n";
  std::string eb_csv = "setting,sampler,schedule,steps,cfg,index,t,sigma,sigma_hat,delta,var_chain,var_forward,"
                       "variance_ratio\n";
  std::string corr_text;
  for (const auto& c : a.corrections) corr_text += (corr_text.empty() ? "" : " ") + c;
  std::ostringstream md;
  md << "| # | sampler | schedule | steps | cfg | FD | precision | recall | EB sum delta | EB var ratio (last) | s |\n"
     << "|---|---|---|---|---|---|---|---|---|---|---|\n";
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> fd_curves;  // per sampler/schedule/cfg
  std::vector<std::string> eb_names;
  std::vector<std::vector<double>> eb_xs, eb_ys;

  // A plot legend names what varies besides the steps.
  auto curve_label = [&](const Setting& s) {
    std::string label = s.sampler;
    if (schedules.size() > 1) label += " " + (s.schedule.empty() ? std::string("default") : s.schedule);
    if (cfgs.size() > 1) label += " cfg " + format_double(s.cfg);
    return label;
  };

  for (size_t si = 0; si < settings.size(); ++si) {
    const Setting& s = settings[si];
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<diffuse::Sampler> sampler = diffuse::sampler_from_spec(s.sampler);
    const bool guided = card.num_classes > 0 && s.cfg != 1.0;
    diffuse::SampleOptions so;
    so.num_steps = s.steps;
    so.spacing = make_spacing_for(s.schedule, s.steps, nullptr);
    if (guided) so.guidance = diffuse::make_guidance("cfg", {{"scale", format_double(s.cfg)}});

    // Samples: image i has class i % num_classes and seed seed + i (as `diffuse sample`).
    std::vector<at::Tensor> parts;
    {
      at::NoGradGuard no_grad;
      for (int64_t start = 0; start < a.num; start += chunk) {
        const int64_t m = std::min(chunk, a.num - start);
        diffuse::SampleOptions co = so;
        co.corrections = make_corrections(a.corrections);
        co.seed = a.seed + static_cast<uint64_t>(start);
        if (card.num_classes > 0) {
          co.cond.value = at::arange(start, start + m, at::kLong).remainder(card.num_classes).to(device);
          if (guided) co.uncond.value = at::full({m}, card.num_classes, at::TensorOptions(at::kLong).device(device));
        }
        co.on_step = [&](const diffuse::StepInfo&) { bar.update(++done); };
        std::vector<int64_t> shape = {m};
        shape.insert(shape.end(), card.sample_shape.begin(), card.sample_shape.end());
        parts.push_back(
            diffuse::sample(*sampler, denoiser, *schedule, diffuse::randn(shape, co.seed, topt), co).cpu());
      }
    }
    const at::Tensor samples = at::cat(parts).to(at::kFloat);
    if (!at::isfinite(samples).all().item<bool>())
      throw diffuse::Error("setting " + std::to_string(si + 1) + " (" + s.sampler + ", " + std::to_string(s.steps) +
                           " steps) produced NaN/Inf samples");
    const diffuse::EvalResult r = diffuse::evaluate_fashion_mnist(samples.clamp(-1, 1), classifier, ref);

    // Exposure bias on real test images (their labels as the condition).
    double eb_total = std::nan(""), eb_ratio = std::nan("");
    if (a.eb_num > 0) {
      at::NoGradGuard no_grad;
      const int64_t n = std::min<int64_t>(a.eb_num, test.size());
      diffuse::SampleOptions eo = so;
      eo.corrections = make_corrections(a.corrections);
      eo.seed = a.seed + 7919;
      if (card.num_classes > 0) {
        eo.cond.value = test.labels.narrow(0, 0, n).to(device);
        if (guided) eo.uncond.value = at::full({n}, card.num_classes, at::TensorOptions(at::kLong).device(device));
      }
      eo.on_step = [&](const diffuse::StepInfo&) { bar.update(++done); };
      const auto records = diffuse::measure_exposure_bias(*sampler, denoiser, *schedule,
                                                          test.data.narrow(0, 0, n).to(topt), eo,
                                                          diffuse::ExposureBiasOptions().mode(a.eb_mode));
      eb_total = diffuse::total_delta(records);
      eb_ratio = records.empty() ? std::nan("") : records.back().variance_ratio;
      std::vector<double> xs, ys;
      for (const auto& rec : records) {
        eb_csv += std::to_string(si + 1) + "," + csv_field(s.sampler) + "," + csv_field(s.schedule) + "," +
                  std::to_string(s.steps) + "," + format_double(s.cfg) + "," + std::to_string(rec.index) + "," +
                  format_double(rec.t) + "," + format_double(rec.sigma) + "," + format_double(rec.sigma_hat) + "," +
                  format_double(rec.delta) + "," + format_double(rec.var_chain) + "," +
                  format_double(rec.var_forward) + "," + format_double(rec.variance_ratio) + "\n";
        xs.push_back(static_cast<double>(rec.index + 1) / static_cast<double>(s.steps));
        ys.push_back(rec.delta);
      }
      eb_names.push_back(curve_label(s) + (steps.size() > 1 ? " " + std::to_string(s.steps) + " steps" : ""));
      eb_xs.push_back(xs);
      eb_ys.push_back(ys);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    csv += csv_field(s.sampler) + "," + csv_field(s.schedule.empty() ? "default" : s.schedule) + "," +
           std::to_string(s.steps) + "," + format_double(s.cfg) + "," + csv_field(corr_text) + "," +
           std::to_string(r.num_samples) + "," + format_double(r.fd) + "," + format_double(r.precision) + "," +
           format_double(r.recall) + "," + format_double(eb_total) + "," + format_double(eb_ratio) + "," +
           format_double(secs) + "\n";
    char row[512];
    std::snprintf(row, sizeof(row), "| %zu | %s | %s | %lld | %s | %.2f | %.3f | %.3f | %.4g | %.4f | %.1f |\n",
                  si + 1, s.sampler.c_str(), s.schedule.empty() ? "default" : s.schedule.c_str(),
                  static_cast<long long>(s.steps), format_double(s.cfg).c_str(), r.fd, r.precision, r.recall,
                  eb_total, eb_ratio, secs);
    md << row;
    const std::string curve = curve_label(s);
    fd_curves[curve].first.push_back(static_cast<double>(s.steps));
    fd_curves[curve].second.push_back(r.fd);
    bar.finish();
    spdlog::info("[{}/{}] {} {} steps{}{}: FD {:.2f} precision {:.3f} recall {:.3f} | EB sum delta {:.4g} | {:.1f} s",
                 si + 1, settings.size(), s.sampler, s.steps, s.schedule.empty() ? "" : " " + s.schedule,
                 guided ? " cfg " + format_double(s.cfg) : "", r.fd, r.precision, r.recall, eb_total, secs);
  }
  bar.finish();

  std::ostringstream doc;
  doc << "# diffuse eval\n\n"
      << "Model: " << (model.source == "default" ? std::string("the shipped default model") : model.source) << " ("
      << model.format << ", " << card.schedule << ", " << card.prediction_type << "). " << a.num
      << " samples per setting (seed " << a.seed << ", class i % " << card.num_classes
      << "), against " << test.size() << " images of " << ref.name
      << " in the feature space of the shipped Fashion-MNIST classifier."
      << (a.corrections.empty() ? std::string() : " Corrections: " + corr_text + ".") << " Exposure bias ("
      << a.eb_mode << ") on " << a.eb_num << " test images: sum over steps of (sigma_hat - sigma)^2, and "
      << "var(chain) / var(forward) at the last step.\n\n"
      << md.str() << "\nCommand: `" << invocation() << "`\n";
  std::cout << md.str();

  std::error_code ec;
  fs::create_directories(a.out, ec);
  require(!ec, "cannot create --out folder '" + a.out + "': " + ec.message());
  const fs::path out(a.out);
  diffuse::write_text_file_atomic((out / "eval.csv").string(), csv);
  diffuse::write_text_file_atomic((out / "eval.md").string(), doc.str());
  std::vector<std::string> names;
  std::vector<std::vector<double>> xs, ys;
  for (const auto& kv : fd_curves) {
    names.push_back(kv.first);
    xs.push_back(kv.second.first);
    ys.push_back(kv.second.second);
  }
  diffuse::PlotOptions po;
  po.title = "FD vs steps";
  diffuse::plot_curves_png((out / "fd_vs_steps.png").string(), names, xs, ys, po);
  if (a.eb_num > 0) {
    diffuse::write_text_file_atomic((out / "exposure_bias.csv").string(), eb_csv);
    diffuse::PlotOptions pe;
    pe.title = "exposure bias delta per step (x: fraction of the run)";
    pe.log_y = true;
    diffuse::plot_curves_png((out / "exposure_bias.png").string(), eb_names, eb_xs, eb_ys, pe);
  }
  spdlog::info("wrote {}/eval.csv, eval.md, fd_vs_steps.png{}", a.out,
               a.eb_num > 0 ? ", exposure_bias.csv, exposure_bias.png" : "");
  return kExitOk;
}

std::function<int()> setup_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.footer(R"(Lists: --sampler, --schedule, --steps and --cfg take comma-separated lists (or repeat the option);
every combination is one table row. In a sampler/schedule list, a piece "key=value" without a ':'
continues the previous spec's options: --sampler dpmpp_2m,euler_a:eta=0.5,s_noise=1,ddim is 3 specs.

Outputs (--out DIR): eval.csv (one row per setting), exposure_bias.csv (one row per setting and step),
eval.md (the table and what was measured), fd_vs_steps.png (one curve per sampler/schedule/cfg),
exposure_bias.png (delta per step). The markdown table is printed to stdout.

Examples:
  diffuse eval                                        # dpmpp_2m, 10 and 20 steps, 500 samples
  diffuse eval --sampler ddim,euler,dpmpp_2m --steps 5,10,20 --out eval_samplers
  diffuse eval --schedule default,karras --steps 10 --cfg 1,2,4
  diffuse eval --correction epsilon_scaling:b=1.005 --steps 20
  diffuse eval --model runs/tiny/model.pt --num 2000 --batch-size 500
  diffuse eval --schedule file:ays.json --steps 10   # a schedule written by `diffuse ays`)");
  app.add_option("-m,--model", a->model, "Model (as in `diffuse sample`; default: the shipped model)")
      ->capture_default_str();
  app.add_option("--model-card", a->model_card, "Card for a model file without one");
  app.add_option("-s,--sampler", a->samplers, "Sampler spec(s), comma list (default dpmpp_2m)");
  app.add_option("--schedule", a->schedules, "Spacing spec(s), comma list; 'default' = the model's; file:PATH");
  app.add_option("--steps", a->steps, "Solver steps, comma list (default 10,20)");
  app.add_option("--cfg", a->cfgs, "Guidance scale(s), comma list (default 2; 1 = off)");
  app.add_option("-c,--correction", a->corrections, "Correction spec applied to every setting; repeatable");
  app.add_option("--seed", a->seed, "Seed; sample i uses seed + i")->capture_default_str();
  app.add_option("-n,--num", a->num, "Samples per setting (>= 4)")->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "Samples per network batch")->capture_default_str();
  app.add_option("--reference-limit", a->reference_limit, "Use the first N test images as the reference (-1 = all)")
      ->capture_default_str();
  app.add_option("--eb-num", a->eb_num, "Test images for the exposure-bias measurement (0 = off)")
      ->capture_default_str();
  app.add_option("--eb-mode", a->eb_mode, "Exposure bias: accumulated (one chain) or single_step")
      ->capture_default_str();
  app.add_option("--data-dir", a->data_dir, "Fashion-MNIST folder (default: the Debian package's)");
  app.add_option("--device", a->device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", a->dtype, "float32, float64, float16, bfloat16")->capture_default_str();
  app.add_option("-o,--out", a->out, "Output folder")->capture_default_str();
  return [a] { return run_eval(*a); };
}

}  // namespace

DIFFUSE_CLI_COMMAND(eval, "eval", "FD / precision / recall and exposure bias of sampler settings on Fashion-MNIST",
                    setup_eval);

}  // namespace diffuse::cli
