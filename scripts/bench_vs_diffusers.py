#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""diffuse vs HuggingFace diffusers, side by side, timed in one run.

Runs diffusers' scheduler loop in Python (set_timesteps, init_noise_sigma, then per timestep
scale_model_input -> network -> step, as its pipelines do) and diffuse's C++ loop
(bench/vs_diffusers.cpp: the same scheduler built with diffuse::from_diffusers, then
diffuse::sample()) on the same float32 initial noise, for

  ddim      DDIMScheduler                    eta 0, clip_sample false, "leading" spacing (default)
  dpmpp_2m  DPMSolverMultistepScheduler      algorithm_type dpmsolver++, solver_order 2, "linspace"
  dpmpp_3m  DPMSolverMultistepScheduler      the same with solver_order 3
  euler     EulerDiscreteScheduler           "linspace" spacing, final sigma 0
  euler_a   EulerAncestralDiscreteScheduler  "linspace" spacing (stochastic)
  ddpm      DDPMScheduler                    fixed_small variance, clip_sample false, "leading"
                                             (stochastic)

all on DDPM linear betas 1e-4..0.02, 1000 training steps, epsilon prediction, 50 steps, at the
latent shapes of --shapes (default [4, 4, 32, 32], [1, 4, 128, 128] and [16, 4, 64, 64]) and the
intra-op thread counts of --threads (default 1 and 2; torch.set_num_threads on the Python side,
at::set_num_threads on the C++ side), with two networks, both timed from the inside on each side:

  trivial   eps = 0.1 x (one elementwise op): the run is almost all the sampler's own cost;
  cost      the DiT-S/2-sized cost model of bench/timing.h (dit_s_cost_network), the SAME op
            sequence on both sides: 2x2 patchify to [1024, 16] tokens, x [16, 384], --matmuls
            (default 8) matmuls [1024, 384] x [384, 384], x [384, 16], unpatchify, * 0.01;
            weights written by this script and read by the C++ side. A real DiT-S/2 forward is
            about 80 such matmuls for this batch (6.06 GFLOP/image, Peebles & Xie 2023); the
            overhead is also reported as a share of that, at the measured matmul speed. Run at
            [4, 4, 32, 32] only (the shape the model is cut for).

overhead per step = (total - time in the network - calls x the timing's own cost per call) /
steps, with the minimum of each over all runs (the timing's cost: each side measures what its
wrapper adds per network call around a network that does nothing); end-to-end = the minimum
total; each in wall time and, with one thread, in the sampling thread's CPU time
(CLOCK_THREAD_CPUTIME_ID on both sides: with one intra-op thread all work runs on that thread;
with two, part of it runs on a worker thread, so only wall time is reported). Inside a run only
the wall clock is read around each trivial-network call (perf_counter / steady_clock: no system
call); that network's CPU time is that of as many calls of it alone on the run's input right
after the run, on each side. (Until 2026-12-07 both sides read the thread CPU clock around every
call: a system call, and on the AMD EPYC VM of that day its kernel entry left the caches and TLB
to refill, which made the sampler code after each call slower, by 1-2.5 us a step for diffuse's
DDIM at [4, 4, 32, 32], 2.4 -> 3.6-4.8 us; `--network-cpu inside` of the C++ program still
measures that way.) The header prints the trivial network's time per call in the runs and alone
(wall), which should agree. The cost model's calls (tens of ms) keep the CPU clock around each
call: a reading is lost in them, and one run's calls alone would not repeat its phases. On a
loaded machine a run of a few ms is often preempted for whole scheduler time slices, which
inflates wall time but not CPU time. The Python and C++ blocks alternate (and swap order every
round) so that load from other processes hits both alike; every ratio in the output comes from
this one run. The C++ side runs with diffuse's caching CPU allocator (as the diffuse CLI does;
--malloc: LibTorch's default allocator instead); neither side gets any environment tuning. The
script also checks that both sides compute the same samples: max |x_diffusers - x_diffuse| of
the final sample from the same noise (deterministic samplers; the stochastic ones draw their
step noise from different generators: diffusers' torch.Generator, diffuse's per-sample streams).
The stochastic samplers run a second time on the C++ side with --noise philox (make_philox_noise,
the counter-based generator; --no-philox skips it), reported in rows of their own. Each round
also measures the memory floor of one update on every shape (one thread, CPU time: the fastest
fused pass a * ca + b * cb on preallocated buffers, `--floor 1` of the C++ program) and the
report divides each sampler's 1-thread overhead per step by it; the same program times the kernel
of DDIM's step alone (its conversion pass, two reads and two writes), the least such a step can
cost.

diffusers needs no installation: point --diffusers (or $DIFFUSERS_SRC) at a source checkout (the
folder holding src/diffusers, or src itself). Its import is shimmed to run under Debian's
python3-torch 1.13 (with python3-numpy and python3-packaging) without huggingface_hub: stub
modules for huggingface_hub, filelock and, when missing, tqdm, PIL, requests, safetensors and
regex (hub access, progress bars and image export are never used here), a no-op dependency version check, and placeholders for torch.xpu /
torch.mps (referenced in device tables at import time, never called on CPU). The scheduler code
itself runs unmodified. Tested with diffusers 58eb52c.

Not part of CI (CI has no Python torch). Example (docs/benchmarks.md, "Side by side with
diffusers"):

  ninja -C build diffuse_bench_vs_diffusers
  /usr/bin/python3 scripts/bench_vs_diffusers.py --diffusers /path/to/diffusers \\
      --bin build/bench/diffuse_bench_vs_diffusers
"""

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
              prediction_type="epsilon")
# (diffuse sampler, diffusers class, class-specific config)
SAMPLERS = [
    ("ddim", "DDIMScheduler", dict(clip_sample=False)),
    ("dpmpp_2m", "DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=2)),
    ("dpmpp_3m", "DPMSolverMultistepScheduler", dict(algorithm_type="dpmsolver++", solver_order=3)),
    ("euler", "EulerDiscreteScheduler", {}),
    ("euler_a", "EulerAncestralDiscreteScheduler", {}),
    ("ddpm", "DDPMScheduler", dict(clip_sample=False)),
]
STOCHASTIC = {"euler_a", "ddpm"}
SHAPES = "4x4x32x32,1x4x128x128,16x4x64x64"
COST_SHAPE = (4, 4, 32, 32)
HIDDEN, PATCH, TOKENS, BATCH = 384, 16, 256, 4
DIT_S_FLOP = 6.06e9 * BATCH  # a DiT-S/2 forward on 32x32x4 latents, this batch


# --------------------------------------------------------------------------------------------
# Importing diffusers' schedulers from a source checkout under python3-torch 1.13


class _Anything:
    """Stands for any huggingface_hub / filelock object: callable, any attribute."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()


# Imported by diffusers' package __init__ for progress bars, image and video export, never used by
# the scheduler loop: stubbed when not installed.
OPTIONAL_MODULES = ("tqdm", "PIL", "requests", "safetensors", "regex")


class _AnyMeta(type):
    """Stub classes answer any class attribute too (PIL.Image.Resampling.BILINEAR)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes `import huggingface_hub[.x]` / `import filelock` (and OPTIONAL_MODULES where they are
    not installed) give stub modules."""

    def __init__(self, roots):
        self.ROOTS = set(roots)

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.ROOTS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        m = types.ModuleType(spec.name)
        m.__path__ = []
        m.__version__ = "99.0.0"  # a stub; newer than any version check asks for

        def getattr_(attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            if attr.isupper():  # constants such as HF_HOME
                return os.path.join(tempfile.gettempdir(), "no-hub")
            return _AnyMeta(attr, (_Anything,), {})  # classes, exceptions and functions alike

        m.__getattr__ = getattr_
        return m

    def exec_module(self, module):
        pass


def import_diffusers(path):
    """diffusers' scheduler classes of SAMPLERS from a source checkout."""
    src = path if os.path.isdir(os.path.join(path, "diffusers")) else os.path.join(path, "src")
    if not os.path.isfile(os.path.join(src, "diffusers", "schedulers", "scheduling_ddim.py")):
        sys.exit(f"bench_vs_diffusers: no diffusers source under '{path}' "
                 "(expected src/diffusers/schedulers/scheduling_ddim.py)")
    import torch
    if importlib.util.find_spec("packaging") is None:
        sys.exit("bench_vs_diffusers: diffusers needs the 'packaging' module: "
                 "apt-get install -y python3-packaging")
    if importlib.util.find_spec("huggingface_hub") is None:
        roots = ["huggingface_hub", "filelock"] + [m for m in OPTIONAL_MODULES if importlib.util.find_spec(m) is None]
        sys.meta_path.insert(0, _StubFinder(roots))
        check = types.ModuleType("diffusers.dependency_versions_check")
        check.dep_version_check = lambda pkg, hint=None: None
        sys.modules["diffusers.dependency_versions_check"] = check
    for name in ("xpu", "mps"):
        if not hasattr(torch, name):
            setattr(torch, name, _Anything())
    sys.path.insert(0, src)
    import diffusers
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
    from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
    from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
    classes = {c.__name__: c for c in (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler)}
    return diffusers, classes


def diffusers_commit(path, diffusers):
    """The checkout's commit: from its .git, else from a COMMIT file (for a `git archive`)."""
    if os.path.exists(os.path.join(path, ".git")):
        try:
            out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True)
            if out.returncode == 0:
                return out.stdout.strip()
        except OSError:
            pass
    for f in ("COMMIT", os.path.join("..", "COMMIT")):
        p = os.path.join(path, f)
        if os.path.isfile(p):
            return open(p).read().strip()
    return f"unknown (version {diffusers.__version__})"


# --------------------------------------------------------------------------------------------
# The two networks, the Python loop


class Timed:
    """A network timed from the inside: wall seconds and calls since reset(), and with cpu_inside
    the thread CPU seconds too (a system call per reading: only for the cost model, whose calls
    dwarf it; the trivial network's CPU time comes from network_alone)."""

    def __init__(self, fn, cpu_inside=False):
        self.fn = fn
        self.cpu_inside = cpu_inside
        self.reset()

    def reset(self):
        self.seconds, self.cpu_seconds, self.calls = 0.0, 0.0, 0

    def __call__(self, x, t):
        t0 = time.perf_counter()
        if self.cpu_inside:
            c0 = time.thread_time()
            out = self.fn(x, t)
            self.cpu_seconds += time.thread_time() - c0
        else:
            out = self.fn(x, t)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def network_alone(fn, x, t, calls):
    """(wall, thread CPU) seconds of `calls` calls of the bare network: its CPU time in a run,
    measured apart (bench/vs_diffusers.cpp network_alone's twin, and why)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        fn(x, t)
    return time.perf_counter() - t0, time.thread_time() - c0


def measure_probe(x, cpu_inside, calls=1000, reps=7):
    """The timing's own cost per network call (bench/vs_diffusers.cpp measure_probe's twin): a
    Timed network that does nothing, called `calls` times, minus what Timed counted as inside the
    network, minus the same calls of the bare function; (wall, CPU) seconds, medians of `reps`: a
    cost of the measurement, subtracted from each run's overhead on both sides."""

    def noop(x, t):
        return x

    wall, cpu = [], []
    for _ in range(reps):
        timed = Timed(noop, cpu_inside)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            timed(x, 0)
        w1, c1 = time.perf_counter() - t0, time.thread_time() - c0
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            noop(x, 0)
        w2, c2 = time.perf_counter() - t0, time.thread_time() - c0
        wall.append((w1 - timed.seconds - w2) / calls)
        cpu.append((c1 - timed.cpu_seconds - c2) / calls)
    return statistics.median_high(wall), statistics.median_high(cpu)


def trivial_network(x, t):
    return x * 0.1


def cost_network(w_in, w, w_out, k):
    """bench/timing.h dit_s_cost_network, op for op."""

    def net(x, t):
        b = x.shape[0]
        h = x.reshape(b, 4, 16, 2, 16, 2).permute(0, 2, 4, 1, 3, 5).reshape(b * 256, 16)
        h = h.matmul(w_in)
        for _ in range(k):
            h = h.matmul(w)
        h = h.matmul(w_out)
        return h.reshape(b, 16, 16, 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(x.shape) * 0.01

    return net


def diffusers_run(torch, scheduler, net, noise, steps, seed=None):
    """One pipeline-style sampling loop; returns ((wall total, wall in network, CPU total, CPU in
    the network, wall of the network's calls alone) in seconds, network calls, final x); the CPU
    in the network is that of its calls alone unless `net` reads the CPU clock inside (then the
    last entry is its in-run wall time). A seed gives step() a generator (stochastic
    schedulers), as pipelines pass theirs."""
    net.reset()
    extra = {} if seed is None else {"generator": torch.Generator().manual_seed(seed)}
    with torch.no_grad():
        c0 = time.thread_time()
        t0 = time.perf_counter()
        scheduler.set_timesteps(steps)
        x = noise * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = net(scheduler.scale_model_input(x, t), t)
            x = scheduler.step(eps, t, x, return_dict=False, **extra)[0]
        total = time.perf_counter() - t0
        cpu = time.thread_time() - c0
        if net.cpu_inside:
            return (total, net.seconds, cpu, net.cpu_seconds, net.seconds), net.calls, x
        alone_wall, alone_cpu = network_alone(net.fn, noise, scheduler.timesteps[0], net.calls)
    return (total, net.seconds, cpu, alone_cpu, alone_wall), net.calls, x


# --------------------------------------------------------------------------------------------


def config_string(cfg):
    def fmt(v):
        return str(v).lower() if isinstance(v, bool) else str(v)

    return ",".join(f"{k}={fmt(v)}" for k, v in cfg.items())


def machine():
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu, os.cpu_count(), os.getloadavg()


def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        dims = tuple(int(d) for d in item.lower().split("x"))
        if len(dims) != 4 or min(dims) < 1:
            raise ValueError(item)
        shapes.append(dims)
    return shapes


def shape_name(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffusers", default=os.environ.get("DIFFUSERS_SRC"),
                    help="diffusers source checkout (folder with src/diffusers); default $DIFFUSERS_SRC")
    ap.add_argument("--commit", help="the diffusers commit to report when the checkout has no .git")
    ap.add_argument("--bin", default=os.environ.get(
        "DIFFUSE_BENCH_VS_DIFFUSERS", os.path.join(REPO, "build", "bench", "diffuse_bench_vs_diffusers")),
        help="the diffuse_bench_vs_diffusers program (default build/bench/...)")
    ap.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating Python/C++ rounds (default 5)")
    ap.add_argument("--runs", type=int, default=6, help="timed runs per block, trivial network (default 6)")
    ap.add_argument("--cost-runs", type=int, default=1, help="timed runs per block, cost network (default 1)")
    ap.add_argument("--matmuls", type=int, default=8,
                    help="[1024,384]x[384,384] matmuls per cost-network call (default 8; DiT-S/2 ~ 80)")
    ap.add_argument("--samplers", default=",".join(s for s, _, _ in SAMPLERS),
                    help="subset of " + ",".join(s for s, _, _ in SAMPLERS))
    ap.add_argument("--shapes", default=SHAPES, help=f"latent shapes BxCxHxW, comma-separated (default {SHAPES})")
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts, comma-separated (default 1,2)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed of the stochastic samplers (default 0)")
    ap.add_argument("--no-cost", action="store_true", help="trivial network only")
    ap.add_argument("--no-nocheck", action="store_true", help="skip the check_finite=false C++ runs")
    ap.add_argument("--no-philox", action="store_true",
                    help="skip the C++ runs of the stochastic samplers with make_philox_noise")
    ap.add_argument("--malloc", action="store_true",
                    help="C++ side on LibTorch's default CPU allocator instead of diffuse's caching one")
    ap.add_argument("--json", help="also write all raw timings here")
    args = ap.parse_args()
    if not args.diffusers:
        ap.error("give the diffusers source checkout with --diffusers or $DIFFUSERS_SRC")
    if not os.access(args.bin, os.X_OK):
        ap.error(f"'{args.bin}' is not an executable; build it: ninja -C build diffuse_bench_vs_diffusers")
    if min(args.steps, args.rounds, args.runs, args.cost_runs, args.matmuls) < 1:
        ap.error("--steps, --rounds, --runs, --cost-runs and --matmuls must be positive")
    wanted = args.samplers.split(",")
    unknown = [s for s in wanted if s not in {n for n, _, _ in SAMPLERS}]
    if unknown:
        ap.error(f"unknown sampler(s) {unknown}")
    samplers = [s for s in SAMPLERS if s[0] in wanted]
    try:
        shapes = parse_shapes(args.shapes)
    except ValueError as e:
        ap.error(f"--shapes: '{e}' is not BxCxHxW with positive sizes")
    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
        if min(thread_counts) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--threads: '{args.threads}' is not a list of positive counts")

    import numpy as np
    import torch

    diffusers, classes = import_diffusers(args.diffusers)
    commit = args.commit or diffusers_commit(args.diffusers, diffusers)

    work = tempfile.mkdtemp(prefix="bench_vs_diffusers_")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(HIDDEN, HIDDEN, generator=g) / math.sqrt(HIDDEN)
    w_in = torch.randn(PATCH, HIDDEN, generator=g) / 4.0
    w_out = torch.randn(HIDDEN, PATCH, generator=g) / math.sqrt(HIDDEN)
    for name, t in (("w", w), ("w_in", w_in), ("w_out", w_out)):
        t.numpy().astype("<f4").tofile(os.path.join(work, name + ".f32"))
    noises = {}
    for shape in shapes:
        sdir = os.path.join(work, "x".join(map(str, shape)))
        os.makedirs(sdir)
        noises[shape] = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        noises[shape].numpy().astype("<f4").tofile(os.path.join(sdir, "noise.f32"))
        for name in ("w", "w_in", "w_out"):
            os.link(os.path.join(work, name + ".f32"), os.path.join(sdir, name + ".f32"))

    # name -> (timed network, timed runs per block, warm-up steps: a full run for the cheap trivial
    # network, 2 steps for the cost model: enough for the first-call costs)
    networks = {"trivial": (Timed(trivial_network), args.runs, args.steps)}
    if not args.no_cost:
        networks["cost"] = (Timed(cost_network(w_in, w, w_out, args.matmuls), cpu_inside=True),
                            args.cost_runs, 2)
    # sides: diffusers (Python), diffuse (C++, defaults), diffuse with check_finite off (trivial net),
    # diffuse with make_philox_noise (stochastic samplers, trivial net)
    # (threads, shape, sampler, network, side) -> list of (wall, wall net, CPU, CPU net, wall of the
    # network's calls alone, timing cost per network call in wall time, in CPU time)
    runs = {}
    calls = {}
    diffs = {}
    schedulers = {key: classes[cls](**COMMON, **extra) for key, cls, extra in samplers}

    def python_block(threads, shape, key, net_name):
        net, n, warmup = networks[net_name]
        sch = schedulers[key]
        torch.set_num_threads(threads)
        seed = args.seed if key in STOCHASTIC else None
        diffusers_run(torch, sch, net, noises[shape], warmup, seed)
        probe = measure_probe(noises[shape], net.cpu_inside)
        out = None
        for _ in range(n):
            times, c, out = diffusers_run(torch, sch, net, noises[shape], args.steps, seed)
            runs.setdefault((threads, shape, key, net_name, "diffusers"), []).append(times + probe)
            calls[(threads, shape, key, net_name, "diffusers")] = c
        return out

    def cpp_block(threads, shape, key, cls, extra, net_name, check_finite, save=None, noise="per-sample"):
        _, n, warmup = networks[net_name]
        cmd = [args.bin, "--class", cls, "--config", config_string({**COMMON, **extra}),
               "--inputs", os.path.join(work, "x".join(map(str, shape))), "--shape", ",".join(map(str, shape)),
               "--network", net_name, "--matmuls", str(args.matmuls), "--steps", str(args.steps),
               "--runs", str(n), "--warmup-steps", str(warmup), "--threads", str(threads),
               "--check-finite", "1" if check_finite else "0", "--seed", str(args.seed),
               "--caching-allocator", "0" if args.malloc else "1", "--noise", noise,
               "--network-cpu", "inside" if net_name == "cost" else "alone"]
        if save:
            cmd += ["--save", save]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"bench_vs_diffusers: {' '.join(cmd)} failed:\n{p.stderr}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        side = "diffuse_philox" if noise == "philox" else "diffuse" if check_finite else "diffuse_nocheck"
        runs.setdefault((threads, shape, key, net_name, side), []).extend(
            (w, wn, c, cn, wa, r["probe_s"], r["probe_cpu_s"])
            for w, wn, c, cn, wa in zip(r["total_s"], r["network_s"], r["total_cpu_s"],
                                        r["network_cpu_s"], r["network_alone_s"]))
        calls[(threads, shape, key, net_name, side)] = r["calls"]

    floors = {}  # shape -> (fused pass, memcpy, DDIM's update kernel) in µs, minima over the rounds

    def floor_block(shape):
        """The memory floor of one update of this shape (diffuse_bench_vs_diffusers --floor 1)."""
        p = subprocess.run([args.bin, "--floor", "1", "--shape", ",".join(map(str, shape))],
                           capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"bench_vs_diffusers: the floor measurement failed:\n{p.stderr}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        old = floors.get(shape, (float("inf"),) * 3)
        floors[shape] = (min(old[0], r["floor_pass_us"]), min(old[1], r["floor_memcpy_us"]),
                         min(old[2], r["floor_ddim_kernel_us"]))

    configs = [(th, sh, net_name) for th in thread_counts for sh in shapes for net_name in networks
               if net_name == "trivial" or sh == COST_SHAPE]
    t_start = time.time()
    load0 = os.getloadavg()
    for rnd in range(args.rounds):
        for ci, (threads, shape, net_name) in enumerate(configs):
            for i, (key, cls, extra) in enumerate(samplers):
                save = os.path.join(work, f"{key}_{net_name}.diffuse.f32") if rnd == 0 else None
                blocks = [lambda: python_block(threads, shape, key, net_name),
                          lambda: cpp_block(threads, shape, key, cls, extra, net_name, True, save)]
                if net_name == "trivial" and not args.no_nocheck:
                    blocks.append(lambda: cpp_block(threads, shape, key, cls, extra, net_name, False))
                if net_name == "trivial" and key in STOCHASTIC and not args.no_philox:
                    blocks.append(lambda: cpp_block(threads, shape, key, cls, extra, net_name, True,
                                                    noise="philox"))
                if (rnd + i + ci) % 2:
                    blocks.reverse()
                py_out = None
                for b in blocks:
                    out = b()
                    if out is not None:
                        py_out = out
                if rnd == 0:
                    theirs = np.fromfile(save, dtype="<f4").reshape(shape)
                    d = float(np.abs(py_out.numpy() - theirs).max()) / float(np.abs(py_out.numpy()).max())
                    diffs[(threads, shape, key, net_name)] = d
            if threads == 1 and net_name == "trivial":
                floor_block(shape)
            print(f"round {rnd + 1}/{args.rounds}: {threads} thread(s) {shape_name(shape)} {net_name} done",
                  file=sys.stderr, flush=True)
    elapsed = time.time() - t_start
    shutil.rmtree(work, ignore_errors=True)

    # index of the total in a run record; the network time follows; the timing's cost per call at
    # PROBE[clock]
    CLOCK = {"wall": 0, "cpu": 2}
    PROBE = {"wall": 5, "cpu": 6}

    def best_overhead(cfg, side, clock):
        """(least total - least network time - calls x timing cost) / steps over the runs."""
        c, p, n, rs = CLOCK[clock], PROBE[clock], calls[cfg + (side,)], runs[cfg + (side,)]
        return (min(r[c] for r in rs) - min(r[c + 1] for r in rs) - n * min(r[p] for r in rs)) / args.steps

    def median_call(side, index, shape=None, threads=None):
        """Median of one side's trivial-network time per call (all runs, or those of one shape and
        thread count)."""
        return statistics.median_high(r[index] / calls[key] for key, rs in runs.items()
                                      if key[-1] == side and key[3] == "trivial"
                                      and shape in (None, key[1]) and threads in (None, key[0])
                                      for r in rs)

    def median_probe(side, clock):
        return statistics.median_high(r[PROBE[clock]] for key, rs in runs.items() if key[-1] == side
                                      for r in rs)

    def best_total(cfg, side, clock):
        return min(r[CLOCK[clock]] for r in runs[cfg + (side,)])

    def best_call(cfg, side, clock):
        c = CLOCK[clock]
        return min(r[c + 1] / calls[cfg + (side,)] for r in runs[cfg + (side,)])

    def diff_cell(key, cfg):
        return "stochastic" if key in STOCHASTIC else f"{diffs[cfg]:.1e}"

    cpu, ncpu, _ = machine()
    print(f"diffusers {diffusers.__version__} at commit {commit}; torch {torch.__version__} "
          f"(Python {platform.python_version()}); diffuse C++ program {os.path.relpath(args.bin, REPO)} "
          f"({'LibTorch default allocator' if args.malloc else 'caching CPU allocator'})")
    print(f"{cpu}, {ncpu} hardware threads; load average {load0[0]:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end; {elapsed:.0f} s in all")
    print(f"float32, DDPM linear betas 1e-4..0.02, T = 1000, epsilon prediction, {args.steps} steps; "
          f"{args.rounds} alternating rounds x {args.runs} runs (trivial) / {args.cost_runs} runs "
          f"(cost model, {args.matmuls} matmuls); minima over all runs; wall = elapsed time, CPU = the "
          "sampling thread's CPU time (1 thread only; not inflated by preemption; the network's from "
          "its calls alone)")
    print("timing cost per network call, subtracted from each run's overhead (medians; wall / CPU "
          f"µs): diffusers {median_probe('diffusers', 'wall') * 1e6:.2f} / "
          f"{median_probe('diffusers', 'cpu') * 1e6:.2f}, diffuse {median_probe('diffuse', 'wall') * 1e6:.2f} / "
          f"{median_probe('diffuse', 'cpu') * 1e6:.2f}")
    print("trivial network's time per call in the runs / alone after each run (medians; wall µs): "
          f"diffusers {median_call('diffusers', 1) * 1e6:.2f} / {median_call('diffusers', 4) * 1e6:.2f}, "
          f"diffuse {median_call('diffuse', 1) * 1e6:.2f} / {median_call('diffuse', 4) * 1e6:.2f}")

    print("\nSummary: diffuse ÷ diffusers, overhead per step, trivial network (CPU time with 1 thread, "
          "wall time with more):\n")
    cols = [(th, sh) for th in thread_counts for sh in shapes]
    print("| sampler | " + " | ".join(f"{shape_name(sh)}, {th} thr." for th, sh in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    summary_rows = [(key, "diffuse", key) for key, _, _ in samplers]
    if not args.no_philox:
        summary_rows += [(key, "diffuse_philox", f"{key}, philox noise") for key, _, _ in samplers
                         if key in STOCHASTIC]
    for key, side, label in summary_rows:
        cells = []
        for th, sh in cols:
            clock = "cpu" if th == 1 else "wall"
            cfg = (th, sh, key, "trivial")
            cells.append(f"{best_overhead(cfg, side, clock) / best_overhead(cfg, 'diffusers', clock):.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")

    for th, sh in cols:
        print(f"\nOverhead per step, trivial network, {shape_name(sh)}, {th} thread(s) (µs/step):\n")
        head = "| sampler (diffusers class) | diffusers, wall | diffuse, wall | ÷, wall "
        if th == 1:
            head += "| diffusers, CPU | diffuse, CPU | ÷, CPU "
        if not args.no_nocheck:
            head += f"| diffuse check_finite off, {'CPU' if th == 1 else 'wall'} | ÷ "
        head += "| final x: max abs diff ÷ max abs x |"
        print(head)
        print("|---" * (head.count("|") - 1) + "|")
        for key, cls, _ in samplers:
            cfg = (th, sh, key, "trivial")
            dw, cw = (best_overhead(cfg, s, "wall") for s in ("diffusers", "diffuse"))
            row = f"| {key} (`{cls}`) | {dw * 1e6:.1f} | {cw * 1e6:.1f} | **{cw / dw:.3f}** "
            clock = "wall"
            if th == 1:
                clock = "cpu"
                dc, cc = (best_overhead(cfg, s, "cpu") for s in ("diffusers", "diffuse"))
                row += f"| {dc * 1e6:.1f} | {cc * 1e6:.1f} | **{cc / dc:.3f}** "
            if not args.no_nocheck:
                nc = best_overhead(cfg, "diffuse_nocheck", clock)
                row += f"| {nc * 1e6:.1f} | {nc / best_overhead(cfg, 'diffusers', clock):.3f} "
            print(row + f"| {diff_cell(key, cfg)} |")
        for key, cls, _ in samplers:
            if key not in STOCHASTIC or args.no_philox:
                continue
            cfg = (th, sh, key, "trivial")
            dw, pw = (best_overhead(cfg, s, "wall") for s in ("diffusers", "diffuse_philox"))
            row = f"| {key}, diffuse with philox noise | {dw * 1e6:.1f} | {pw * 1e6:.1f} | **{pw / dw:.3f}** "
            if th == 1:
                dc, pc = (best_overhead(cfg, s, "cpu") for s in ("diffusers", "diffuse_philox"))
                row += f"| {dc * 1e6:.1f} | {pc * 1e6:.1f} | **{pc / dc:.3f}** "
            if not args.no_nocheck:
                row += "| – | – "
            print(row + "| stochastic |")

    if floors:
        print("\nMemory floor, 1 thread, CPU time: the fastest fused pass a * ca + b * cb over the shape "
              "on preallocated float32 buffers (reads two arrays, writes one: a DDIM or Euler update), "
              "and a memcpy of one array; per-step overhead (CPU time) ÷ the pass. Also the kernel "
              "of DDIM's step alone on preallocated buffers (x0 = (x - u cu) / d and x0 ca + u cb with "
              "u's NaN/Inf flag: two reads, two writes, an exact division per entry):\n")
        fshapes = [sh for sh in shapes if sh in floors]
        print("| | " + " | ".join(shape_name(sh) for sh in fshapes) + " |")
        print("|---" * (len(fshapes) + 1) + "|")
        print("| fused pass, µs | " + " | ".join(f"{floors[sh][0]:.2f}" for sh in fshapes) + " |")
        print("| memcpy, µs | " + " | ".join(f"{floors[sh][1]:.2f}" for sh in fshapes) + " |")
        print("| DDIM's update kernel, µs | " + " | ".join(f"{floors[sh][2]:.2f}" for sh in fshapes) + " |")
        for side in ("diffusers", "diffuse"):
            print(f"| trivial network per call, {side}: in the runs / alone, wall µs | " + " | ".join(
                f"{median_call(side, 1, sh, 1) * 1e6:.2f} / {median_call(side, 4, sh, 1) * 1e6:.2f}"
                for sh in fshapes) + " |")
        for key, _, _ in samplers:
            cells = [f"{best_overhead((1, sh, key, 'trivial'), 'diffuse', 'cpu') * 1e6 / floors[sh][0]:.2f}"
                     for sh in fshapes]
            print(f"| {key} ÷ floor | " + " | ".join(cells) + " |")
        if any(key == "ddim" for key, _, _ in samplers):
            cells = [f"{best_overhead((1, sh, 'ddim', 'trivial'), 'diffuse', 'cpu') * 1e6 / floors[sh][2]:.2f}"
                     for sh in fshapes]
            print("| ddim ÷ its update kernel | " + " | ".join(cells) + " |")

    if "cost" in networks:
        cost_flop = args.matmuls * 2.0 * BATCH * TOKENS * HIDDEN * HIDDEN
        for th in thread_counts:
            clock = "cpu" if th == 1 else "wall"
            cfgs = [(th, COST_SHAPE, key, "cost") for key, _, _ in samplers]
            call = min(best_call(cfg, side, clock) for cfg in cfgs for side in ("diffuse", "diffusers"))
            dit_call = call * DIT_S_FLOP / cost_flop
            print(f"\nEnd to end (ms per {args.steps}-step run), [4, 4, 32, 32], {th} thread(s), and the "
                  "cost model:\n")
            print("| sampler | trivial net, wall: diffusers | diffuse | ÷ | cost model, wall: diffusers | "
                  f"diffuse | ÷ | cost model, {clock}: diffusers | diffuse | ÷ | overhead with cost model, "
                  f"{clock} µs/step: diffusers | diffuse | diffusers overhead % of a DiT-S/2 forward | "
                  "diffuse overhead % of a DiT-S/2 forward | final x (cost model): max abs diff ÷ max abs x |")
            print("|---" * 16 + "|")
            for key, _, _ in samplers:
                tcfg, ccfg = (th, COST_SHAPE, key, "trivial"), (th, COST_SHAPE, key, "cost")
                row = f"| {key} "
                for cfg, clk, fmt in ((tcfg, "wall", ".2f"), (ccfg, "wall", ".0f"), (ccfg, clock, ".0f")):
                    d, c = (best_total(cfg, s, clk) for s in ("diffusers", "diffuse"))
                    row += f"| {d * 1e3:{fmt}} | {c * 1e3:{fmt}} | {c / d:.3f} "
                oc = [best_overhead(ccfg, s, clock) for s in ("diffusers", "diffuse")]
                nfe = calls[tcfg + ("diffuse",)] / args.steps
                ov = [best_overhead(tcfg, s, clock) for s in ("diffusers", "diffuse")]
                row += (f"| {oc[0] * 1e6:.0f} | {oc[1] * 1e6:.0f} | {100 * ov[0] / (nfe * dit_call):.4f}% | "
                        f"{100 * ov[1] / (nfe * dit_call):.4f}% | {diff_cell(key, ccfg)} |")
                print(row)
            cpp_call = min(best_call(cfg, "diffuse", clock) for cfg in cfgs)
            py_call = min(best_call(cfg, "diffusers", clock) for cfg in cfgs)
            print(f"\nCost model call ({args.matmuls} matmuls), {clock} time: {cpp_call * 1e3:.1f} ms in C++, "
                  f"{py_call * 1e3:.1f} ms in Python = {cost_flop / call / 1e9:.1f} GFLOP/s, so a full DiT-S/2 "
                  f"forward ({DIT_S_FLOP / 1e9:.1f} GFLOP) ~ {dit_call * 1e3:.0f} ms; the % columns divide the "
                  "trivial-network overhead per step by that (NFE/step = 1 for all)")
    if args.json:
        def k(cfg):
            return "/".join(str(p) if not isinstance(p, tuple) else "x".join(map(str, p)) for p in cfg)

        with open(args.json, "w") as f:
            json.dump({"diffusers_commit": commit, "steps": args.steps, "matmuls": args.matmuls,
                       "allocator": "malloc" if args.malloc else "caching",
                       "runs": {k(c): v for c, v in runs.items()},
                       "calls": {k(c): v for c, v in calls.items()},
                       "relative_max_abs_diff": {k(c): v for c, v in diffs.items()},
                       "floor_us": {"x".join(map(str, sh)): v for sh, v in floors.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
