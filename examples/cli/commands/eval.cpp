// SPDX-License-Identifier: Apache-2.0
// diffuse eval: sample quality of a model under one or several sampler settings, measured against
// the Fashion-MNIST test set: Frechet distance, precision and recall in the feature space of the
// shipped classifier (training/evaluation.h), and the exposure-bias metric per step on real test
// images (diffuse/exposure_bias.h). --sampler, --schedule, --steps and --cfg take lists; every
// combination is one row of the table. Writes eval.csv, exposure_bias.csv, eval.md (rewritten after
// every setting; --resume continues a table) and two PNG plots into --out and prints the markdown
// table. This file: the options and the command's steps; eval_table.cpp: the table and the plots.
#include "commands/eval.h"

#include "cli.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <sstream>

#include <diffuse/all.h>
#include <diffuse/exposure_bias.h>
#include <diffuse/training/data.h>
#include <diffuse/training/evaluation.h>
#include <diffuse/training/model_file.h>

namespace diffuse::cli::eval_command {
namespace {

namespace fs = std::filesystem;
using diffuse::format_double;

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
        out.push_back(trim(piece));
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
    while (std::getline(ss, piece, ',')) out.push_back(trim(piece));
  }
  return out;
}

std::vector<std::shared_ptr<diffuse::Correction>> make_corrections(
    const std::vector<std::string>& specs) {
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
            "--steps " + std::to_string(steps) + " does not match the " +
                std::to_string(f.timesteps.size()) + " steps of schedule file '" + spec.substr(5) +
                "'");
    if (noise_schedule) *noise_schedule = f.noise_schedule;
    text = spacing_spec(f);
  }
  try {
    return diffuse::Registry<diffuse::TimestepSpacing>::get().make_from_spec(text);
  } catch (const diffuse::Error& e) {
    throw UsageError("--schedule " + spec + ": " + error_message(e));
  }
}

/// The lists of the grid, parsed and checked (the defaults where a list is not given).
struct Grid {
  std::vector<std::string> samplers, schedules;  // schedule "" = the model's default
  std::vector<int64_t> steps;
  std::vector<double> cfgs;
  /// Every combination, samplers outermost, steps innermost: the rows of the table.
  std::vector<Setting> settings() const {
    std::vector<Setting> out;
    for (const auto& sampler : samplers)
      for (const auto& schedule : schedules)
        for (double cfg : cfgs)
          for (int64_t n : steps) out.push_back({sampler, schedule, n, cfg});
    return out;
  }
};

Grid parse_grid(const EvalArgs& a) {
  Grid g;
  g.samplers = split_specs(a.samplers.empty() ? std::vector<std::string>{"dpmpp_2m"} : a.samplers);
  g.schedules = a.schedules.empty() ? std::vector<std::string>{""} : split_specs(a.schedules);
  for (auto& s : g.schedules)
    if (s == "default") s.clear();
  for (const std::string& s :
       split_plain(a.steps.empty() ? std::vector<std::string>{"10,20"} : a.steps)) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    require(!s.empty() && *end == '\0', "--steps: '" + s + "' is not an integer");
    require(v >= 1 && v <= 100000, "--steps must be in [1, 100000], got " + s);
    g.steps.push_back(v);
  }
  for (const std::string& s :
       split_plain(a.cfgs.empty() ? std::vector<std::string>{"2"} : a.cfgs)) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    require(!s.empty() && *end == '\0' && std::isfinite(v),
            "--cfg: '" + s + "' is not a finite number");
    g.cfgs.push_back(v);
  }
  return g;
}

/// The numeric options.
void check_numbers(const EvalArgs& a) {
  require(a.num >= 4 && a.num <= 1000000,
          "--num must be in [4, 1000000], got " + std::to_string(a.num));
  require(a.batch_size >= 1, "--batch-size must be >= 1, got " + std::to_string(a.batch_size));
  require(
      a.reference_limit == -1 || a.reference_limit >= 4,
      "--reference-limit must be -1 (all 10000) or >= 4, got " + std::to_string(a.reference_limit));
  require(a.eb_num == 0 || a.eb_num >= 2,
          "--eb-num must be 0 (off) or >= 2, got " + std::to_string(a.eb_num));
  require(a.reference_limit == -1 || a.eb_num <= a.reference_limit,
          "--eb-num " + std::to_string(a.eb_num) + " exceeds --reference-limit " +
              std::to_string(a.reference_limit));
  (void)require_enum(a.eb_mode, diffuse::exposure_bias_mode_names(), "--eb-mode");
}

/// Builds every sampler, correction and spacing of the grid once: a bad name fails fast.
void check_components(const EvalArgs& a, const Grid& g) {
  for (const std::string& s : g.samplers) {
    try {
      (void)diffuse::sampler_from_spec(s);
    } catch (const diffuse::Error& e) {
      throw UsageError("--sampler: " + error_message(e));
    }
  }
  (void)make_corrections(a.corrections);
  for (const std::string& sch : g.schedules)
    for (int64_t n : g.steps) (void)make_spacing_for(sch, n, nullptr);
}

/// The corrections as eval.csv's "corrections" column writes them.
std::string corrections_text(const EvalArgs& a) {
  std::string text;
  for (const auto& c : a.corrections) text += (text.empty() ? "" : " ") + c;
  return text;
}

/// What every row of this run shares (eval.csv's run columns): --resume continues only such a
/// table.
std::vector<std::string> run_columns(const EvalArgs& a, c10::ScalarType dtype) {
  return {corrections_text(a),
          std::to_string(a.num),
          std::to_string(a.seed),
          std::to_string(a.batch_size),
          std::to_string(a.reference_limit),
          std::to_string(a.eb_num),
          a.eb_mode,
          a.model.empty() ? std::string("default") : a.model,
          dtype_name(dtype)};
}

/// What the measurements need: the model, the classifier and the reference test images.
struct EvalSetup {
  diffuse::LoadedModel model;
  std::shared_ptr<const diffuse::NoiseSchedule> schedule;
  diffuse::FashionClassifier classifier;
  diffuse::Dataset test;
  diffuse::FashionReference ref;
  double seconds = 0;  ///< time taken to load it all
};

/// Loads the model (a Fashion-MNIST one, with the noise schedule of every schedule file), the
/// shipped classifier and the test images, and logs the run.
EvalSetup load_setup(const EvalArgs& a, const Grid& g, size_t settings, const c10::Device& device,
                     c10::ScalarType dtype) {
  const auto t_start = std::chrono::steady_clock::now();
  diffuse::LoadedModel model = load_cli_model(a.model, a.model_card, device, dtype);
  const diffuse::ModelCard& card = model.card;
  require(card.sample_shape == std::vector<int64_t>({1, 28, 28}),
          "eval measures Fashion-MNIST models (sample_shape 1x28x28); the model's is " +
              diffuse::detail::card_shape_text(card.sample_shape));
  auto schedule = model.make_schedule();
  for (const std::string& sch : g.schedules) {
    std::string ns;
    for (int64_t n : g.steps) (void)make_spacing_for(sch, n, &ns);
    if (!ns.empty())
      require(ns == card.schedule, "schedule file '" + sch.substr(5) +
                                       "' was made for noise schedule '" + ns +
                                       "' but the model uses '" + card.schedule + "'");
  }
  diffuse::FashionClassifier classifier = diffuse::load_fashion_classifier();
  diffuse::Dataset test = diffuse::load_fashion_mnist("test", a.data_dir, a.reference_limit);
  diffuse::FashionReference ref = diffuse::make_fashion_reference(classifier, test);
  const double setup_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  spdlog::info(
      "model {} ({}), {} settings x {} samples (seed {}), reference {} ({} images), exposure bias "
      "on {} "
      "test images ({}) | set-up {:.1f} s",
      model.source == "default" ? std::string("default") : model.source, model.format, settings,
      a.num, a.seed, ref.name, test.size(), a.eb_num, a.eb_mode, setup_s);
  return EvalSetup{std::move(model), std::move(schedule), std::move(classifier),
                   std::move(test),  std::move(ref),      setup_s};
}

/// eval.md's text before the table: the model, what was measured and against what.
std::string describe_run(const EvalArgs& a, const EvalSetup& e) {
  const diffuse::ModelCard& card = e.model.card;
  std::ostringstream doc;
  doc << "# diffuse eval\n\n"
      << "Model: "
      << (e.model.source == "default" ? std::string("the shipped default model") : e.model.source)
      << " (" << e.model.format << ", " << card.schedule << ", " << card.prediction_type << "). "
      << a.num << " samples per setting (seed " << a.seed << ", class i % " << card.num_classes
      << "), against " << e.test.size() << " images of " << e.ref.name
      << " in the feature space of the shipped Fashion-MNIST classifier."
      << (a.corrections.empty() ? std::string() : " Corrections: " + corrections_text(a) + ".")
      << " Exposure bias (" << a.eb_mode << ") on " << a.eb_num
      << " test images: sum over steps of (sigma_hat - sigma)^2, and "
      << "var(chain) / var(forward) at the last step.\n\n";
  return doc.str();
}

/// Measures the settings, one row at a time (each in the table's files as soon as it is measured).
class Measurer {
 public:
  Measurer(const EvalArgs& a, EvalSetup& e, const std::vector<std::string>& run,
           const c10::Device& device, c10::ScalarType dtype)
      : a_(a),
        e_(e),
        run_(run),
        device_(device),
        denoiser_(e.model.network, e.model.denoiser_options()),
        topt_(at::TensorOptions().dtype(dtype).device(device)),
        chunk_(std::min(a.batch_size, a.num)) {}

  /// Network steps a setting takes: its samples in chunks, and the exposure-bias chain.
  int64_t work(const Setting& s) const {
    const int64_t chunks = (a_.num + chunk_ - 1) / chunk_;
    return s.steps * (chunks + (a_.eb_num > 0 ? 1 : 0));
  }

  /// Setting `number` (1-based, for messages) measured; `on_step` after every network step.
  Row measure(size_t number, const Setting& s, const std::function<void()>& on_step) {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<diffuse::Sampler> sampler = diffuse::sampler_from_spec(s.sampler);
    const bool guided = e_.model.card.num_classes > 0 && s.cfg != 1.0;
    diffuse::SampleOptions so;
    so.num_steps = s.steps;
    so.spacing = make_spacing_for(s.schedule, s.steps, nullptr);
    if (guided) so.guidance = diffuse::make_guidance("cfg", {{"scale", format_double(s.cfg)}});

    const at::Tensor samples = make_samples(*sampler, so, guided, on_step);
    if (!at::isfinite(samples).all().item<bool>())
      throw diffuse::NumericalError("setting " + std::to_string(number) + " (" + s.sampler + ", " +
                                    std::to_string(s.steps) + " steps) produced NaN/Inf samples");
    const diffuse::EvalResult r =
        diffuse::evaluate_fashion_mnist(samples.clamp(-1, 1), e_.classifier, e_.ref);

    Row row;
    row.setting = s;
    row.run = run_;
    row.run[1] = std::to_string(r.num_samples);
    row.fd = r.fd;
    row.precision = r.precision;
    row.recall = r.recall;
    row.eb_total = row.eb_ratio = std::nan("");
    if (a_.eb_num > 0) measure_exposure_bias(*sampler, so, guided, s, on_step, row);
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return row;
  }

 private:
  /// Samples: image i has class i % num_classes and seed seed + i (as `diffuse sample`).
  at::Tensor make_samples(const diffuse::Sampler& sampler, const diffuse::SampleOptions& so,
                          bool guided, const std::function<void()>& on_step) {
    const diffuse::ModelCard& card = e_.model.card;
    std::vector<at::Tensor> parts;
    at::NoGradGuard no_grad;
    for (int64_t start = 0; start < a_.num; start += chunk_) {
      const int64_t m = std::min(chunk_, a_.num - start);
      diffuse::SampleOptions co = so;
      co.corrections = make_corrections(a_.corrections);
      co.seed = a_.seed + static_cast<uint64_t>(start);
      if (card.num_classes > 0) {
        co.cond.value =
            at::arange(start, start + m, at::kLong).remainder(card.num_classes).to(device_);
        if (guided)
          co.uncond.value =
              at::full({m}, card.num_classes, at::TensorOptions(at::kLong).device(device_));
      }
      co.on_step = [&](const diffuse::StepInfo&) { on_step(); };
      std::vector<int64_t> shape = {m};
      shape.insert(shape.end(), card.sample_shape.begin(), card.sample_shape.end());
      parts.push_back(diffuse::sample(sampler, denoiser_, *e_.schedule,
                                      diffuse::randn(shape, co.seed, topt_), co)
                          .cpu());
    }
    return at::cat(parts).to(at::kFloat);
  }

  /// Exposure bias on real test images (their labels as the condition): the row's EB columns and
  /// its exposure_bias.csv rows.
  void measure_exposure_bias(diffuse::Sampler& sampler, const diffuse::SampleOptions& so,
                             bool guided, const Setting& s, const std::function<void()>& on_step,
                             Row& row) {
    const diffuse::ModelCard& card = e_.model.card;
    at::NoGradGuard no_grad;
    const int64_t n = std::min<int64_t>(a_.eb_num, e_.test.size());
    diffuse::SampleOptions eo = so;
    eo.corrections = make_corrections(a_.corrections);
    eo.seed = a_.seed + 7919;
    if (card.num_classes > 0) {
      eo.cond.value = e_.test.labels.narrow(0, 0, n).to(device_);
      if (guided)
        eo.uncond.value =
            at::full({n}, card.num_classes, at::TensorOptions(at::kLong).device(device_));
    }
    eo.on_step = [&](const diffuse::StepInfo&) { on_step(); };
    const auto records = diffuse::measure_exposure_bias(
        sampler, denoiser_, *e_.schedule, e_.test.data.narrow(0, 0, n).to(topt_), eo,
        diffuse::ExposureBiasOptions().mode(diffuse::parse_exposure_bias_mode(a_.eb_mode)));
    row.eb_total = diffuse::total_delta(records);
    row.eb_ratio = records.empty() ? std::nan("") : records.back().variance_ratio;
    for (const auto& rec : records)
      row.eb.push_back({s.sampler, s.schedule, std::to_string(s.steps), format_double(s.cfg),
                        std::to_string(rec.index), format_double(rec.t), format_double(rec.sigma),
                        format_double(rec.sigma_hat), format_double(rec.delta),
                        format_double(rec.var_chain), format_double(rec.var_forward),
                        format_double(rec.variance_ratio)});
  }

  const EvalArgs& a_;
  EvalSetup& e_;
  const std::vector<std::string>& run_;
  c10::Device device_;
  diffuse::Denoiser denoiser_;
  at::TensorOptions topt_;
  int64_t chunk_;
};

int run_eval(const EvalArgs& a) {
  // Arguments, all checked before anything heavy is loaded.
  const Grid grid = parse_grid(a);
  check_numbers(a);
  check_components(a, grid);
  const c10::Device device = parse_device(a.device);
  const c10::ScalarType dtype = parse_dtype(a.dtype);
  const std::vector<Setting> settings = grid.settings();
  const std::vector<std::string> run = run_columns(a, dtype);
  const fs::path out(a.out);
  std::vector<Row> previous;
  if (a.resume) previous = read_previous_rows(out, run);

  EvalSetup setup = load_setup(a, grid, settings.size(), device, dtype);
  std::error_code ec;
  fs::create_directories(a.out, ec);
  if (ec) throw diffuse::IOError("cannot create --out folder '" + a.out + "': " + ec.message());
  EvalTable table(settings, previous, a.resume, a.out);
  const std::string preamble = describe_run(a, setup);

  Measurer measurer(a, setup, run, device, dtype);
  int64_t total_work = 0;
  for (size_t si = 0; si < settings.size(); ++si)
    if (!table.measured(si)) total_work += measurer.work(settings[si]);
  Progress bar("eval", total_work, "steps");
  int64_t done = 0;
  for (size_t si = 0; si < settings.size(); ++si) {
    if (table.measured(si)) continue;
    const Setting& s = settings[si];
    table.add(measurer.measure(si + 1, s, [&] { bar.update(++done); }));
    table.write(out, a.eb_num > 0, preamble);  // each row as soon as it is measured
    bar.finish();
    const Row& r = table.last();
    const bool guided = setup.model.card.num_classes > 0 && s.cfg != 1.0;
    spdlog::info(
        "[{}/{}] {} {} steps{}{}: FD {:.2f} precision {:.3f} recall {:.3f} | EB sum delta {:.4g} | "
        "{:.1f} s",
        si + 1, settings.size(), s.sampler, s.steps, s.schedule.empty() ? "" : " " + s.schedule,
        guided ? " cfg " + format_double(s.cfg) : "", r.fd, r.precision, r.recall, r.eb_total,
        r.seconds);
  }
  bar.finish();
  table.write(out, a.eb_num > 0, preamble);  // also when every setting was already measured
                                             // (--resume): the command line is this one's

  // Plots from the whole table.
  const std::vector<Row> rows = table.ordered();
  std::cout << markdown(rows);
  write_plots(out, rows, a.eb_num > 0,
              CurveLabels{grid.schedules.size() > 1, grid.cfgs.size() > 1, grid.steps.size() > 1});
  spdlog::info("wrote {}/eval.csv, eval.md, fd_vs_steps.png{}", a.out,
               a.eb_num > 0 ? ", exposure_bias.csv, exposure_bias.png" : "");
  return kExitOk;
}

std::function<int()> setup_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  app.footer(
      R"(Lists: --sampler, --schedule, --steps and --cfg take comma-separated lists (or repeat the option);
every combination is one table row. In a sampler/schedule list, a piece "key=value" without a ':'
continues the previous spec's options: --sampler dpmpp_2m,euler_a:eta=0.5,s_noise=1,ddim is 3 specs.

Outputs (--out DIR): eval.csv (one row per setting), exposure_bias.csv (one row per setting and step),
eval.md (the table and what was measured), fd_vs_steps.png (one curve per sampler/schedule/cfg),
exposure_bias.png (delta per step). The markdown table is printed to stdout. The tables are
rewritten (atomically) as soon as each setting is measured, so an interrupted run keeps its rows;
the plots are drawn at the end from the whole table.

--resume: continue the table in --out: settings already in eval.csv (same sampler, schedule, steps
and cfg) are not measured again, the others are added, and rows of other settings are kept. A
table measured with different run columns (corrections, --num, --seed, --batch-size,
--reference-limit, --eb-num, --eb-mode, --model, --dtype) is refused (exit 2): its numbers would
not compare.

Examples:
  diffuse eval                                        # dpmpp_2m, 10 and 20 steps, 500 samples
  diffuse eval --sampler ddim,euler,dpmpp_2m --steps 5,10,20 --out eval_samplers
  diffuse eval --schedule default,karras --steps 10 --cfg 1,2,4
  diffuse eval --correction epsilon_scaling:b=1.005 --steps 20
  diffuse eval --model runs/tiny/model.pt --num 2000 --batch-size 500
  diffuse eval --schedule file:ays.json --steps 10   # a schedule written by `diffuse ays`
  diffuse eval --steps 5,10,20,40 --resume            # after an interruption: only the missing rows)");
  app.add_option("-m,--model", a->model,
                 "Model (as in `diffuse sample`; default: the shipped model)")
      ->capture_default_str();
  app.add_option("--model-card", a->model_card, "Card for a model file without one");
  app.add_option("-s,--sampler", a->samplers, "Sampler spec(s), comma list (default dpmpp_2m)");
  app.add_option("--schedule", a->schedules,
                 "Spacing spec(s), comma list; 'default' = the model's; file:PATH");
  app.add_option("--steps", a->steps, "Solver steps, comma list (default 10,20)");
  app.add_option("--cfg", a->cfgs, "Guidance scale(s), comma list (default 2; 1 = off)");
  app.add_option("-c,--correction", a->corrections,
                 "Correction spec applied to every setting; repeatable");
  app.add_option("--seed", a->seed, "Seed; sample i uses seed + i")->capture_default_str();
  app.add_option("-n,--num", a->num, "Samples per setting (>= 4)")->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "Samples per network batch")->capture_default_str();
  app.add_option("--reference-limit", a->reference_limit,
                 "Use the first N test images as the reference (-1 = all)")
      ->capture_default_str();
  app.add_option("--eb-num", a->eb_num, "Test images for the exposure-bias measurement (0 = off)")
      ->capture_default_str();
  app.add_option("--eb-mode", a->eb_mode, "Exposure bias: accumulated (one chain) or single_step")
      ->capture_default_str();
  app.add_option("--data-dir", a->data_dir, "Fashion-MNIST folder (default: the Debian package's)");
  app.add_option("--device", a->device, "cpu, cuda, cuda:N")->capture_default_str();
  app.add_option("--dtype", a->dtype, "float32, float64, float16, bfloat16")->capture_default_str();
  app.add_option("-o,--out", a->out, "Output folder")->capture_default_str();
  app.add_flag("--resume", a->resume,
               "Keep the rows already in --out/eval.csv and measure only the missing settings");
  return [a] { return run_eval(*a); };
}

}  // namespace

}  // namespace diffuse::cli::eval_command

namespace diffuse::cli {

DIFFUSE_CLI_COMMAND(
    eval, "eval", "FD / precision / recall and exposure bias of sampler settings on Fashion-MNIST",
    eval_command::setup_eval);

}  // namespace diffuse::cli
