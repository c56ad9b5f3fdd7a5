// SPDX-License-Identifier: Apache-2.0
// The C++ half of scripts/bench_vs_diffusers.py (diffuse vs HuggingFace diffusers, side by side).
//
// Builds the sampler, schedule and spacing of one diffusers scheduler class + config with
// diffuse::from_diffusers(), so that it visits the same timesteps and computes the same samples as
// diffusers' own loop, and times diffuse::sample() on the initial noise the script wrote (raw
// little-endian float32, of --shape), with either the trivial network (eps = 0.1 x) or the
// DiT-S/2-sized cost model of bench/timing.h (weights from the script's files too; [4, 4, 32, 32]
// only). Stochastic samplers draw their noise from per-sample generators seeded with --seed (the
// library default), or with --noise philox from make_philox_noise(--seed). With --caching-allocator
// 1 (the default, as the diffuse CLI) LibTorch's CPU allocator is diffuse's caching allocator
// (<diffuse/cpu_allocator.h>); 0 leaves malloc. The network is timed from the inside by the wall
// clock (bench::TimedNetwork); its CPU time, which a loaded machine's preemptions do not inflate,
// by as many calls of the bare network after each run (network_alone: no clock reading inside
// the run but its two ends). One warm-up run, then --runs timed runs; prints one JSON line:
//   {"class": ..., "network": ..., "steps": N, "calls": NFE, "total_s": [...], "network_s": [...],
//    "total_cpu_s": [...], "network_cpu_s": [...], "network_alone_s": [...], "probe_s": ...,
//    "probe_cpu_s": ...}
// (network_cpu_s / network_alone_s: CPU / wall seconds of the calls alone; probe: the timing's
// own cost per network call, measure_probe). --network-cpu inside reads the thread CPU clock
// around every network call instead (the accounting of the runs before 2026-12-07; network_alone_s
// is then the in-run CPU time too), to show what those readings cost (network_alone, why).
// and with --save writes the last run's final sample as raw float32. With --floor 1 it only
// measures the memory floor of one update of --shape (print_floor) and prints
//   {"floor_pass_us": ..., "floor_memcpy_us": ..., "isa": ...}
// Not a unit test and not meant to be run by hand: the script passes all the options.
//
//   diffuse_bench_vs_diffusers --class DDIMScheduler --config "beta_schedule=linear,..."
//       --inputs DIR [--network trivial|cost] [--matmuls 8] [--steps 50] [--runs 5]
//       [--warmup-steps N (default --steps)] [--threads 1] [--check-finite 1|0] [--save FILE]
//       [--shape 4,4,32,32] [--seed 0] [--noise per-sample|philox] [--caching-allocator 1|0]
//       [--network-cpu alone|inside]
// DIR holds noise.f32 of --shape and, for --network cost, w_in.f32 [16, 384], w.f32 [384, 384],
// w_out.f32 [384, 16].
#include <diffuse/all.h>
#include <diffuse/detail/fused.h>
#include <diffuse/diffusers.h>

#include "timing.h"

#include <ATen/Parallel.h>

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

using diffuse::Tensor;

struct Args {
  std::string cls, config, inputs, network = "trivial", save, noise = "per-sample",
                                   network_cpu = "alone";
  int64_t matmuls = 8, steps = 50, runs = 5, warmup_steps = 0;
  std::vector<int64_t> shape{4, 4, 32, 32};
  uint64_t seed = 0;
  int threads = 1;
  bool check_finite = true, caching_allocator = true, floor = false;
};

bool parse_flag(const std::string& v) { return v != "0" && v != "false"; }

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    diffuse::check(i + 1 < argc, "option ", k, " needs a value");
    const std::string v = argv[++i];
    if (k == "--class")
      a.cls = v;
    else if (k == "--config")
      a.config = v;
    else if (k == "--inputs")
      a.inputs = v;
    else if (k == "--network")
      a.network = v;
    else if (k == "--save")
      a.save = v;
    else if (k == "--matmuls")
      a.matmuls = std::stoll(v);
    else if (k == "--steps")
      a.steps = std::stoll(v);
    else if (k == "--runs")
      a.runs = std::stoll(v);
    else if (k == "--warmup-steps")
      a.warmup_steps = std::stoll(v);
    else if (k == "--threads")
      a.threads = std::stoi(v);
    else if (k == "--check-finite")
      a.check_finite = parse_flag(v);
    else if (k == "--caching-allocator")
      a.caching_allocator = parse_flag(v);
    else if (k == "--seed")
      a.seed = std::stoull(v);
    else if (k == "--noise")
      a.noise = v;
    else if (k == "--network-cpu")
      a.network_cpu = v;
    else if (k == "--floor")
      a.floor = parse_flag(v);
    else if (k == "--shape") {
      a.shape.clear();
      for (const std::string& d : diffuse::bench::split_list(v, ','))
        a.shape.push_back(std::stoll(d));
    } else
      throw diffuse::Error("unknown option '" + k + "'");
  }
  diffuse::check(a.floor || (!a.cls.empty() && !a.inputs.empty()),
                 "--class and --inputs are required");
  diffuse::check(a.noise == "per-sample" || a.noise == "philox",
                 "--noise must be per-sample or philox, got '", a.noise, "'");
  diffuse::check(a.network_cpu == "alone" || a.network_cpu == "inside",
                 "--network-cpu must be alone or inside, got '", a.network_cpu, "'");
  diffuse::check(a.network == "trivial" || a.network == "cost",
                 "--network must be trivial or cost, got '", a.network, "'");
  diffuse::check(!a.shape.empty() &&
                     std::all_of(a.shape.begin(), a.shape.end(), [](int64_t d) { return d > 0; }),
                 "--shape needs positive sizes separated by commas");
  diffuse::check(a.network == "trivial" || a.shape == std::vector<int64_t>{4, 4, 32, 32},
                 "--network cost needs --shape 4,4,32,32");
  diffuse::check(a.matmuls >= 1 && a.steps >= 1 && a.runs >= 1 && a.threads >= 1,
                 "--matmuls, --steps, --runs and --threads must be positive");
  if (a.warmup_steps <= 0) a.warmup_steps = a.steps;
  return a;
}

/// A raw little-endian float32 file of exactly the given shape.
Tensor read_f32(const std::string& path, std::vector<int64_t> shape) {
  Tensor t = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  diffuse::check(in.good(), "cannot open '", path, "'");
  const auto bytes = static_cast<int64_t>(in.tellg());
  diffuse::check(bytes == t.numel() * 4, "'", path, "' has ", bytes, " bytes, expected ",
                 t.numel() * 4, " (float32 ", t.sizes(), ")");
  in.seekg(0);
  in.read(static_cast<char*>(t.data_ptr()), bytes);
  diffuse::check(in.good(), "cannot read '", path, "'");
  return t;
}

void write_f32(const std::string& path, const Tensor& t) {
  const Tensor c = t.to(at::kFloat).contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * 4));
  diffuse::check(out.good(), "cannot write '", path, "'");
}

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID, as Python's time.thread_time()).
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// `inner` with the calling thread's CPU time inside each call added to *cpu (--network-cpu
/// inside).
diffuse::Network cpu_timed(diffuse::Network inner, std::shared_ptr<double> cpu) {
  return [inner, cpu](const Tensor& x, const Tensor& t, const diffuse::Conditioning& c) {
    const double c0 = thread_cpu_seconds();
    Tensor out = inner(x, t, c);
    *cpu += thread_cpu_seconds() - c0;
    return out;
  };
}

/// Wall and thread CPU seconds of `calls` calls of the bare network on x (the time tensor t).
struct AloneTime {
  double wall = 0, cpu = 0;
};

/// The network's own time in a run, measured apart: the same number of calls of it alone, on the
/// run's initial state, right after the run. Why not a CPU clock around each call inside the run:
/// a thread CPU clock reading is a system call, and on the AMD EPYC VM of 2026-12-07 one before
/// and after every network call made the sampler's own code after it slower by up to 3 us a step
/// (a DDIM update kernel of [4, 4, 32, 32]: 1.7 us in a loop, 5.0 us with the two readings around
/// the network call before it; the kernel entry leaves caches and TLB to refill): a cost of the
/// measurement that landed in the sampler's overhead, on both sides.
AloneTime network_alone(const diffuse::Network& net, const Tensor& x, const Tensor& t,
                        int64_t calls) {
  const diffuse::Conditioning cond;
  const auto w0 = diffuse::bench::Clock::now();
  const double c0 = thread_cpu_seconds();
  for (int64_t i = 0; i < calls; ++i) (void)net(x, t, cond);
  const double c1 = thread_cpu_seconds();
  return {diffuse::bench::seconds_since(w0), c1 - c0};
}

/// What the timing of one network call adds to (total - time inside the network), seconds.
struct ProbeCost {
  double wall = 0, cpu = 0;
};

/// The instrumentation's own cost per network call: the wrapper of a timed run (the wall clock
/// around the call) around a network that does nothing, called kCalls times, minus what it
/// counted as inside the network, minus the same calls of the bare network: a cost of the
/// measurement, not of either sampler (tens of ns: the clock is read without a system call). The
/// script subtracts calls x this from each run's overhead, and its Python twin measures its own
/// wrapper alike. Median of 7 repetitions.
ProbeCost measure_probe(const Tensor& x, bool cpu_inside) {
  constexpr int kCalls = 1000, kReps = 7;
  const diffuse::Network noop = [](const Tensor& in, const Tensor&, const diffuse::Conditioning&) {
    return in;
  };
  const Tensor t = at::zeros({x.size(0)}, x.options());
  const diffuse::Conditioning cond;
  std::vector<double> wall, cpu;
  for (int r = 0; r < kReps; ++r) {
    diffuse::bench::TimedNetwork timer;
    auto inside_cpu = std::make_shared<double>(0.0);
    const diffuse::Network wrapped = timer.wrap(cpu_inside ? cpu_timed(noop, inside_cpu) : noop);
    const auto w0 = diffuse::bench::Clock::now();
    const double c0 = thread_cpu_seconds();
    for (int i = 0; i < kCalls; ++i) (void)wrapped(x, t, cond);
    const double c1 = thread_cpu_seconds();
    const double w1 = diffuse::bench::seconds_since(w0);
    const auto w2 = diffuse::bench::Clock::now();
    const double c2 = thread_cpu_seconds();
    for (int i = 0; i < kCalls; ++i) (void)noop(x, t, cond);
    const double c3 = thread_cpu_seconds();
    const double w3 = diffuse::bench::seconds_since(w2);
    wall.push_back((w1 - *timer.seconds - w3) / kCalls);
    cpu.push_back((c1 - c0 - *inside_cpu - (c3 - c2)) / kCalls);
  }
  return {diffuse::bench::median_of(wall), diffuse::bench::median_of(cpu)};
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.9g", i ? ", " : "", v[i]);
    s += buf;
  }
  return s + "]";
}

}  // namespace

/// The memory floor of one update of --shape in float32 on this thread: the fastest of 100 x 200
/// calls of the fused kernel a*ca + b*cb on preallocated buffers (one pass reading two arrays and
/// writing a third, as DDIM's or Euler's update; the kernels of kernel_isa()), and of a memcpy of
/// one array. CPU time, microseconds. Also the fastest call of the kernel a DDIM step runs (its
/// conversion pass: x0 = (x - u cu) / d, x0 ca + u cb and u's NaN/Inf flag in one pass; two
/// reads, two writes and an exact division per entry), the least that step can cost.
void print_floor(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> a(static_cast<size_t>(n), 0.5f), b(static_cast<size_t>(n), -0.25f),
      out(static_cast<size_t>(n));
  const auto& k = diffuse::detail::fused::kernels<float>();
  std::vector<float> out2(static_cast<size_t>(n));
  double best_pass = 1e9, best_copy = 1e9, best_update = 1e9;
  // Calls per clock reading: a reading is a system call, and the first call after one is slower
  // (network_alone); 200 make that negligible.
  constexpr int kCalls = 200;
  for (int r = 0; r < 100; ++r) {
    const double c0 = thread_cpu_seconds();
    for (int i = 0; i < kCalls; ++i) k.lincomb(a.data(), 0.9f, b.data(), 0.1f, out.data(), n);
    const double c1 = thread_cpu_seconds();
    for (int i = 0; i < kCalls; ++i)
      std::memcpy(out.data(), a.data() + (i & 1), static_cast<size_t>(n - 1) * sizeof(float));
    const double c2 = thread_cpu_seconds();
    for (int i = 0; i < kCalls; ++i)
      (void)k.solve_update_x0_eps(a.data(), b.data(), 0.3f, 0.7f, 0.9f, 0.2f, out.data(),
                                  out2.data(), n);
    const double c3 = thread_cpu_seconds();
    best_pass = std::min(best_pass, (c1 - c0) / kCalls);
    best_copy = std::min(best_copy, (c2 - c1) / kCalls);
    best_update = std::min(best_update, (c3 - c2) / kCalls);
  }
  std::printf(
      "{\"floor_pass_us\": %.4f, \"floor_memcpy_us\": %.4f, \"floor_ddim_kernel_us\": %.4f, "
      "\"isa\": \"%s\"}\n",
      best_pass * 1e6, best_copy * 1e6, best_update * 1e6,
      diffuse::detail::fused::kernel_isa_name(diffuse::detail::fused::kernel_isa()));
}

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  if (args.floor) {
    print_floor(args.shape);
    return 0;
  }
  at::set_num_threads(args.threads);
  if (args.caching_allocator) diffuse::enable_caching_cpu_allocator();
  const diffuse::DiffusersScheduler s =
      diffuse::from_diffusers(args.cls, diffuse::parse_config(args.config));
  const Tensor noise = read_f32(args.inputs + "/noise.f32", args.shape);

  diffuse::bench::TimedNetwork timer;
  diffuse::Network net = diffuse::bench::trivial_network();
  if (args.network == "cost") {
    const int64_t hidden = 384, patch = 16;
    net = diffuse::bench::dit_s_cost_network(read_f32(args.inputs + "/w_in.f32", {patch, hidden}),
                                             read_f32(args.inputs + "/w.f32", {hidden, hidden}),
                                             read_f32(args.inputs + "/w_out.f32", {hidden, patch}),
                                             args.matmuls);
  }
  // Only the wall clock inside the run (network_alone for the CPU time, and why).
  const bool cpu_inside = args.network_cpu == "inside";
  auto net_cpu = std::make_shared<double>(0.0);
  const diffuse::Denoiser denoiser =
      s.denoiser(timer.wrap(cpu_inside ? cpu_timed(net, net_cpu) : net));
  // diffusers' pipeline: latents = noise * init_noise_sigma (in its own units), then the loop.
  const Tensor x_T = s.initial_state(noise, args.steps);
  diffuse::SampleOptions o = s.sample_options(args.steps);
  o.check_finite = args.check_finite;
  o.seed = args.seed;

  // Warm-up (first-call costs: allocator, lazy initialisation), --warmup-steps steps.
  diffuse::SampleOptions warm = s.sample_options(args.warmup_steps);
  warm.check_finite = args.check_finite;
  warm.seed = args.seed;
  // A fresh source per run (a noise source counts its draws), made outside the timed call.
  const auto fresh_noise = [&args]() -> std::shared_ptr<diffuse::NoiseSource> {
    if (args.noise == "philox") return diffuse::make_philox_noise(args.seed);
    return nullptr;  // sample()'s default: per-sample generators seeded o.seed
  };
  warm.noise = fresh_noise();
  diffuse::bench::timed_sample(*s.sampler, *s.schedule, timer, denoiser,
                               s.initial_state(noise, args.warmup_steps), warm);
  const ProbeCost probe = measure_probe(x_T, cpu_inside);
  Tensor result;
  std::vector<double> total, network, total_cpu, network_cpu, network_alone_wall;
  int64_t calls = 0;
  const Tensor t_alone = at::zeros({x_T.size(0)}, x_T.options());
  for (int64_t r = 0; r < args.runs; ++r) {
    *net_cpu = 0;
    o.noise = fresh_noise();
    const double c0 = thread_cpu_seconds();
    const diffuse::bench::RunTime m =
        diffuse::bench::timed_sample(*s.sampler, *s.schedule, timer, denoiser, x_T, o, &result);
    total_cpu.push_back(thread_cpu_seconds() - c0);
    const AloneTime alone =
        cpu_inside ? AloneTime{*net_cpu, *net_cpu} : network_alone(net, x_T, t_alone, m.calls);
    network_cpu.push_back(alone.cpu);
    network_alone_wall.push_back(alone.wall);
    total.push_back(m.total);
    network.push_back(m.network);
    calls = m.calls;
  }
  if (!args.save.empty()) write_f32(args.save, result);
  std::printf(
      "{\"class\": \"%s\", \"network\": \"%s\", \"steps\": %lld, \"calls\": %lld, \"threads\": %d, "
      "\"check_finite\": %s, \"caching_allocator\": %s, \"noise\": \"%s\", \"total_s\": %s, "
      "\"network_s\": %s, "
      "\"total_cpu_s\": %s, "
      "\"network_cpu_s\": %s, \"network_alone_s\": %s, \"probe_s\": %.9g, \"probe_cpu_s\": %.9g}\n",
      args.cls.c_str(), args.network.c_str(), static_cast<long long>(args.steps),
      static_cast<long long>(calls), args.threads, args.check_finite ? "true" : "false",
      args.caching_allocator ? "true" : "false", args.noise.c_str(), json_list(total).c_str(),
      json_list(network).c_str(), json_list(total_cpu).c_str(), json_list(network_cpu).c_str(),
      json_list(network_alone_wall).c_str(), probe.wall, probe.cpu);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "vs_diffusers: %s\n", e.what());
  return 1;
}
