// SPDX-License-Identifier: Apache-2.0
// Randomised bad-input sweep (issue 7, item 2). A fixed master seed generates a few thousand
// configurations: every registered sampler name (keys and aliases) x schedule x spacing or
// explicit grid x corrections x guidance x steps x noise shape and dtype x conditioning x denoiser
// options x model behaviour, with valid and invalid values (zero / negative / huge steps, NaN /
// Inf / negative options in the spec strings, empty and non-monotone custom lists and grids,
// mismatched conditioning, models that return NaN / Inf / the wrong shape / nothing or throw).
// The generator knows which values it made invalid and what string an error about each must
// contain, so every configuration must EITHER run and return finite values of the noise's shape
// and dtype, OR throw a diffuse::Error naming one of the injected values (a model's own exception
// must come through unchanged). A watchdog aborts, printing the configuration, when one runs for
// more than a few seconds or the process grows past a memory limit.
//
// Re-running one configuration: DIFFUSE_SWEEP_CONFIG=<index> (see the printed description);
// DIFFUSE_SWEEP_SEED=<n> and DIFFUSE_SWEEP_CONFIGS=<n> explore other seeds / more configurations.
#include <diffuse/schedules/spacing/ddim_uniform.h>
#include "test_util.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <unistd.h>

namespace diffuse {
namespace {

constexpr uint64_t kMasterSeed = 0x5eed2026;
constexpr int64_t kDefaultConfigs = 3000;

// ------------------------------------------------------------------------------------------------
// Random numbers: mt19937_64's output is fixed by the standard (the <random> distributions are
// not), so the configurations are the same with every standard library.

struct Rng {
  std::mt19937_64 g;
  explicit Rng(uint64_t seed) : g(seed) {}
  /// Uniform in [lo, hi] (inclusive).
  int64_t integer(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(g() % static_cast<uint64_t>(hi - lo + 1));
  }
  double real(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(g() >> 11) * 0x1.0p-53;
  }
  /// 10^u, u uniform in [log10 lo, log10 hi].
  double log_real(double lo, double hi) {
    return std::pow(10.0, real(std::log10(lo), std::log10(hi)));
  }
  bool chance(double p) { return real(0, 1) < p; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(integer(0, static_cast<int64_t>(v.size()) - 1))];
  }
};

uint64_t mix(uint64_t z) {  // splitmix64
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string num(double v) { return format_double(v); }
std::string shape_str(const std::vector<int64_t>& s) { return detail::cat(c10::IntArrayRef(s)); }

/// The strings an error about the raw option value `raw` may show: the raw text (parse errors
/// quote it) and the parsed number as the library prints doubles (precision 17).
std::vector<std::string> value_needles(const std::string& raw) {
  std::vector<std::string> out{raw};
  char* end = nullptr;
  const double v = std::strtod(raw.c_str(), &end);
  if (!raw.empty() && end && *end == '\0') out.push_back(detail::cat(v));
  return out;
}

// ------------------------------------------------------------------------------------------------
// One configuration.

/// A "name:key=value,..." spec whose options can be set and replaced.
struct Spec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> options;
  void set(const std::string& key, const std::string& value) {
    for (auto& kv : options)
      if (kv.first == key) {
        kv.second = value;
        return;
      }
    options.emplace_back(key, value);
  }
  void erase(const std::string& key) {
    for (auto it = options.begin(); it != options.end(); ++it)
      if (it->first == key) {
        options.erase(it);
        return;
      }
  }
  bool has(const std::string& key) const {
    for (const auto& kv : options)
      if (kv.first == key) return true;
    return false;
  }
  std::string get(const std::string& key) const {
    for (const auto& kv : options)
      if (kv.first == key) return kv.second;
    return "";
  }
  std::string str() const {
    std::string s = name;
    for (size_t i = 0; i < options.size(); ++i)
      s += (i ? "," : ":") + options[i].first + "=" + options[i].second;
    return s;
  }
};

enum class ModelKind { kGood, kZeros, kWrongDtype, kNaN, kInf, kWrongShape, kUndefined, kThrow };
const char* model_name(ModelKind k) {
  switch (k) {
    case ModelKind::kGood:
      return "exact Gaussian-data denoiser";
    case ModelKind::kZeros:
      return "all zeros (a zero-initialised network)";
    case ModelKind::kWrongDtype:
      return "right values, wrong dtype";
    case ModelKind::kNaN:
      return "NaN";
    case ModelKind::kInf:
      return "Inf";
    case ModelKind::kWrongShape:
      return "wrong shape";
    case ModelKind::kUndefined:
      return "undefined tensor";
    case ModelKind::kThrow:
      return "throws std::runtime_error";
  }
  return "?";
}

enum class CondKind { kNone, kFloat, kLong };
struct CondSpec {
  CondKind kind = CondKind::kNone;
  std::vector<int64_t> shape;
  std::map<std::string, std::vector<int64_t>> extra;
  std::string str() const {
    if (kind == CondKind::kNone && extra.empty()) return "none";
    std::string s = kind == CondKind::kNone
                        ? "value undefined"
                        : (kind == CondKind::kLong ? "Long " : "Float ") + shape_str(shape);
    for (const auto& kv : extra) s += ", extra['" + kv.first + "'] " + shape_str(kv.second);
    return s;
  }
};

/// An invalid value the generator injected, and what an error about it must mention (any one).
struct Fault {
  std::string label;
  std::vector<std::string> needles;
  bool user_exception = false;  ///< the model's own exception, not a diffuse::Error
  std::string key;              ///< when set, the message must also name this option
  bool named_by(const std::string& message) const {
    if (!key.empty() && message.find(key) == std::string::npos) return false;
    for (const auto& n : needles)
      if (message.find(n) != std::string::npos) return true;
    return false;
  }
};

struct Case {
  int64_t index = 0;
  Spec sampler, schedule, spacing, guidance;  // spacing.name empty: the schedule's default
  std::vector<Spec> corrections;
  bool use_grid = false;
  TimeGrid grid;
  std::string grid_note;
  int64_t num_steps = 3;
  std::vector<int64_t> shape;
  at::ScalarType dtype = at::kFloat;
  bool noise_undefined = false, noise_noncontiguous = false;
  CondSpec cond, uncond;
  DenoiserOptions denoiser;
  ModelKind model = ModelKind::kGood;
  double model_gain = 1.0;
  double fault_at = 0.0;  ///< fraction of the run's steps after which a faulty model misbehaves
  at::ScalarType model_dtype = at::kDouble;
  std::vector<int64_t> wrong_shape;
  bool check_finite = true;
  std::vector<Fault> faults;
  /// Documented limitations that may (or may not, depending on the grid) reject a valid
  /// configuration; the error must then contain one of these.
  std::vector<std::string> may_fail;
  std::vector<std::string> notes;

  void fault(const std::string& label, std::vector<std::string> needles, bool user = false) {
    faults.push_back({label, std::move(needles), user, ""});
  }
  /// An invalid option value: the message must name the option and show the value.
  void fault_option(const std::string& label, const std::string& key, const std::string& raw) {
    faults.push_back({label, value_needles(raw), false, key});
  }

  std::string describe() const {
    std::ostringstream os;
    os << "config #" << index << " (re-run alone: DIFFUSE_SWEEP_CONFIG=" << index << ")\n";
    os << "  sampler:     " << sampler.str() << "\n  schedule:    " << schedule.str() << "\n";
    if (use_grid) {
      os << "  grid:        explicit, " << grid.size() << " points " << grid_note << ": ";
      for (const auto& p : grid) os << "(t=" << p.t << " a=" << p.alpha << " s=" << p.sigma << ") ";
      os << "\n";
    } else {
      os << "  spacing:     " << (spacing.name.empty() ? std::string("(default)") : spacing.str())
         << "\n  num_steps:   " << num_steps << "\n";
    }
    os << "  corrections: [";
    for (size_t i = 0; i < corrections.size(); ++i) os << (i ? "; " : "") << corrections[i].str();
    os << "]\n  guidance:    " << (guidance.name.empty() ? std::string("none") : guidance.str())
       << "\n";
    os << "  noise:       "
       << (noise_undefined ? std::string("undefined") : detail::cat(dtype, " ", shape_str(shape)))
       << (noise_noncontiguous ? " (non-contiguous)" : "") << "\n";
    os << "  cond:        " << cond.str() << "\n  uncond:      " << uncond.str() << "\n";
    os << "  denoiser:    " << to_string(denoiser.prediction_type)
       << " clip_sample=" << denoiser.clip_sample << " range=" << denoiser.clip_sample_range
       << " thresholding=" << denoiser.thresholding
       << " ratio=" << denoiser.dynamic_thresholding_ratio << " max=" << denoiser.sample_max_value
       << "\n";
    os << "  model:       " << model_name(model);
    if (model != ModelKind::kGood && model != ModelKind::kZeros)
      os << " (after " << fault_at << " of the steps)";
    if (model == ModelKind::kWrongDtype) os << " dtype " << model_dtype;
    if (model == ModelKind::kWrongShape) os << " " << shape_str(wrong_shape);
    os << "\n  check_finite: " << check_finite << "\n";
    if (faults.empty()) {
      os << "  expected:    a finite result";
    } else {
      os << "  expected:    an error naming one of:";
      for (const auto& f : faults) {
        os << " [" << f.label << ":" << (f.key.empty() ? "" : " '" + f.key + "' and");
        for (const auto& n : f.needles) os << " '" << n << "'";
        os << "]";
      }
    }
    for (const auto& m : may_fail) os << "\n  may fail:    '" << m << "'";
    for (const auto& n : notes) os << "\n  note:        " << n;
    return os.str();
  }
};

// ------------------------------------------------------------------------------------------------
// The generator.

/// What the generator knows about the (valid version of the) schedule.
struct ScheduleInfo {
  std::shared_ptr<NoiseSchedule> s;
  bool discrete = false, zero_snr = false, known = true;
  int64_t T = 0;
  double sigma_lo = 0, sigma_hi = 0;  // sigma_ve range (hi may be inf)
};

class Generator {
 public:
  Generator(int64_t index, uint64_t master) : r_(mix(master ^ mix(static_cast<uint64_t>(index)))) {
    c_.index = index;
  }

  Case make() {
    // Every sampler name in turn (so every key and alias is covered), the rest at random.
    const auto samplers = Registry<Sampler>::get().names();
    const std::string sampler_name = samplers[static_cast<size_t>(c_.index) % samplers.size()];
    clean_ = r_.chance(0.4);  // no injected fault (some valid-looking combinations must still fail)
    schedule();
    steps_and_grid();
    sampler(sampler_name);
    corrections();
    noise();
    conditioning_and_guidance();
    denoiser();
    model();
    // check_finite=false only where nothing can be non-finite (float16 results can overflow).
    c_.check_finite = !r_.chance(0.05) || c_.model == ModelKind::kNaN ||
                      c_.model == ModelKind::kInf || c_.dtype == at::kHalf ||
                      c_.dtype == at::kBFloat16;
    // A network that returns float16 can overflow it by itself (named as its NaN/Inf output), and
    // a float16 result can overflow when the model is not an exact denoiser (gain != 1): both are
    // errors naming what overflowed.
    if (c_.model == ModelKind::kWrongDtype &&
        (c_.model_dtype == at::kHalf || c_.model_dtype == at::kBFloat16))
      c_.may_fail.push_back("the network returned NaN/Inf");
    if (c_.dtype == at::kHalf || c_.dtype == at::kBFloat16)
      c_.may_fail.push_back("the result does not fit");
    return c_;
  }

 private:
  /// Whether to inject a fault here (never in a clean configuration).
  bool inject(double p = 0.12) { return !clean_ && r_.chance(p); }

  // --- schedule -------------------------------------------------------------------------------
  void schedule() {
    const auto names = Registry<NoiseSchedule>::get().names();
    Spec& s = c_.schedule;
    s.name = r_.pick(names);
    if (s.name == "discrete") {
      const std::string kind =
          r_.pick<std::string>({"linear", "scaled_linear", "squaredcos_cap_v2", "trained"});
      const int64_t T = r_.pick<int64_t>({10, 20, 100, 1000});
      if (kind == "trained") {
        std::string b;
        for (int64_t i = 0; i < 12; ++i)
          b += (i ? ";" : "") + num(0.02 + 0.05 * static_cast<double>(i));
        s.set("trained_betas", b);
      } else {
        if (r_.chance(0.7)) s.set("beta_schedule", kind);
        if (T != 1000 || r_.chance(0.5)) s.set("num_train_timesteps", std::to_string(T));
        if (kind != "squaredcos_cap_v2" && r_.chance(0.4)) {
          const double b0 = r_.log_real(1e-5, 1e-3), b1 = r_.real(0.005, 0.05);
          s.set("beta_start", num(b0));
          s.set("beta_end", num(b1));
        }
      }
      if (r_.chance(0.12)) s.set("rescale_betas_zero_snr", "true");
      if (s.get("rescale_betas_zero_snr") == "true" && r_.chance(0.5))
        s.set("terminal_alphas_cumprod", num(std::ldexp(1.0, -24)));
      if (r_.chance(0.2)) s.set("precision", r_.pick<std::string>({"float32", "float64"}));
    } else if (s.name == "vp") {
      const double bmin = r_.real(0, 1);
      if (r_.chance(0.5)) s.set("beta_min", num(bmin));
      if (r_.chance(0.5)) s.set("beta_max", num(r_.real(s.has("beta_min") ? bmin + 1 : 2, 30)));
      if (r_.chance(0.4)) s.set("t_min", num(r_.log_real(1e-4, 0.05)));
    } else if (s.name == "edm") {
      if (r_.chance(0.5)) s.set("sigma_min", num(r_.log_real(1e-3, 0.1)));
      if (r_.chance(0.5)) s.set("sigma_max", num(r_.log_real(1, 1e5)));
      if (r_.chance(0.3)) s.set("sigma_data", num(r_.real(0.1, 2)));
    } else if (s.name == "flow") {
      if (r_.chance(0.3)) s.set("t_scale", num(r_.pick<double>({1.0, 1000.0, 500.0})));
      if (r_.chance(0.3)) s.set("sigma_min", num(r_.log_real(1e-4, 0.05)));
      if (r_.chance(0.5)) s.set("shift", num(r_.real(0.5, 6)));
      if (r_.chance(0.3)) {
        s.set("use_dynamic_shifting", "true");
        const bool linear = r_.chance(0.3);
        if (linear) s.set("time_shift_type", "linear");
        s.set("mu", num(linear ? r_.real(0.2, 3) : r_.real(-1, 2)));
      }
      if (r_.chance(0.2)) s.set("shift_terminal", num(r_.real(0.01, 0.3)));
    }
    // The valid schedule, to pick times and ranges from. A terminal_alphas_cumprod above
    // alphas_cumprod[T-2] (steep betas) is an invalid combination the schedule must name.
    try {
      info_.s = Registry<NoiseSchedule>::get().make_from_spec(s.str());
    } catch (const Error& e) {
      if (std::string(e.what()).find("terminal_alphas_cumprod=") == std::string::npos) throw;
      Spec valid = s;
      valid.erase("terminal_alphas_cumprod");
      info_.s = Registry<NoiseSchedule>::get().make_from_spec(valid.str());
      c_.fault_option("terminal_alphas_cumprod above alphas_cumprod[T-2]",
                      "terminal_alphas_cumprod", s.get("terminal_alphas_cumprod"));
    }
    info_.discrete = info_.s->num_train_timesteps() > 0;
    info_.T = info_.s->num_train_timesteps();
    info_.zero_snr = info_.s->at(info_.s->t_max()).alpha == 0.0;
    info_.sigma_lo = info_.s->at(info_.s->t_min()).sigma_ve();
    info_.sigma_hi = info_.s->at(info_.s->t_max()).sigma_ve();
    info_.known = s.name == "discrete" || s.name == "vp" || s.name == "edm" || s.name == "flow";
    if (info_.zero_snr) {
      c_.notes.push_back("zero terminal SNR: alpha = 0 at t_max");
      c_.may_fail.push_back(
          "terminal SNR");  // karras / exponential ranges, Heun, epsilon at alpha = 0
    }
    if (!inject() || !info_.known) return;
    // Invalid schedule options.
    struct Bad {
      std::string key, raw, label;
    };
    std::vector<Bad> bad{{"bogus_option", "1", "unknown schedule option"}};
    if (s.name == "discrete") {
      const bool trained = s.has("trained_betas");
      const std::string kind =
          trained ? "trained" : (s.has("beta_schedule") ? s.get("beta_schedule") : "linear");
      if (!trained) {
        for (const char* v : {"1", "0", "-5", "1000000000", "9223372036854775807", "1e3", "x"})
          bad.push_back({"num_train_timesteps", v, "num_train_timesteps"});
        bad.push_back({"beta_schedule", "cosine", "beta_schedule"});
      }
      if (kind == "linear" || kind == "scaled_linear") {
        for (const char* v : {"0", "-0.001", "nan", "inf"})
          bad.push_back({"beta_start", v, "beta_start"});
        for (const char* v : {"1.5", "-inf", "1e999"}) bad.push_back({"beta_end", v, "beta_end"});
      }
      for (const char* v : {"0;0.5", "0.1;1.5", "0.1;nan", "0.2", "0.1;-0.1;0.2"})
        bad.push_back({"trained_betas", v, "trained_betas"});
      for (const char* v : {"1", "-0.1", "nan"})
        bad.push_back({"terminal_alphas_cumprod", v, "terminal_alphas_cumprod"});
      bad.push_back({"precision", "float16", "precision"});
      bad.push_back({"rescale_betas_zero_snr", "maybe", "rescale_betas_zero_snr"});
    } else if (s.name == "vp") {
      for (const char* v : {"-0.1", "nan"}) bad.push_back({"beta_min", v, "beta_min"});
      for (const char* v : {"0", "-1", "inf"}) bad.push_back({"beta_max", v, "beta_max"});
      for (const char* v : {"0", "1", "-0.5", "nan"}) bad.push_back({"t_min", v, "t_min"});
    } else if (s.name == "flow") {
      for (const char* v : {"0", "-1", "inf"}) bad.push_back({"t_scale", v, "t_scale"});
      for (const char* v : {"0", "1", "nan"}) bad.push_back({"sigma_min", v, "sigma_min"});
      for (const char* v : {"0", "-2", "inf"}) bad.push_back({"shift", v, "shift"});
      for (const char* v : {"1", "-0.1"}) bad.push_back({"shift_terminal", v, "shift_terminal"});
      bad.push_back({"time_shift_type", "cubic", "time_shift_type"});
      bad.push_back({"use_dynamic_shifting", "maybe", "use_dynamic_shifting"});
    } else {
      for (const char* v : {"0", "-1", "nan"}) bad.push_back({"sigma_min", v, "sigma_min"});
      for (const char* v : {"0.0001", "-80", "inf"}) bad.push_back({"sigma_max", v, "sigma_max"});
      for (const char* v : {"0", "-0.5"}) bad.push_back({"sigma_data", v, "sigma_data"});
    }
    const Bad& b = r_.pick(bad);
    if (b.key == "trained_betas") {
      s.options.clear();
      s.set("trained_betas", b.raw);
      // The message names the bad entry (or the count for a single value).
      c_.fault("schedule trained_betas=" + b.raw, {"trained_betas"});
      return;
    }
    if (b.key == "beta_start" ||
        b.key == "beta_end") {  // both set, so only the injected one is off
      if (!s.has("beta_start")) s.set("beta_start", "0.0001");
      if (!s.has("beta_end")) s.set("beta_end", "0.02");
    }
    if (b.key == "beta_max" && b.raw != "inf") s.set("beta_min", "0");
    if (b.key == "sigma_max" && b.raw == "0.0001") s.set("sigma_min", "0.002");
    s.set(b.key, b.raw);
    if (b.key == "bogus_option") {
      c_.fault("schedule option bogus_option", {"'bogus_option'"});
    } else {
      c_.fault_option("schedule " + b.key + "=" + b.raw, b.key, b.raw);
    }
  }

  // --- steps, spacing, explicit grid
  // --------------------------------------------------------------
  std::vector<double> descending_times(int64_t n) {
    // n distinct model times inside the schedule's range, noisiest first.
    std::vector<double> ts;
    const double lo = info_.s->t_min(), hi = info_.s->t_max();
    if (info_.discrete) {
      std::vector<int64_t> all;
      for (int64_t t = static_cast<int64_t>(lo); t <= static_cast<int64_t>(hi); ++t)
        all.push_back(t);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = r_.integer(i, static_cast<int64_t>(all.size()) - 1);
        std::swap(all[i], all[j]);
      }
      for (int64_t i = 0; i < n; ++i) ts.push_back(static_cast<double>(all[i]));
    } else {
      for (int64_t i = 0; i < n; ++i)
        ts.push_back(lo + (hi - lo) * (static_cast<double>(i) + r_.real(0.05, 0.95)) / n);
    }
    std::sort(ts.rbegin(), ts.rend());
    return ts;
  }

  std::vector<double> descending_sigmas(int64_t count, bool final_zero) {
    std::vector<double> sg;
    const double hi = std::isfinite(info_.sigma_hi) ? info_.sigma_hi : 100.0;
    const double lo = std::max(info_.sigma_lo, 1e-3);
    for (int64_t i = 0; i < count; ++i)
      sg.push_back(std::exp(std::log(hi) +
                            (std::log(lo) - std::log(hi)) * i / std::max<int64_t>(count - 1, 1)));
    if (final_zero) sg.back() = 0.0;
    return sg;
  }

  static std::string join_list(const std::vector<double>& v) {
    std::string s;
    for (double x : v) s += (s.empty() ? "" : ";") + num(x);
    return s;
  }

  void steps_and_grid() {
    c_.num_steps = r_.integer(1, 6);
    Spec& sp = c_.spacing;
    const double u = r_.real(0, 1);
    if (u < 0.08) {
      c_.use_grid = true;
      explicit_grid();
      return;
    }
    if (u < 0.18) {
      sp.name = "";  // default spacing
    } else {
      auto names = Registry<TimestepSpacing>::get().names();
      sp.name = r_.pick(names);
    }
    const int64_t n = c_.num_steps;
    const std::string key =
        sp.name.empty() ? "" : Registry<TimestepSpacing>::get().resolve(sp.name, {}).first;
    bool discrete_only = false;
    if (key == "linspace") {
      if (r_.chance(0.3)) sp.set("round", r_.chance(0.5) ? "true" : "false");
      if (r_.chance(0.3)) sp.set("include_t_min", r_.chance(0.5) ? "true" : "false");
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
    } else if (key == "leading" || key == "trailing") {
      discrete_only = true;
      if (key == "leading" && info_.discrete) {
        const bool incl = !r_.chance(0.3);
        if (!incl) sp.set("include_t_min", "false");
        const int64_t slots = incl ? n : n + 1;
        const int64_t top = (slots - 1) * (info_.T / slots);  // largest timestep before the offset
        if (r_.chance(0.4))
          sp.set("steps_offset", std::to_string(r_.integer(0, info_.T - 1 - top)));
      }
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
    } else if (key == "karras" || key == "exponential" || key == "beta") {
      if (key == "karras" && r_.chance(0.4)) sp.set("rho", num(r_.real(0.5, 10)));
      if (key == "beta" && r_.chance(0.4)) sp.set("alpha", num(r_.real(0.3, 3)));
      if (key == "beta" && r_.chance(0.4)) sp.set("beta", num(r_.real(0.3, 3)));
      if (r_.chance(0.3)) {
        sp.set("sigma_min", num(r_.log_real(1e-3, 0.1)));
        sp.set("sigma_max", num(r_.log_real(1, 100)));
      }
      if (r_.chance(0.3)) {
        sp.set("round_t", r_.chance(0.5) ? "true" : "false");
      } else if (r_.chance(0.2)) {
        sp.set("trunc_t", "true");
        c_.may_fail.push_back("strictly decreasing");  // truncated times can repeat too
      }
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
      if (r_.chance(0.2)) {
        // The range of another spacing's timesteps (diffusers' Euler family).
        const bool coarse = info_.discrete && 2 * n <= info_.T;
        sp.set("range", coarse ? r_.pick<std::string>({"linspace", "leading", "trailing"})
                               : std::string("linspace"));
      }
    } else if (key == "normal" || key == "simple") {
      discrete_only = true;  // the A1111 / ComfyUI table schedulers (sgm_uniform = normal:sgm=true)
      if (key == "normal" && r_.chance(0.3)) sp.set("round_t", r_.chance(0.5) ? "true" : "false");
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
      // Short tables: strides and rounded times can repeat a training step.
      c_.may_fail.push_back("strictly decreasing");
      if (key == "simple" && info_.discrete && n > info_.T)
        c_.fault("simple spacing with more steps than training steps", {std::to_string(n)});
    } else if (key == "ddim_uniform") {
      discrete_only = true;  // ComfyUI's step counts differ from n for most n
      if (info_.discrete && DdimUniformSpacing::comfy_steps(info_.T, n) != n)
        c_.fault("ddim_uniform step count", {"ask for"});
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
      c_.may_fail.push_back("strictly decreasing");
    } else if (key == "lcm") {
      discrete_only = true;  // LCM / TCD: n of original_steps training steps (0: of all of them)
      if (info_.discrete) {
        const bool all = n > info_.T || r_.chance(0.3);
        sp.set("original_steps", all ? "0" : std::to_string(r_.integer(n, info_.T)));
        if (n > info_.T)
          c_.fault("lcm spacing with more steps than training steps",
                   {"num_steps=" + std::to_string(n)});
      }
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
      c_.may_fail.push_back("strictly decreasing");  // its last time can be t_min itself
    } else if (key == "log_linear") {
      discrete_only = true;  // diffusers' interpolation_type=log_linear under a timestep spacing
      if (info_.discrete && 2 * n <= info_.T && r_.chance(0.5))
        sp.set("spacing", r_.pick<std::string>({"linspace", "leading", "trailing"}));
      if (info_.discrete && n > info_.T)
        c_.fault("log_linear with more steps than training steps", {std::to_string(n)});
    } else if (key == "kl_optimal") {
      if (r_.chance(0.3)) {
        sp.set("sigma_min", num(r_.log_real(1e-3, 0.1)));
        sp.set("sigma_max", num(r_.log_real(1, 100)));
      }
      if (r_.chance(0.3)) sp.set("round_t", r_.chance(0.5) ? "true" : "false");
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
    } else if (key == "align_your_steps") {
      if (r_.chance(0.5)) sp.set("model", r_.pick<std::string>({"sd15", "sdxl", "svd"}));
      if (r_.chance(0.2)) sp.set("sigmas", join_list(descending_sigmas(r_.integer(2, 8), false)));
      const bool a1111 = r_.chance(0.3);
      if (a1111) sp.set("convention", "a1111");
      if (!a1111 && r_.chance(0.3)) sp.set("denoise", num(r_.real(0.05, 1)));
      if (r_.chance(0.3)) sp.set("round_t", r_.chance(0.5) ? "true" : "false");
    } else if (key == "sigmas") {
      sp.set("sigmas", join_list(descending_sigmas(n + 1, !r_.chance(0.3))));
      if (r_.chance(0.3)) sp.set("round_t", r_.chance(0.5) ? "true" : "false");
    } else if (key == "timesteps") {
      sp.set("timesteps", join_list(descending_times(n)));
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
    } else if (key == "flow_match") {
      const bool dpm = r_.chance(0.3);
      if (dpm) sp.set("rule", "dpm_solver");
      if (!dpm && r_.chance(0.3))
        sp.set("sigmas", r_.pick<std::string>({"shifted", "karras", "exponential", "beta"}));
      if (r_.chance(0.2)) sp.set("rho", num(r_.real(0.5, 10)));
      if (r_.chance(0.2)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
      if (c_.schedule.name != "flow") {
        c_.fault("flow_match spacing on a non-flow schedule", {"needs the flow schedule"});
      } else if (dpm && (c_.schedule.get("shift_terminal") != "" ||
                         c_.schedule.get("time_shift_type") == "linear")) {
        c_.fault("flow_match rule=dpm_solver with shift_terminal or the linear shift",
                 {"rule=dpm_solver"});
      }
      // Truncated integer model times can repeat on short t_scale ranges.
      if (dpm) c_.may_fail.push_back("strictly decreasing");
    }
    // shift_terminal stretches a grid whose last sigma is below 1: one step has only sigma = 1.
    if ((key == "flow_match" || key.empty()) && c_.schedule.name == "flow" &&
        c_.schedule.get("shift_terminal") != "" && n == 1 && c_.spacing.get("rule") != "dpm_solver")
      c_.fault("flow shift_terminal with one step", {"needs at least 2 steps"});
    // Rounded sigma grids can repeat a timestep on short discrete schedules.
    if (sp.get("round_t") == "true") c_.may_fail.push_back("strictly decreasing");
    if (key == "align_your_steps" && sp.has("denoise")) {
      const double d = std::stod(sp.get("denoise"));
      if (std::nearbyint(static_cast<double>(n) * d) == 0)
        c_.fault("align_your_steps denoise=" + sp.get("denoise") + " leaves no step of " +
                     std::to_string(n),
                 {"denoise"});
    }
    if (discrete_only && !info_.discrete)
      c_.fault(key + " spacing on a continuous schedule", {"discrete schedule"});

    // Invalid steps and spacing options.
    if (inject(0.15)) {
      const std::string raw = r_.pick<std::string>({"0", "-1", "-7", "1000000000", "1099511627776",
                                                    "9223372036854775807", "-9223372036854775808"});
      c_.num_steps = std::stoll(raw);
      std::vector<std::string> needles{raw};
      c_.fault("num_steps=" + raw, needles);
    } else if (info_.discrete && (key == "linspace" || key == "leading" || key == "trailing") &&
               inject(0.1)) {
      c_.num_steps = info_.T + r_.integer(1, 3);
      if (key == "leading" && sp.has("steps_offset")) sp.set("steps_offset", "0");
      c_.fault("num_steps above T", {std::to_string(c_.num_steps)});
    } else if (!key.empty() && inject()) {
      spacing_fault(key);
    }
  }

  void spacing_fault(const std::string& key) {
    Spec& sp = c_.spacing;
    const int64_t n = c_.num_steps;
    std::vector<std::pair<std::string, std::string>> bad{{"bogus_option", "1"}};
    if (key == "linspace") {
      bad.push_back({"round", "2"});
      bad.push_back({"final", "max"});
      bad.push_back({"lambda_min", "nan"});
    } else if (key == "leading") {
      bad.push_back({"steps_offset", "-1"});
      if (info_.discrete) bad.push_back({"steps_offset", std::to_string(info_.T)});
    } else if (key == "karras" || key == "exponential" || key == "beta") {
      if (key == "karras")
        for (const char* v : {"0", "-2", "nan"}) bad.push_back({"rho", v});
      if (key == "beta")
        for (const char* v : {"0", "-1", "nan"})
          bad.push_back({r_.chance(0.5) ? "alpha" : "beta", v});
      for (const char* v : {"-1", "nan", "inf"}) bad.push_back({"sigma_min", v});
      bad.push_back({"sigma_max", "-3"});
      bad.push_back({"final", "none"});
      bad.push_back({"range", "nowhere"});
      bad.push_back({"range_steps_offset", "-1"});
    } else if (key == "ddim_uniform") {
      bad.push_back({"final", "none"});
    } else if (key == "lcm") {
      bad.push_back({"final", "none"});
      bad.push_back({"original_steps", "-1"});
      if (info_.discrete) bad.push_back({"original_steps", std::to_string(info_.T + 1)});
      for (const char* v : {"0", "1.5", "nan"}) bad.push_back({"strength", v});
    } else if (key == "log_linear") {
      bad.push_back({"spacing", "karras"});
      bad.push_back({"steps_offset", "-1"});
    } else if (key == "normal" || key == "simple" || key == "kl_optimal") {
      bad.push_back({"final", "none"});
      if (key == "normal") bad.push_back({"sgm", "maybe"});
      if (key == "kl_optimal") {
        for (const char* v : {"-1", "nan", "inf"}) bad.push_back({"sigma_min", v});
        bad.push_back({"sigma_max", "-3"});
      }
    } else if (key == "align_your_steps") {
      bad.push_back({"model", "sd3"});
      bad.push_back({"convention", "forge"});
      for (const char* v : {"0", "1.5", "nan", "-0.2"}) bad.push_back({"denoise", v});
      for (const char* v : {"5;6;1", "5;0;-1", "3", "5;nan;1", "5;2;2"})
        bad.push_back({"sigmas", v});
    } else if (key == "sigmas") {
      for (const char* v : {"", "3", "1;2;0", "3;-1;0", "3;nan;0", "3;3;0"})
        bad.push_back({"sigmas", v});
      bad.push_back({"sigmas#count", ""});
    } else if (key == "timesteps") {
      for (const char* v : {"", "nan"}) bad.push_back({"timesteps", v});
      bad.push_back({"timesteps#order", ""});
      bad.push_back({"timesteps#range", ""});
      bad.push_back({"timesteps#count", ""});
    } else if (key == "flow_match") {
      bad.push_back({"rule", "ddim"});
      bad.push_back({"sigmas", "gamma"});
      for (const char* v : {"0", "-1", "nan"}) bad.push_back({"rho", v});
      bad.push_back({"final", "none"});
    }
    auto [k, raw] = r_.pick(bad);
    if (k == "bogus_option") {
      sp.set(k, raw);
      c_.fault("spacing option bogus_option", {"bogus_option"});
    } else if (k == "sigmas#count") {
      sp.set("sigmas", join_list(descending_sigmas(n + 2, true)));
      c_.fault("sigmas count != num_steps + 1", {"num_steps=" + std::to_string(n)});
    } else if (k == "timesteps#order") {
      std::vector<double> ts = descending_times(std::max<int64_t>(n, 2));
      std::swap(ts[0], ts[1]);
      sp.set("timesteps", join_list(ts));
      c_.num_steps = static_cast<int64_t>(ts.size());
      c_.fault("timesteps not descending", {detail::cat("timesteps[1]=", ts[1])});
    } else if (k == "timesteps#range") {
      std::vector<double> ts = descending_times(n);
      ts[0] = info_.s->t_max() + (info_.discrete ? 1.0 : 0.5);
      sp.set("timesteps", join_list(ts));
      c_.fault("timestep above t_max", {detail::cat("timesteps[0]=", ts[0])});
    } else if (k == "timesteps#count") {
      c_.num_steps = n + 1;
      c_.fault("timesteps count != num_steps", {"num_steps=" + std::to_string(n + 1)});
    } else {
      sp.set(k, raw);
      if (k == "timesteps" || (k == "sigmas" && key != "flow_match")) {
        // List errors name the entry ("sigmas[1]=2"), the count ("got 1"), the bad token ('nan').
        c_.fault("spacing " + k + "=" + raw, {k + "[", "got 0", "got 1", "'nan'", "empty"});
      } else if (k == "steps_offset" && raw != "-1") {
        c_.fault("spacing steps_offset=" + raw, {"steps_offset=" + raw});
      } else {
        c_.fault_option("spacing " + k + "=" + raw, k, raw);
      }
    }
  }

  void explicit_grid() {
    const int64_t n = c_.num_steps;
    const auto ts = descending_times(n);
    for (double t : ts) c_.grid.push_back(info_.s->at(t));
    // The final point: the clean one, or t_min (a zero-length last step when t_min was visited).
    const bool clean = r_.chance(0.8) || ts.back() == info_.s->t_min();
    c_.grid.push_back(clean ? info_.s->clean_point() : info_.s->at(info_.s->t_min()));
    if (!inject(0.35)) return;
    grid_fault_ = true;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    switch (r_.integer(0, 5)) {
      case 0:
        c_.grid.resize(1);
        c_.grid_note = "(one point)";
        c_.fault("grid of one point", {"at least 2 points", "got 1"});
        break;
      case 1:
        if (n >= 2) {
          std::swap(c_.grid[0], c_.grid[1]);
          c_.grid_note = "(first two swapped)";
          c_.fault("grid not monotone", {detail::cat("point 1 (t=", c_.grid[1].t)});
        } else {
          c_.grid = {c_.grid[1], c_.grid[0]};
          c_.grid_note = "(reversed)";
          c_.fault("grid not monotone",
                   {detail::cat("point 1 (t=", c_.grid[1].t), "sigma = 0 but is not the last"});
        }
        break;
      case 2:
        c_.grid[0].alpha = nan;
        c_.grid_note = "(alpha NaN)";
        c_.fault("grid alpha=nan", {"alpha=nan"});
        break;
      case 3:
        c_.grid[0].sigma = -0.5;
        c_.grid_note = "(negative sigma)";
        c_.fault("grid sigma=-0.5", {"sigma=-0.5"});
        break;
      case 4:
        c_.grid.push_back(c_.grid.back());
        if (!c_.grid.back().is_clean()) {
          c_.grid.back() = info_.s->clean_point();
          c_.grid[c_.grid.size() - 2] = info_.s->clean_point();
        }
        c_.grid_note = "(clean point twice)";
        c_.fault("grid clean point not last",
                 {detail::cat("point ", c_.grid.size() - 2, " has sigma = 0")});
        break;
      default:
        c_.grid[0].t = std::numeric_limits<double>::infinity();
        c_.grid_note = "(t = inf)";
        c_.fault("grid t=inf", {"t=inf"});
        break;
    }
  }

  // --- sampler --------------------------------------------------------------------------------
  void sampler(const std::string& name) {
    Spec& s = c_.sampler;
    s.name = name;
    const auto [key, preset] = Registry<Sampler>::get().resolve(name, {});
    auto maybe = [&](double p) { return r_.chance(p); };
    if (key == "ddim") {
      if (maybe(0.5)) s.set("eta", num(r_.chance(0.3) ? 0.0 : r_.real(0, 1.5)));
      if (maybe(0.15)) {
        s.set("prev_timestep", "train_stride");
        if (!info_.discrete)
          c_.fault("ddim train_stride on a continuous schedule", {"train_stride"});
      }
    } else if (key == "ddpm") {
      if (maybe(0.5))
        s.set("variance_type",
              r_.pick<std::string>({"fixed_small", "fixed_small_log", "fixed_large"}));
      if (maybe(0.3)) s.set("diffusers_final_noise", maybe(0.5) ? "true" : "false");
    } else if (key == "dpm_solver_pp" || key == "dpm_solver_pp_sde" ||
               key == "dpm_solver_pp_singlestep") {
      const int64_t max_order = key == "dpm_solver_pp_sde" ? 2 : 3;
      if (maybe(0.5)) s.set("order", std::to_string(r_.integer(1, max_order)));
      if (maybe(0.4)) s.set("solver_type", r_.pick<std::string>({"midpoint", "heun"}));
      if (maybe(0.3)) s.set("lower_order_final", maybe(0.5) ? "true" : "false");
      if (key != "dpm_solver_pp_singlestep") {
        if (maybe(0.3)) s.set("lower_order_final_below", std::to_string(r_.integer(1, 20)));
        if (maybe(0.3)) s.set("euler_at_final", maybe(0.5) ? "true" : "false");
      }
      if (key == "dpm_solver_pp" && maybe(0.3))
        s.set("third_order", r_.pick<std::string>({"diffusers", "taylor"}));
    } else if (key == "euler" || key == "heun") {
      if (maybe(0.4)) s.set("s_churn", num(r_.chance(0.3) ? 0.0 : r_.real(0, 80)));
      if (maybe(0.3)) s.set("s_tmin", num(r_.real(0, 1)));
      if (maybe(0.3)) s.set("s_tmax", num(r_.real(1, 100)));
      if (maybe(0.3)) s.set("s_noise", num(r_.real(0, 1.5)));
      if (key == "euler" && maybe(0.3))
        s.set("churn_convention", r_.pick<std::string>({"k_diffusion", "diffusers"}));
    } else if (key == "euler_ancestral") {
      if (maybe(0.5)) s.set("eta", num(r_.real(0, 1.5)));
      if (maybe(0.3)) s.set("s_noise", num(r_.real(0, 1.5)));
    } else if (key == "plms") {
      if (maybe(0.3)) s.set("prk_warmup", maybe(0.5) ? "true" : "false");
      if (maybe(0.3)) {
        s.set("combine", r_.pick<std::string>({"eps", "v"}));
        if (s.get("combine") == "v" && !info_.s->variance_preserving())
          c_.fault("plms combine=v on a non-VP schedule", {"variance-preserving"});
      }
    } else if (key == "ipndm") {
      if (maybe(0.5)) s.set("order", std::to_string(r_.integer(1, 4)));
      if (maybe(0.3)) s.set("variable_step", maybe(0.5) ? "true" : "false");
    } else if (key == "tcd") {
      if (maybe(0.5)) s.set("gamma", num(r_.chance(0.2) ? 0.0 : r_.real(0, 1)));
    } else if (key == "lcm") {
      if (maybe(0.3)) s.set("boundary_condition", maybe(0.5) ? "true" : "false");
      if (maybe(0.3)) s.set("timestep_scaling", num(r_.log_real(0.1, 100)));
      if (maybe(0.3)) s.set("sigma_data", num(r_.log_real(0.1, 2)));
    } else if (key == "restart") {
      if (maybe(0.4)) s.set("restart_min", num(r_.real(0, 1)));
      if (maybe(0.4)) s.set("restart_max", num(r_.real(1.5, 20)));
      if (maybe(0.4)) s.set("restart_steps", std::to_string(r_.integer(1, 10)));
      if (maybe(0.4)) s.set("restart_times", std::to_string(r_.integer(0, 3)));
      if (maybe(0.3)) s.set("s_noise", num(r_.real(0, 1.5)));
    }
    if (!inject(0.15)) return;
    std::vector<std::pair<std::string, std::string>> bad{{"bogus_option", "1"}, {"#name", ""}};
    if (key == "ddim") {
      for (const char* v : {"-0.5", "nan", "inf", "-inf", "1e999", "abc", ""})
        bad.push_back({"eta", v});
      bad.push_back({"prev_timestep", "previous"});
    } else if (key == "ddpm") {
      bad.push_back({"variance_type", "learned"});
      bad.push_back({"diffusers_final_noise", "maybe"});
    } else if (key == "dpm_solver_pp" || key == "dpm_solver_pp_sde" ||
               key == "dpm_solver_pp_singlestep") {
      for (const char* v : {"0", "-1", "4", "2.5", "x", "99999999999999999999"})
        bad.push_back({"order", v});
      if (key == "dpm_solver_pp_sde") bad.push_back({"order", "3"});
      bad.push_back({"solver_type", "rk4"});
      if (key != "dpm_solver_pp_singlestep")
        for (const char* v : {"0", "-3"}) bad.push_back({"lower_order_final_below", v});
      bad.push_back({"lower_order_final", "2"});
      if (key == "dpm_solver_pp") bad.push_back({"third_order", "exact"});
      if (key == "dpm_solver_pp_singlestep") bad.push_back({"predict_x0", "maybe"});
    } else if (key == "euler" || key == "heun") {
      for (const char* v : {"-1", "nan", "inf"}) bad.push_back({"s_churn", v});
      for (const char* v : {"-0.5", "nan"}) bad.push_back({"s_tmin", v});
      bad.push_back({"s_tmax", "-1"});
      for (const char* v : {"-0.5", "inf", "nan"}) bad.push_back({"s_noise", v});
      if (key == "euler") bad.push_back({"churn_convention", "edm"});
    } else if (key == "euler_ancestral") {
      for (const char* v : {"-1", "nan", "inf"}) bad.push_back({"eta", v});
      for (const char* v : {"-0.1", "inf"}) bad.push_back({"s_noise", v});
    } else if (key == "plms") {
      bad.push_back({"prk_warmup", "sometimes"});
      bad.push_back({"combine", "x0"});
    } else if (key == "ipndm") {
      for (const char* v : {"0", "5", "-1"}) bad.push_back({"order", v});
      bad.push_back({"variable_step", "2"});
    } else if (key == "tcd") {
      for (const char* v : {"-0.1", "1.5", "nan", "inf"}) bad.push_back({"gamma", v});
    } else if (key == "lcm") {
      for (const char* v : {"0", "-1", "nan", "inf"}) bad.push_back({"timestep_scaling", v});
      for (const char* v : {"0", "nan"}) bad.push_back({"sigma_data", v});
      bad.push_back({"boundary_condition", "maybe"});
    } else if (key == "restart") {
      for (const char* v : {"-1", "nan"}) bad.push_back({"restart_min", v});
      bad.push_back({"restart_max", "inf"});
      for (const char* v : {"0", "-2"}) bad.push_back({"restart_steps", v});
      bad.push_back({"restart_times", "-1"});
      bad.push_back({"rho", "0"});
      for (const char* v : {"-0.5", "nan"}) bad.push_back({"s_noise", v});
    }
    const auto [k, raw] = r_.pick(bad);
    if (k == "#name") {
      s.name = name + "x";
      c_.fault("unknown sampler '" + s.name + "'", {"'" + s.name + "'"});
      return;
    }
    if (k == "s_tmax") s.set("s_tmin", "0");
    s.set(k, raw);
    if (k == "bogus_option") {
      c_.fault("sampler option bogus_option", {"'bogus_option'"});
    } else if (raw.empty()) {
      c_.fault("sampler " + k + "=''", {k + "=''"});
    } else {
      c_.fault_option("sampler " + k + "=" + raw, k, raw);
    }
  }

  // --- corrections ----------------------------------------------------------------------------
  void corrections() {
    const int64_t count = r_.pick<int64_t>({0, 0, 1, 1, 1, 2});
    const auto names = Registry<Correction>::get().names();
    std::vector<std::string> keys;
    for (const auto& k : Registry<Correction>::get().keys()) keys.push_back(k);
    for (int64_t i = 0; i < count; ++i) {
      // Half the time by key (so every key is used often), half by any name (aliases, presets).
      Spec sp;
      sp.name = r_.chance(0.5) ? r_.pick(keys) : r_.pick(names);
      // schedule_optimisation replaces the grid, so an invalid explicit grid would never be seen.
      if (grid_fault_ &&
          Registry<Correction>::get().resolve(sp.name, {}).first == "schedule_optimisation")
        sp.name = "epsilon_scaling";
      correction_options(sp);
      c_.corrections.push_back(sp);
    }
  }

  /// The steps the run will take (align_your_steps' denoise < 1 drops the first ones).
  int64_t run_steps() const {
    if (c_.use_grid) return static_cast<int64_t>(c_.grid.size()) - 1;
    const auto& sp = c_.spacing;
    if (!sp.name.empty() &&
        Registry<TimestepSpacing>::get().resolve(sp.name, {}).first == "align_your_steps" &&
        sp.has("denoise") && sp.get("convention") != "a1111")
      return static_cast<int64_t>(
          std::nearbyint(static_cast<double>(c_.num_steps) * std::stod(sp.get("denoise"))));
    return c_.num_steps;
  }

  void correction_options(Spec& sp) {
    const auto [key, preset] = Registry<Correction>::get().resolve(sp.name, {});
    const bool bad = inject(0.15);
    if (key == "time_shift") {
      Config merged = preset;
      if (r_.chance(0.6))
        sp.set("window", std::to_string(r_.pick<int64_t>({0, 2, 3, 5, 30, 1000})));
      const double span = info_.s->t_max() - info_.s->t_min();
      if (r_.chance(0.4)) sp.set("cutoff", num(r_.real(0, 0.9) * info_.s->t_max()));
      if (r_.chance(0.4))
        sp.set("variant", r_.pick<std::string>({"coupled", "target_shift", "adm"}));
      if (r_.chance(0.3))
        sp.set("variance_model", r_.pick<std::string>({"official", "data_aware"}));
      if (r_.chance(0.3)) sp.set("data_var", num(r_.real(0, 2)));
      if (r_.chance(0.3)) sp.set("batch_variance", r_.pick<std::string>({"mean", "pooled"}));
      if (r_.chance(0.2)) sp.set("resolution", num(span * r_.log_real(1e-4, 0.1)));
      for (const auto& kv : sp.options) merged[kv.first] = kv.second;
      const int64_t window = merged.count("window") ? std::stoll(merged["window"]) : 0;
      if (window >= 2) time_shift_window_ = true;
      if (window >= 2 && merged.count("batch_variance") && merged["batch_variance"] == "pooled")
        pooled_ = true;
      // A spec must name the window (its default 0 is the identity).
      if (!merged.count("window") && !bad) c_.fault("time_shift without window", {"needs window"});
      if (!bad) return;
      std::vector<std::pair<std::string, std::string>> b{
          {"window", "-1"},       {"window", "1000000000"},
          {"cutoff", "-1"},       {"cutoff", "nan"},
          {"variant", "ddim"},    {"variance_model", "x"},
          {"data_var", "-1"},     {"batch_variance", "max"},
          {"resolution", "-0.5"}, {"resolution", "inf"},
          {"bogus", "1"}};
      const auto [k, raw] = r_.pick(b);
      sp.set(k, raw);
      if (k == "bogus") {
        c_.fault("time_shift option bogus", {"'bogus'"});
      } else {
        c_.fault_option("time_shift " + k + "=" + raw, k, raw);
      }
    } else if (key == "epsilon_scaling") {
      if (r_.chance(0.5)) sp.set("b", num(r_.real(0.8, 1.2)));
      if (r_.chance(0.4)) sp.set("k", num(r_.real(-0.01, 0.01)));
      if (r_.chance(0.3)) sp.set("direction", r_.pick<std::string>({"from_last", "from_first"}));
      // A spec must name b or k (b = 1, k = 0 is the identity).
      if (!bad && !preset.count("b") && !preset.count("k") && !sp.has("b") && !sp.has("k"))
        c_.fault("epsilon_scaling without b", {"needs b"});
      if (!bad) return;
      std::vector<std::pair<std::string, std::string>> b{
          {"b", "0"},   {"b", "-1"},   {"b", "nan"},        {"b", "inf"},
          {"k", "nan"}, {"k", "-inf"}, {"direction", "up"}, {"k#negative", ""}};
      const auto [k, raw] = r_.pick(b);
      if (k == "k#negative") {
        if (run_steps() < 2) return;  // lambda = b at the only step: valid
        sp.set("b", "1");
        sp.set("k", "-1");
        c_.fault("epsilon_scaling lambda <= 0", {"lambda = k*i + b"});
        return;
      }
      sp.set(k, raw);
      c_.fault_option("epsilon_scaling " + k + "=" + raw, k, raw);
    } else if (key == "condition_annealing") {
      const double tau1 = r_.real(0, 0.8);
      if (r_.chance(0.4)) {
        sp.set("tau1", num(tau1));
        sp.set("tau2", num(r_.real(tau1 + 0.01, 1.0)));
      }
      if (r_.chance(0.4)) sp.set("noise_scale", num(r_.chance(0.2) ? 0.0 : r_.real(0, 0.5)));
      if (r_.chance(0.3)) sp.set("psi", num(r_.real(0, 1)));
      if (r_.chance(0.3)) sp.set("rescale_over", r_.pick<std::string>({"sample", "batch"}));
      if (r_.chance(0.2)) sp.set("time", r_.pick<std::string>({"step", "model"}));
      if (r_.chance(0.3)) sp.set("apply_to", r_.pick<std::string>({"cond", "both", "uncond"}));
      const bool active_on_cond = sp.get("noise_scale") != "0" && sp.get("apply_to") != "uncond" &&
                                  sp.get("time") != "model";
      if (active_on_cond) cads_active_ = true;
      cads_any_ = true;
      if (!bad) return;
      std::vector<std::pair<std::string, std::string>> b{{"tau1", "-0.1"},
                                                         {"tau1", "nan"},
                                                         {"tau2#le", ""},
                                                         {"noise_scale", "-0.25"},
                                                         {"psi", "1.5"},
                                                         {"rescale_over", "pixel"},
                                                         {"time", "wall"},
                                                         {"t_max", "-1"},
                                                         {"apply_to", "all"},
                                                         {"value", "false"},
                                                         {"extra_keys#missing", ""}};
      const auto [k, raw] = r_.pick(b);
      if (k == "tau2#le") {
        sp.set("tau1", "0.7");
        sp.set("tau2", "0.5");
        c_.fault("condition_annealing tau2 <= tau1", {"tau2 = 0.5"});
      } else if (k == "value") {
        sp.set("value", "false");
        c_.fault("condition_annealing value=false without extra_keys", {"value=false"});
      } else if (k == "extra_keys#missing") {
        if (!active_on_cond) return;
        sp.set("extra_keys", "clip_pooled");
        cads_needs_extra_ = "clip_pooled";
      } else {
        sp.set(k, raw);
        c_.fault_option("condition_annealing " + k + "=" + raw, k, raw);
      }
    } else if (key == "schedule_optimisation") {
      if (r_.chance(0.85)) {
        sp.set("sigmas", join_list(descending_sigmas(r_.integer(2, 11), false)));
        replaces_grid_ = true;
      }
      if (r_.chance(0.3)) sp.set("final", r_.pick<std::string>({"zero", "min"}));
      if (r_.chance(0.3)) sp.set("round_t", r_.chance(0.5) ? "true" : "false");
      if (sp.get("round_t") == "true") c_.may_fail.push_back("strictly decreasing");
      if (!bad) return;
      const std::string raw =
          r_.pick<std::string>({"5;6;1", "5;0", "5;-1", "7", "5;nan;1", "4;4;1"});
      sp.set("sigmas", raw);
      c_.fault("schedule_optimisation sigmas=" + raw, {"sigmas[", "got 1", "'nan'"});
    } else if (bad) {
      sp.set("bogus", "1");
      c_.fault("correction option bogus", {"'bogus'"});
    }
    if (bad && r_.chance(0.2)) {
      sp = Spec{};
      sp.name = "time_shfit";
      c_.fault("unknown correction 'time_shfit'", {"'time_shfit'"});
    }
  }

  // --- noise ----------------------------------------------------------------------------------
  void noise() {
    const int64_t dims = r_.integer(1, 5);
    c_.shape.push_back(r_.integer(1, 4));
    for (int64_t d = 1; d < dims; ++d) c_.shape.push_back(r_.integer(1, dims >= 4 ? 2 : 3));
    c_.dtype = r_.pick<at::ScalarType>(
        {at::kFloat, at::kFloat, at::kDouble, at::kDouble, at::kHalf, at::kBFloat16});
    c_.noise_noncontiguous = dims >= 2 && r_.chance(0.2);
    if (!inject(0.08)) return;
    switch (r_.integer(0, 4)) {
      case 0: {
        const at::ScalarType t =
            r_.pick<at::ScalarType>({at::kLong, at::kInt, at::kBool, at::kComplexFloat});
        c_.dtype = t;
        c_.fault(detail::cat("noise dtype ", t), {"floating point", detail::cat(t)});
        break;
      }
      case 1:
        c_.shape[0] = 0;
        c_.fault("noise batch 0", {shape_str(c_.shape)});
        break;
      case 2:
        c_.shape.push_back(0);
        c_.fault("noise with an empty dimension", {shape_str(c_.shape)});
        break;
      case 3:
        c_.shape.clear();
        c_.fault("0-d noise", {"batch"});
        break;
      default:
        c_.noise_undefined = true;
        c_.fault("undefined noise", {"undefined"});
        break;
    }
  }
  bool noise_ok() const {
    return c_.faults.empty() ||
           std::none_of(c_.faults.begin(), c_.faults.end(), [](const Fault& f) {
             return f.label.rfind("noise", 0) == 0 || f.label.rfind("0-d", 0) == 0 ||
                    f.label.rfind("undefined", 0) == 0;
           });
  }
  /// The batch size for conditioning tensors (1 when the noise itself has none).
  int64_t batch() const { return c_.shape.empty() ? 1 : std::max<int64_t>(c_.shape[0], 1); }
  int64_t per_sample() const {
    int64_t n = 1;
    for (size_t i = 1; i < c_.shape.size(); ++i) n *= c_.shape[i];
    return n;
  }

  // --- conditioning and guidance ---------------------------------------------------------------
  void conditioning_and_guidance() {
    const int64_t B = batch();
    const bool guided = r_.chance(0.35);
    double scale = 7.5;
    if (guided) {
      Spec& g = c_.guidance;
      g.name = r_.pick(Registry<Guidance>::get().names());
      if (g.name == "cfg") {
        if (r_.chance(0.8)) {
          scale = r_.chance(0.15) ? 1.0 : r_.real(0, 10);
          g.set("scale", num(scale));
        }
        if (r_.chance(0.3)) g.set("guidance_rescale", num(r_.real(0, 1)));
      }
    }
    // Conditioning: usually an embedding [B, D]; sometimes class labels [B]; CADS needs an
    // embedding.
    const bool want_cond = cads_any_ || r_.chance(0.5);
    if (want_cond) {
      if (!cads_any_ && r_.chance(0.3)) {
        c_.cond.kind = CondKind::kLong;
        c_.cond.shape = {B};
      } else {
        c_.cond.kind = CondKind::kFloat;
        c_.cond.shape = {B, r_.integer(1, 4)};
      }
      if (!cads_needs_extra_.empty() || r_.chance(0.2)) c_.cond.extra["pooled"] = {B, 2};
    }
    if (guided) c_.uncond = c_.cond;  // the null conditioning has the same layout
    const bool uses_uncond = guided && scale != 1.0;
    const double rescale =
        c_.guidance.has("guidance_rescale") ? std::stod(c_.guidance.get("guidance_rescale")) : 0.0;
    if (uses_uncond && rescale > 0 && (c_.shape.size() < 2 || per_sample() < 2) && noise_ok())
      c_.fault("guidance_rescale with one entry per sample",
               {"guidance_rescale needs at least 2 elements"});
    if (!cads_needs_extra_.empty())
      c_.fault("condition_annealing extra_keys=" + cads_needs_extra_ + " missing",
               {"'" + cads_needs_extra_ + "'"});
    if (time_shift_window_ && ((pooled_ && B * per_sample() < 2) || (!pooled_ && per_sample() < 2)))
      c_.may_fail.push_back("needs more than one entry");

    if (inject(0.15)) {
      std::vector<std::string> options{"cond batch", "guidance name", "guidance scale"};
      if (guided) options.push_back("uncond batch");
      if (uses_uncond && c_.cond.kind != CondKind::kNone) {
        options.push_back("uncond missing");
        options.push_back("uncond shape");
        options.push_back("uncond extra missing");
      }
      if (cads_active_) options.push_back("cads without cond");
      if (cads_active_) options.push_back("cads integer cond");
      const std::string what = r_.pick(options);
      if (what == "cond batch") {
        if (c_.cond.kind == CondKind::kNone) {
          c_.cond.kind = CondKind::kFloat;
          c_.cond.shape = {B, 3};
          if (guided) c_.uncond = c_.cond;
        }
        c_.cond.shape[0] = B == 1 ? 2 : (r_.chance(0.5) ? B - 1 : B + 1);
        if (r_.chance(0.3))
          c_.cond.shape[0] = 1;  // a broadcast attempt is still one row for B samples
        if (c_.cond.shape[0] == B) c_.cond.shape[0] = B + 1;
        c_.fault("cond batch != noise batch", {shape_str(c_.cond.shape)});
      } else if (what == "uncond batch") {
        if (c_.uncond.kind == CondKind::kNone) {
          c_.uncond.kind = CondKind::kFloat;
          c_.uncond.shape = {B, 2};
          c_.cond = c_.uncond;
        }
        c_.uncond.shape[0] = B + 1;
        c_.fault("uncond batch != noise batch", {shape_str(c_.uncond.shape)});
      } else if (what == "uncond missing") {
        c_.uncond.kind = CondKind::kNone;
        c_.uncond.shape.clear();
        c_.fault("guidance without an unconditional value", {"unconditional"});
      } else if (what == "uncond shape") {
        c_.uncond.shape.back() += 1;
        c_.uncond.kind = CondKind::kFloat;
        if (c_.uncond.shape.size() == 1) c_.uncond.shape.push_back(2);
        c_.fault("uncond shape != cond shape", {shape_str(c_.uncond.shape)});
      } else if (what == "uncond extra missing") {
        c_.cond.extra["pooled"] = {B, 2};
        c_.uncond.extra.clear();
        c_.fault("extra missing from the unconditional branch", {"'pooled'"});
      } else if (what == "guidance name") {
        c_.guidance = Spec{};
        c_.guidance.name = "cgf";
        c_.fault("unknown guidance 'cgf'", {"'cgf'"});
      } else if (what == "guidance scale") {
        c_.guidance = Spec{};
        c_.guidance.name = "cfg";
        const auto [k, raw] =
            r_.pick<std::pair<std::string, std::string>>({{"scale", "nan"},
                                                          {"scale", "inf"},
                                                          {"guidance_rescale", "1.5"},
                                                          {"guidance_rescale", "-0.1"},
                                                          {"scale", "x"}});
        c_.guidance.set(k, raw);
        c_.fault_option("cfg " + k + "=" + raw, k, raw);
      } else if (what == "cads without cond") {
        c_.cond = CondSpec{};
        if (c_.uncond.kind != CondKind::kNone) c_.uncond = CondSpec{};
        c_.fault("condition_annealing without a condition", {"Conditioning.value"});
      } else {
        c_.cond.kind = CondKind::kLong;
        c_.cond.shape = {B};
        if (guided) c_.uncond = c_.cond;
        c_.fault("condition_annealing on an integer label", {"Long"});
      }
    }
  }

  // --- denoiser and model --------------------------------------------------------------------
  void denoiser() {
    DenoiserOptions& d = c_.denoiser;
    d.prediction_type = r_.pick<Parameterization>(
        {Parameterization::kEpsilon, Parameterization::kEpsilon, Parameterization::kVelocity,
         Parameterization::kSample, Parameterization::kFlow});
    if (info_.zero_snr && d.prediction_type == Parameterization::kEpsilon)
      c_.may_fail.push_back("alpha = 0");
    if (r_.chance(0.2)) {
      d.clip_sample = true;
      d.clip_sample_range = r_.real(0.5, 3);
    }
    if (r_.chance(0.15)) {
      d.thresholding = true;
      d.dynamic_thresholding_ratio = r_.real(0.5, 1);
      d.sample_max_value = r_.real(1, 3);
    }
    if (!inject(0.06)) return;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    switch (r_.integer(0, 4)) {
      case 0:
        d.clip_sample_range = r_.pick<double>({0.0, -1.0, nan});
        c_.fault("clip_sample_range", {"clip_sample_range"});
        break;
      case 1:
        d.dynamic_thresholding_ratio = r_.pick<double>({0.0, 1.5, nan});
        c_.fault("dynamic_thresholding_ratio", {"dynamic_thresholding_ratio"});
        break;
      default:
        d.thresholding = true;
        d.sample_max_value = r_.pick<double>({0.0, -2.0, nan});
        c_.fault("sample_max_value", {"sample_max_value"});
        break;
    }
  }

  void model() {
    c_.model_gain = r_.real(0.3, 2.0);
    c_.fault_at = r_.real(0, 0.999);
    const double u = clean_ ? r_.real(0, 0.74) : r_.real(0, 1);
    if (u < 0.62) return;
    if (u < 0.68) {
      c_.model = ModelKind::kZeros;
    } else if (u < 0.74) {
      c_.model = ModelKind::kWrongDtype;
      c_.model_dtype = r_.pick<at::ScalarType>({at::kDouble, at::kFloat, at::kHalf, at::kBFloat16});
    } else if (u < 0.80) {
      c_.model = ModelKind::kNaN;
      c_.fault("model returns NaN", {"NaN/Inf"});
    } else if (u < 0.85) {
      c_.model = ModelKind::kInf;
      c_.fault("model returns Inf", {"NaN/Inf"});
    } else if (u < 0.91) {
      c_.model = ModelKind::kWrongShape;
      c_.wrong_shape = c_.shape;
      if (c_.wrong_shape.empty()) c_.wrong_shape = {1};
      // Never [2B, ...], the shape of a guided call's input.
      switch (r_.integer(0, 2)) {
        case 0:
          if (c_.wrong_shape.size() > 1) {
            c_.wrong_shape.back() += 1;
          } else {
            c_.wrong_shape.push_back(2);
          }
          break;
        case 1:
          c_.wrong_shape.push_back(1);
          break;
        default:
          if (c_.wrong_shape.size() > 1) {
            c_.wrong_shape.pop_back();
          } else {
            c_.wrong_shape.push_back(3);
          }
      }
      c_.fault("model returns the wrong shape", {"returned shape " + shape_str(c_.wrong_shape)});
    } else if (u < 0.94) {
      c_.model = ModelKind::kUndefined;
      c_.fault("model returns an undefined tensor", {"undefined tensor"});
    } else {
      c_.model = ModelKind::kThrow;
      c_.fault("model throws", {"sweep model failure #" + std::to_string(c_.index)}, /*user=*/true);
    }
  }

  Rng r_;
  Case c_;
  ScheduleInfo info_;
  bool clean_ = false, grid_fault_ = false, time_shift_window_ = false, pooled_ = false,
       cads_active_ = false, cads_any_ = false, replaces_grid_ = false;
  std::string cads_needs_extra_;
};

// ------------------------------------------------------------------------------------------------
// Running one configuration.

Tensor make_cond_tensor(const std::vector<int64_t>& shape, CondKind kind, uint64_t seed) {
  if (kind == CondKind::kLong) return at::arange(shape[0], at::kLong).remainder(10);
  return at::randn(shape, detail::cpu_generator(seed), at::TensorOptions().dtype(at::kFloat));
}

Conditioning make_conditioning(const CondSpec& c, uint64_t seed) {
  Conditioning out;
  if (c.kind != CondKind::kNone) out.value = make_cond_tensor(c.shape, c.kind, seed);
  for (const auto& kv : c.extra)
    out.extra[kv.first] = make_cond_tensor(kv.second, CondKind::kFloat, seed + 1);
  return out;
}

/// The exact denoiser of data ~ N(0, 0.25 I) under `schedule`, in the requested parameterisation,
/// plus a small conditioning term; faulty kinds misbehave from call `fault_call` on.
Network make_network(const Case& c, std::shared_ptr<const NoiseSchedule> schedule,
                     int64_t fault_call) {
  auto calls = std::make_shared<int64_t>(0);
  return [&c, schedule, fault_call, calls](const Tensor& x, const Tensor& t,
                                           const Conditioning& cond) -> Tensor {
    const int64_t call = (*calls)++;
    const bool bad = call >= fault_call;
    if (bad && c.model == ModelKind::kThrow)
      throw std::runtime_error("sweep model failure #" + std::to_string(c.index));
    if (bad && c.model == ModelKind::kUndefined) return Tensor();
    if (bad && c.model == ModelKind::kWrongShape) return at::zeros(c.wrong_shape, x.options());
    std::vector<int64_t> bshape(static_cast<size_t>(x.dim()), 1);
    bshape[0] = x.size(0);
    const Tensor td = t.to(at::kDouble);
    const Tensor a = schedule->alpha(td).reshape(bshape), s = schedule->sigma(td).reshape(bshape);
    const Tensor xd = x.to(at::kDouble);
    const double sd2 = 0.25;
    Tensor x0 = xd * (a * sd2 / (a * a * sd2 + s * s)) * c.model_gain;
    if (cond.value.defined()) {
      const Tensor v = cond.value.to(at::kDouble);
      x0 = x0 + 0.01 * v.reshape({v.size(0), -1}).mean(1).reshape(bshape);
    }
    Tensor out;
    switch (c.denoiser.prediction_type) {
      case Parameterization::kSample:
        out = x0;
        break;
      case Parameterization::kEpsilon:
        out = (xd - a * x0) / s;
        break;
      case Parameterization::kVelocity:
        out = a * (xd - a * x0) / s - s * x0;
        break;
      case Parameterization::kFlow:
        out = (xd - a * x0) / s - x0;
        break;
    }
    if (c.model == ModelKind::kZeros) out = at::zeros_like(out);
    out = out.to(c.model == ModelKind::kWrongDtype ? c.model_dtype : x.scalar_type());
    if (bad && (c.model == ModelKind::kNaN || c.model == ModelKind::kInf)) {
      out = out.clone(at::MemoryFormat::Contiguous);  // so the reshape below is a view
      out.reshape({-1})[out.numel() - 1] = c.model == ModelKind::kNaN
                                               ? std::numeric_limits<double>::quiet_NaN()
                                               : -std::numeric_limits<double>::infinity();
    }
    return out;
  };
}

enum class Outcome { kRan, kRaisedError, kRaisedUser };

/// Runs `c`; returns the outcome and sets `failure` to a message when the outcome breaks the rules.
Outcome run_case(const Case& c, std::string& failure) {
  auto fail = [&](const std::string& why) { failure = why; };
  std::string message;
  bool is_error = false;
  try {
    auto sampler = sampler_from_spec(c.sampler.str());
    std::shared_ptr<const NoiseSchedule> schedule =
        Registry<NoiseSchedule>::get().make_from_spec(c.schedule.str());
    SampleOptions o;
    o.num_steps = c.num_steps;
    if (c.use_grid) o.grid = c.grid;
    if (!c.spacing.name.empty())
      o.spacing = Registry<TimestepSpacing>::get().make_from_spec(c.spacing.str());
    for (const auto& sp : c.corrections) o.corrections.push_back(correction_from_spec(sp.str()));
    if (!c.guidance.name.empty())
      o.guidance = Registry<Guidance>::get().make_from_spec(c.guidance.str());
    o.cond = make_conditioning(c.cond, 100 + static_cast<uint64_t>(c.index));
    o.uncond = make_conditioning(c.uncond, 200 + static_cast<uint64_t>(c.index));
    o.seed = static_cast<uint64_t>(c.index);
    o.check_finite = c.check_finite;
    Tensor noise;
    if (!c.noise_undefined) {
      if (!at::isFloatingType(c.dtype)) {
        noise = at::ones(c.shape, at::TensorOptions().dtype(c.dtype));
      } else if (c.noise_noncontiguous) {
        std::vector<int64_t> rev(c.shape.rbegin(), c.shape.rend());
        std::vector<int64_t> perm;
        for (int64_t d = static_cast<int64_t>(c.shape.size()) - 1; d >= 0; --d) perm.push_back(d);
        noise = randn(rev, static_cast<uint64_t>(c.index)).permute(perm).to(c.dtype);
      } else {
        noise = c.shape.empty() ? at::scalar_tensor(0.5, at::TensorOptions().dtype(c.dtype))
                                : randn(c.shape, static_cast<uint64_t>(c.index)).to(c.dtype);
      }
    }
    // A faulty model misbehaves from this call on (every run makes at least one call per step).
    int64_t fault_call = std::numeric_limits<int64_t>::max();
    if (c.model != ModelKind::kGood && c.model != ModelKind::kZeros &&
        c.model != ModelKind::kWrongDtype) {
      const int64_t steps = static_cast<int64_t>(make_grid(*schedule, o).size()) - 1;
      fault_call = static_cast<int64_t>(c.fault_at * static_cast<double>(steps));
    }
    Denoiser denoiser(make_network(c, schedule, fault_call), c.denoiser);
    const Tensor out = sample(*sampler, denoiser, *schedule, noise, o);
    if (!c.faults.empty()) {
      fail("ran to the end although it holds invalid input");
      return Outcome::kRan;
    }
    if (!out.defined()) return fail("returned an undefined tensor"), Outcome::kRan;
    if (out.sizes() != noise.sizes())
      return fail(detail::cat("returned shape ", out.sizes(), " for noise ", noise.sizes())),
             Outcome::kRan;
    if (out.scalar_type() != noise.scalar_type())
      return fail(detail::cat("returned dtype ", out.scalar_type(), " for noise ",
                              noise.scalar_type())),
             Outcome::kRan;
    if (!at::isfinite(out).all().item<bool>())
      return fail(detail::cat("returned NaN/Inf without an error: ",
                              out.to(at::kDouble).reshape({-1}))),
             Outcome::kRan;
    return Outcome::kRan;
  } catch (const Error& e) {
    message = e.what();
    is_error = true;
  } catch (const std::exception& e) {
    message = e.what();
  }
  // It raised: the message must name one of the injected values (or a documented limitation).
  bool named = false, user = false;
  for (const auto& f : c.faults)
    if (f.named_by(message)) {
      named = true;
      user = user || f.user_exception;
    }
  for (const auto& m : c.may_fail)
    if (message.find(m) != std::string::npos) named = true;
  if (!is_error && !user) {
    fail("raised an exception that is not a diffuse::Error: " + message);
  } else if (!named) {
    fail(std::string(c.faults.empty() ? "raised on valid input: "
                                      : "raised without naming the bad value: ") +
         message);
  } else if (message.find('\n') != std::string::npos) {
    fail("the error message spans several lines: " + message);
  }
  return user && !is_error ? Outcome::kRaisedUser : Outcome::kRaisedError;
}

// ------------------------------------------------------------------------------------------------
// Watchdog: a configuration that hangs or allocates without bound aborts the test, printed.

int64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

class Watchdog {
 public:
  Watchdog(double seconds, int64_t max_bytes)
      : seconds_(seconds), max_bytes_(max_bytes), thread_([this] { loop(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void start(const std::string& description) {
    std::lock_guard<std::mutex> lock(mu_);
    description_ = description;
    started_ = std::chrono::steady_clock::now();
    running_ = true;
  }
  /// Seconds the configuration took.
  double finish() {
    std::lock_guard<std::mutex> lock(mu_);
    running_ = false;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(20));
      if (!running_) continue;
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
      const int64_t rss = resident_bytes();
      if (elapsed > seconds_ || rss > max_bytes_) {
        std::fprintf(stderr,
                     "\nbad-input sweep: %s after %.1f s (resident %.0f MiB); aborting.\n%s\n",
                     elapsed > seconds_ ? "TIMEOUT" : "MEMORY LIMIT", elapsed,
                     static_cast<double>(rss) / (1 << 20), description_.c_str());
        std::fflush(stderr);
        std::abort();
      }
    }
  }
  double seconds_;
  int64_t max_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, running_ = false;
  std::string description_;
  std::chrono::steady_clock::time_point started_;
  std::thread thread_;
};

int64_t env_int(const char* name, int64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoll(v, nullptr, 0) : dflt;
}

TEST(BadInputSweep, EveryConfigurationRunsOrNamesTheBadValue) {
  const uint64_t master =
      static_cast<uint64_t>(env_int("DIFFUSE_SWEEP_SEED", static_cast<int64_t>(kMasterSeed)));
  const int64_t count = env_int("DIFFUSE_SWEEP_CONFIGS", kDefaultConfigs);
  const int64_t only = env_int("DIFFUSE_SWEEP_CONFIG", -1);
  const bool verbose = env_int("DIFFUSE_SWEEP_VERBOSE", 0) != 0;
  // Generous: a configuration takes milliseconds; a hang or a runaway allocation does not.
  Watchdog watchdog(/*seconds=*/20.0, /*max_bytes=*/int64_t{3} << 30);
  int64_t ran = 0, raised = 0, raised_user = 0, valid = 0, failures = 0;
  std::map<std::string, int64_t> by_fault;
  double slowest = 0;
  int64_t slowest_index = -1;
  for (int64_t i = only >= 0 ? only : 0; i < (only >= 0 ? only + 1 : count); ++i) {
    const Case c = Generator(i, master).make();
    const std::string description = c.describe();
    if (verbose) std::printf("%s\n", description.c_str());
    std::string failure;
    watchdog.start(description);
    const Outcome outcome = run_case(c, failure);
    const double seconds = watchdog.finish();
    if (seconds > slowest) {
      slowest = seconds;
      slowest_index = i;
    }
    if (c.faults.empty()) ++valid;
    for (const auto& f : c.faults) ++by_fault[f.label.substr(0, f.label.find_first_of("='"))];
    if (outcome == Outcome::kRan) ++ran;
    if (outcome == Outcome::kRaisedError) ++raised;
    if (outcome == Outcome::kRaisedUser) ++raised_user;
    if (!failure.empty()) {
      ++failures;
      ADD_FAILURE() << failure << "\n" << description;
      if (failures >= 25) break;
    }
  }
  std::printf(
      "bad-input sweep (seed %#llx): %lld configurations (%lld without injected faults): %lld ran "
      "to a finite "
      "result, %lld raised diffuse::Error naming the bad value, %lld passed the model's own "
      "exception on; "
      "slowest #%lld %.3f s\n",
      static_cast<unsigned long long>(master), static_cast<long long>(ran + raised + raised_user),
      static_cast<long long>(valid), static_cast<long long>(ran), static_cast<long long>(raised),
      static_cast<long long>(raised_user), static_cast<long long>(slowest_index), slowest);
  if (verbose)
    for (const auto& kv : by_fault)
      std::printf("  %5lld  %s\n", static_cast<long long>(kv.second), kv.first.c_str());
  if (only < 0) {
    EXPECT_GE(ran + raised + raised_user, 1000);
  }
  EXPECT_GT(ran, 0);
  EXPECT_GT(raised, 0);
}

// ------------------------------------------------------------------------------------------------
// The bugs the sweep found, one focused test each (so a regression names itself).

TEST(BadInputSweepFindings, HugeStepCountsFailBeforeAllocating) {
  const auto vp = make_schedule("vp");
  const auto edm = make_schedule("edm");
  for (int64_t n : {int64_t{1000000001}, std::numeric_limits<int64_t>::max()}) {
    for (const char* spacing : {"linspace", "karras", "exponential", "align_your_steps"}) {
      EXPECT_ERROR_NAMING((make_spacing(spacing)->grid(*vp, n)), std::to_string(n));
      EXPECT_ERROR_NAMING((make_spacing(spacing)->grid(*edm, n)), std::to_string(n));
    }
    // num_steps + 1 used to overflow here.
    EXPECT_ERROR_NAMING((make_spacing("sigmas", {{"sigmas", "1;0"}})->grid(*edm, n)),
                        std::to_string(n));
  }
  // The largest accepted count still builds its grid.
  EXPECT_EQ(make_spacing("linspace")->grid(*vp, kMaxNumSteps).size(),
            static_cast<size_t>(kMaxNumSteps + 1));
  EXPECT_ERROR_NAMING((make_schedule("discrete", {{"num_train_timesteps", "1000000000"}})),
                      "1000000000");
  EXPECT_ERROR_NAMING((make_correction("time_shift", {{"window", "1000000000"}})), "1000000000");
}

TEST(BadInputSweepFindings, RoundTIsIgnoredOnContinuousSchedules) {
  // Rounding a VP time in [t_min, 1] or an EDM t = sigma to an integer fed the network t = 0 at
  // sigma > 0 (NaN from an epsilon/v network). Discrete schedules still round.
  for (const char* name : {"vp", "edm"}) {
    const auto s = make_schedule(name);
    for (const char* spacing : {"karras", "exponential", "align_your_steps"}) {
      const TimeGrid plain = make_spacing(spacing)->grid(*s, 4);
      const TimeGrid rounded = make_spacing(spacing, {{"round_t", "true"}})->grid(*s, 4);
      EXPECT_EQ(plain, rounded) << name << " " << spacing;
    }
  }
  const auto d = make_schedule("discrete");
  for (const TimePoint& p : make_spacing("karras", {{"round_t", "true"}})->grid(*d, 4))
    EXPECT_EQ(p.t, std::nearbyint(p.t));
}

TEST(BadInputSweepFindings, GuidanceRescaleOfAConstantOutputStaysFinite) {
  // Sample 0's guided output is constant (a zero-initialised network): std 0, nothing to rescale.
  const Tensor c = at::cat({at::zeros({1, 4}, at::kDouble), at::randn({1, 4}, at::kDouble)});
  const Tensor u = at::cat({at::zeros({1, 4}, at::kDouble), at::randn({1, 4}, at::kDouble)});
  const CfgGuidance g(CfgOptions().scale(3.0).guidance_rescale(0.7));
  const Tensor out = g.combine(c, u, StepContext{});
  ASSERT_TRUE(at::isfinite(out).all().item<bool>());
  EXPECT_TRUE(at::equal(out[0], at::zeros({4}, at::kDouble)));
  // Sample 1 is rescaled as before: phi * cfg * std(c) / std(cfg) + (1 - phi) * cfg.
  const Tensor cfg1 = u[1] + (c[1] - u[1]) * 3.0;
  const Tensor ref1 = cfg1 * (c[1].std() / cfg1.std()) * 0.7 + cfg1 * 0.3;
  testing::ExpectTensorNear(out[1], ref1, 1e-12, 1e-12, "sample 1");
}

TEST(BadInputSweepFindings, DenoiserRejectsANonFiniteOrZeroSampleMaxValue) {
  const Network net = [](const Tensor& x, const Tensor&, const Conditioning&) { return x; };
  for (double v : {std::numeric_limits<double>::quiet_NaN(), 0.0, -1.0}) {
    DenoiserOptions o;
    o.thresholding = true;
    o.sample_max_value = v;
    EXPECT_ERROR_NAMING((Denoiser(net, o)), "sample_max_value");
  }
}

TEST(BadInputSweepFindings, ConditioningNeedsOneRowPerSample) {
  const Network net = [](const Tensor& x, const Tensor&, const Conditioning& c) {
    return x * 0.1 + c.value.reshape({c.value.size(0), -1}).mean(1, /*keepdim=*/true);
  };
  const auto s = make_schedule("discrete");
  const auto ddim = make_sampler("ddim");
  SampleOptions o;
  o.num_steps = 2;
  o.cond.value = at::ones({3, 4});  // 3 rows for 2 samples; 1 row would broadcast silently
  EXPECT_ERROR_NAMING((sample(*ddim, Denoiser(net), *s, randn({2, 4}, 0), o)),
                      "SampleOptions.cond.value has shape [3, 4]");
  o.cond.value = at::ones({1, 4});
  EXPECT_ERROR_NAMING((sample(*ddim, Denoiser(net), *s, randn({2, 4}, 0), o)), "[1, 4]");
  o.cond.value = at::ones({2, 4});
  o.cond.extra["pooled"] = at::ones({5});
  EXPECT_ERROR_NAMING((sample(*ddim, Denoiser(net), *s, randn({2, 4}, 0), o)),
                      "extra['pooled'] has shape [5]");
  o.cond.extra.clear();
  o.guidance = make_guidance("cfg", {{"scale", "2"}});
  o.uncond.value = at::zeros({4, 4});
  EXPECT_ERROR_NAMING((sample(*ddim, Denoiser(net), *s, randn({2, 4}, 0), o)),
                      "SampleOptions.uncond.value has shape [4, 4]");
  o.uncond.value = at::zeros({2, 4});
  EXPECT_TRUE(
      at::isfinite(sample(*ddim, Denoiser(net), *s, randn({2, 4}, 0), o)).all().item<bool>());
}

TEST(BadInputSweepFindings, HalfPrecisionNoiseIsScaledInTheComputeDtype) {
  // float16 noise times sigma_max = 1e5 overflowed to Inf before the sampler upcast it. Now the
  // float16 run is the float32 run on the same (float16) noise, cast at the end: bit for bit.
  DenoiserOptions d;
  d.prediction_type = Parameterization::kSample;
  const Denoiser exact(
      [](const Tensor& x, const Tensor& t, const Conditioning&) {
        const Tensor s2 = (t * t).reshape({-1, 1});
        return x * (0.25 / (0.25 + s2));
      },
      d);
  const auto edm = make_schedule("edm", {{"sigma_max", "100000"}});
  SampleOptions o;
  o.num_steps = 6;
  const Tensor noise = randn({3, 4}, 1).to(at::kHalf);
  const Tensor half = sample(*make_sampler("euler"), exact, *edm, noise, o);
  ASSERT_EQ(half.scalar_type(), at::kHalf);
  ASSERT_TRUE(at::isfinite(half).all().item<bool>());
  const Tensor single = sample(*make_sampler("euler"), exact, *edm, noise.to(at::kFloat), o);
  EXPECT_TRUE(at::equal(half, single.to(at::kHalf)));
}

TEST(BadInputSweepFindings, SmallerFindings) {
  // randn() of an empty batch is an empty tensor (at::cat of no parts threw a c10::Error).
  EXPECT_EQ(randn({0, 3}, 0).sizes(), c10::IntArrayRef({0, 3}));
  // terminal_alphas_cumprod above alphas_cumprod[T-2] is named (it made alphas_cumprod increase).
  EXPECT_ERROR_NAMING((make_schedule("discrete", {{"rescale_betas_zero_snr", "true"},
                                                  {"terminal_alphas_cumprod", "0.5"}})),
                      "terminal_alphas_cumprod=0.5");
  // align_your_steps' denoise that keeps no step is named (was "a time grid needs at least 2
  // points").
  EXPECT_ERROR_NAMING(
      (make_spacing("align_your_steps", {{"denoise", "0.2"}})->grid(*make_schedule("discrete"), 2)),
      "denoise=0.2");
  // karras / exponential name a negative sigma_min (the message had no value).
  EXPECT_ERROR_NAMING((make_spacing("karras", {{"sigma_min", "-1"}})), "sigma_min=-1");
  EXPECT_ERROR_NAMING((make_spacing("exponential", {{"sigma_max", "-2"}})), "sigma_max=-2");
}

}  // namespace
}  // namespace diffuse
