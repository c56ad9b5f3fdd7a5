// SPDX-License-Identifier: Apache-2.0
#include <diffuse/sampler.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include <diffuse/brownian.h>
#include <diffuse/detail/aten.h>
#include <diffuse/detail/step_buffers.h>
#include <diffuse/samplers/coefficients.h>
#include <diffuse/tensor_ops.h>

namespace diffuse {

StepContext step_context(const TimeGrid& grid, int64_t i, NoiseSource* noise) {
  StepContext st;
  st.index = i;
  st.num_steps = static_cast<int64_t>(grid.size()) - 1;
  st.now = grid[i];
  st.next = grid[i + 1];
  st.grid = &grid;
  st.noise = noise;
  return st;
}

UpdatedPrediction predict_with_update(const ModelFn& model, const Tensor& x, const StepContext& st,
                                      const LinearUpdate* update) {
  StepContext call = st;
  call.update = update;
  UpdatedPrediction r{model(x, st.now, call), Tensor()};
  r.x_next = std::move(r.pred.update);
  r.pred.update = Tensor();
  if (update != nullptr && !r.x_next.defined()) {
    r.x_next = update->form == LinearUpdate::Form::kX0Eps
                   ? lincomb(r.pred.x0, update->ca, r.pred.eps, update->cb)
                   : lincomb(x, update->ca, r.pred.x0, update->cb);
    if (update->diff != nullptr)
      add_scaled_(r.x_next, diff_scaled(r.pred.x0, *update->diff, update->c_diff), update->c_out);
  }
  return r;
}

void History::push(const TimePoint& at, const Prediction& pred, const Tensor& x, size_t keep) {
  if (keep == 0) return;
  times.push_back(at);
  preds.push_back(pred);
  xs.push_back(x);
  if (preds.size() > keep) {
    times.erase(times.begin());
    preds.erase(preds.begin());
    xs.erase(xs.begin());
  }
}

Tensor SampleContext::brownian_like(const Tensor& x, double s0, double s1, double lo, double hi) {
  if (!brownian || brownian->batch() != static_cast<size_t>(x.size(0)) || brownian->lo() != lo ||
      brownian->hi() != hi) {
    check(noise != nullptr,
          "this sampler is stochastic and needs a noise source (seed or NoiseSource)");
    const Tensor draws = noise->randn({x.size(0)}, at::TensorOptions().dtype(at::kDouble));
    std::vector<uint64_t> seeds;
    for (int64_t i = 0; i < x.size(0); ++i) {
      const double v = draws[i].item<double>();
      uint64_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      seeds.push_back(bits);
    }
    std::vector<int64_t> shape(x.sizes().begin() + 1, x.sizes().end());
    brownian = std::make_shared<const BrownianTree>(std::move(seeds), std::move(shape), lo, hi);
  }
  return brownian->normalized(s0, s1, x.options());
}

namespace {

NoiseSource& stochastic_source(const SampleContext& ctx) {
  check(ctx.noise != nullptr,
        "this sampler is stochastic and needs a noise source (seed or NoiseSource)");
  return *ctx.noise;
}

}  // namespace

Tensor SampleContext::randn_like(const Tensor& x) { return stochastic_source(*this).randn_like(x); }

void SampleContext::add_randn_(Tensor& x, double c) { stochastic_source(*this).add_randn_(x, c); }

Tensor Sampler::sample(const ModelFn& model, Tensor x, const TimeGrid& grid, SampleContext& ctx,
                       int64_t first_step) const {
  check(static_cast<bool>(model), "sample(): the model function is empty");
  check(x.defined(), "sample(): the initial sample is undefined");
  check(x.dim() >= 1 && x.size(0) > 0,
        "sample(): the initial sample needs a non-empty batch dimension, got shape ", x.sizes());
  validate_grid(grid);
  const auto out_dtype = x.scalar_type();
  check(at::isFloatingType(out_dtype), "sample(): the initial sample must be floating point, got ",
        out_dtype);
  if (compute_dtype(out_dtype) != out_dtype) x = x.to(compute_dtype(out_dtype));
  // The run's step buffers: each step's x0, next state and time tensor reuse the memory of those
  // the previous steps dropped (detail/step_buffers.h).
  detail::StepBuffers buffers;
  const detail::StepBuffersScope buffers_scope(&buffers);
  History history;
  ctx.brownian.reset();  // a new run, a new Brownian path
  const int64_t n = static_cast<int64_t>(grid.size()) - 1;
  check(first_step >= 0 && first_step < n, "sample(): first_step=", first_step, " is outside [0, ",
        n, ") for a grid of ", n, " steps");
  const size_t keep = static_cast<size_t>(std::max<int64_t>(history_size(), 0));
  auto context_at = [&](int64_t i) { return step_context(grid, i, ctx.noise); };
  // RePaint resampling: jumps left at each grid point, and the history on arrival at each point.
  const int64_t jump = ctx.resample_jump;
  check(jump >= 0 && ctx.resample_times >= 1, "sample(): resample_jump must be >= 0 and ",
        "resample_times >= 1, got resample_jump=", jump, " resample_times=", ctx.resample_times);
  std::vector<int64_t> jumps_left;
  std::vector<History> arrived;
  if (jump > 0 && ctx.resample_times > 1) {
    check(ctx.noise != nullptr, "sample(): resampling (resample_jump=", jump,
          ") draws forward noise and needs SampleContext.noise");
    jumps_left.assign(static_cast<size_t>(n + 1), 0);
    for (int64_t p = n; p - jump > first_step; p -= jump)
      jumps_left[static_cast<size_t>(p)] = ctx.resample_times - 1;
    arrived.resize(static_cast<size_t>(n + 1));
    arrived[static_cast<size_t>(first_step)] = history;
  }
  if (!ctx.corrections.empty()) {
    const StepContext first = context_at(first_step);
    for (Correction* c : ctx.corrections) c->on_start(x, first);
  }
  for (int64_t i = first_step; i < n; ++i) {
    StepContext st = context_at(i);
    for (Correction* c : ctx.corrections) c->on_time(x, st);
    StepResult r = step(model, x, st, history, ctx);
    if (!r.x.defined()) throw Error(detail::cat(name(), ": step ", i, " produced no sample"));
    history.push(st.now, r.pred, r.start.defined() ? r.start : x, keep);
    x = std::move(r.x);
    if (ctx.on_step) ctx.on_step(StepInfo{st, x, r.pred});
    if (jumps_left.empty()) continue;
    const auto p = static_cast<size_t>(i + 1);
    arrived[p] = history;
    if (jumps_left[p] == 0) continue;
    --jumps_left[p];
    const size_t q = p - static_cast<size_t>(jump);
    const TimePoint& from = grid[p];
    const TimePoint& to = grid[q];
    check(from.alpha > 0, "sample(): resampling from grid point ", p, " (t=", from.t,
          ") needs alpha > 0");
    const ForwardTransition f = forward_transition(from, to);
    x = lincomb(x, f.scale, ctx.randn_like(x), f.std);
    history = arrived[q];
    i = static_cast<int64_t>(q) - 1;  // the loop's ++i runs step q next
  }
  if (!ctx.corrections.empty()) {
    const StepContext last = context_at(n - 1);
    for (Correction* c : ctx.corrections) c->on_finish(x, last);
  }
  return x.scalar_type() == out_dtype ? x : x.to(out_dtype);
}

std::unique_ptr<Sampler> make_sampler(const std::string& name, const Config& options) {
  return Registry<Sampler>::get().make(name, options);
}

std::vector<std::string> distinct_sampler_names() {
  const auto& registry = Registry<Sampler>::get();
  auto canonical = [](const std::string& n) {
    if (n.rfind("k_", 0) == 0) return false;
    for (char c : n)
      if (!(std::islower(static_cast<unsigned char>(c)) ||
            std::isdigit(static_cast<unsigned char>(c)) || c == '_'))
        return false;
    return true;
  };
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (int pass = 0; pass < 2; ++pass) {  // canonical names first, then any others still missing
    for (const std::string& name : registry.names()) {
      if ((pass == 0) != canonical(name)) continue;
      const auto resolved = registry.resolve(name, {});
      if (resolved.first != name && resolved.second.empty()) continue;  // a plain rename of a key
      if (seen.insert(resolved.first + ":" + format_config(resolved.second)).second)
        out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

const std::vector<std::pair<std::string, std::string>>& sampler_spacing_suffixes() {
  static const std::vector<std::pair<std::string, std::string>> table = {
      {" Karras", "karras"}, {" Exponential", "exponential"}};
  return table;
}

SamplerSpacingSpec split_sampler_spacing(const std::string& spec) {
  const auto colon = spec.find(':');
  const std::string name = detail::trim(spec.substr(0, colon));
  const std::string options = colon == std::string::npos ? std::string() : spec.substr(colon);
  const auto& registry = Registry<Sampler>::get();
  if (!registry.contains(name)) {
    for (const auto& [suffix, spacing] : sampler_spacing_suffixes()) {
      if (name.size() <= suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const std::string base = detail::trim(name.substr(0, name.size() - suffix.size()));
      if (registry.contains(base)) return {base + options, spacing};
    }
  }
  return {spec, ""};
}

std::unique_ptr<Sampler> sampler_from_spec(const std::string& spec) {
  const SamplerSpacingSpec split = split_sampler_spacing(spec);
  if (!split.spacing.empty()) {
    throw ConfigError(detail::cat("sampler '", detail::trim(spec.substr(0, spec.find(':'))),
                                  "' names a sampler and a spacing (sampler '", split.sampler,
                                  "', spacing '", split.spacing,
                                  "'): select the spacing separately, or split the name with "
                                  "split_sampler_spacing()"));
  }
  return Registry<Sampler>::get().make_from_spec(spec);
}

}  // namespace diffuse
