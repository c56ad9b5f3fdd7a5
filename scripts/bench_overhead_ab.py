#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Per-step sampler overhead of two builds of diffuse, alternating (before / after a change).

    /usr/bin/python3 scripts/bench_overhead_ab.py BIN_A BIN_B [--threads 1] [--rounds 5]
        [--shape 4,4,32,32] [--runs 5] [--steps 50] [--options-a "..."] [--options-b "..."]

BIN_A and BIN_B are two diffuse_bench_vs_diffusers programs (bench/vs_diffusers.cpp; copy the
first one aside before rebuilding; or one program twice with --options-a / --options-b, extra
options of each side, e.g. --options-a "--network-cpu inside"). Each round runs DDIM, DPM++ 2M, 3M, Euler (per-sample noise)
and Euler a, DDPM (Philox noise; scripts/bench_vs_diffusers.py's samplers and configurations) on
the trivial network (eps = 0.1 x) with both programs, the
order of the two swapped every round, so that the load of a shared machine hits both alike. The
input noise is drawn here (numpy, seed 0) and written to a temporary folder.

Per-step overhead = (the sampling thread's CPU time - the CPU time of the network's calls, measured
alone after each run - the timing's own cost per network call x calls) / steps, as
scripts/bench_vs_diffusers.py counts it (programs built before 2026-12-07 read the CPU clock around
every network call instead, which slows the step they time: compare two programs of one kind); the report
gives each sampler's median over all runs of each program, B / A, and both against the memory floor
of the shape (`--floor 1` of BIN_B: the fused pass a*ca + b*cb, and the kernel of DDIM's step).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vs_diffusers import COMMON, SAMPLERS, STOCHASTIC, config_string  # noqa: E402

# (name, diffusers class, config string, noise): the stochastic ones with the Philox source.
CASES = [(key, cls, config_string({**COMMON, **extra}), "philox" if key in STOCHASTIC else "per-sample")
         for key, cls, extra in SAMPLERS]


def run(binary, extra, args, inputs, cls, config, noise):
    cmd = [binary, "--class", cls, "--config", config, "--inputs", inputs, "--shape", args.shape,
           "--network", "trivial", "--steps", str(args.steps), "--runs", str(args.runs),
           "--warmup-steps", str(args.steps), "--threads", str(args.threads), "--check-finite", "1",
           "--seed", "0", "--caching-allocator", "1", "--noise", noise] + extra.split()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_overhead_ab: {' '.join(cmd)} failed:\n{p.stderr}")
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return [(t - n - j["probe_cpu_s"] * j["calls"]) / j["steps"] * 1e6
            for t, n in zip(j["total_cpu_s"], j["network_cpu_s"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--shape", default="4,4,32,32")
    ap.add_argument("--options-a", default="", help="extra options of BIN_A's runs")
    ap.add_argument("--options-b", default="", help="extra options of BIN_B's runs")
    args = ap.parse_args()
    import numpy as np

    shape = [int(v) for v in args.shape.split(",")]
    with tempfile.TemporaryDirectory() as inputs:
        rng = np.random.default_rng(0)
        rng.standard_normal(int(np.prod(shape)), dtype=np.float32).astype("<f4").tofile(
            os.path.join(inputs, "noise.f32"))
        per = {}
        for r in range(args.rounds):
            for name, cls, config, noise in CASES:
                sides = [("A", args.bin_a, args.options_a), ("B", args.bin_b, args.options_b)]
                for side, b, extra in (sides if r % 2 == 0 else sides[::-1]):
                    per.setdefault((name, side), []).extend(run(b, extra, args, inputs, cls, config, noise))
    p = subprocess.run([args.bin_b, "--floor", "1", "--shape", args.shape], capture_output=True,
                       text=True, check=True)
    floor = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"A = {args.bin_a} {args.options_a}\nB = {args.bin_b} {args.options_b}\nshape [{args.shape}], {args.threads} thread(s), "
          f"{args.rounds} alternating rounds x {args.runs} runs; medians, CPU µs per step")
    print(f"floor (BIN_B --floor 1): fused pass {floor['floor_pass_us']:.2f} µs, DDIM's kernel "
          f"{floor.get('floor_ddim_kernel_us', float('nan')):.2f} µs, ISA {floor['isa']}\n")
    print("| sampler | A | B | B ÷ A | A ÷ floor | B ÷ floor |")
    print("|---|---|---|---|---|---|")
    for name, *_ in CASES:
        a = statistics.median(per[(name, "A")])
        b = statistics.median(per[(name, "B")])
        f = floor["floor_pass_us"]
        print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.3f} | {a / f:.2f} | {b / f:.2f} |")


if __name__ == "__main__":
    main()
