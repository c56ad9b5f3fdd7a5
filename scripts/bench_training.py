#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Training throughput: `diffuse train` against a plain PyTorch training loop, images/s.

    /usr/bin/python3 scripts/bench_training.py --dit /path/to/DiT \
        [--bin build/examples/cli/diffuse] [--threads 1,2] [--runs 6] [--steps 200] \
        [--data /usr/share/datasets/fashion-mnist] [--json FILE]

The job: S optimiser steps of the class-conditional DiT "tiny" (patch 4, learn_sigma off, 330,512
trainable parameters) on Fashion-MNIST, as docs/tour/train.json sets it up: the denoising objective
(epsilon target, t uniform over the 1000 steps of the linear-beta DDPM schedule, plain MSE), batch
64, AdamW (lr 3e-4 with 200 linear warm-up steps, betas 0.9 / 0.999, eps 1e-8, no weight decay),
gradient norm clipped to 1, EMA 0.9999 with warm-up after every step, label dropout 0.1, float32
on the CPU, the data set in memory as float32 in [-1, 1] (no augmentation), a fresh random order
every epoch.

- diffuse: `diffuse -v --threads T --no-progress train --out DIR --set ...` (the launcher, as users
  run it; it also mends OpenBLAS's kernel choice, docs/cli.md#threads), with no time budget,
  previews or intermediate checkpoints. Its rate is the one it logs at the end, "images/s in
  training steps alone": S x 64 over the summed time of its S train_step() calls (batch selection,
  label dropout, forward, loss, backward, clipping, AdamW, EMA).
- PyTorch: this script in worker mode, `python3 bench_training.py --worker ...`: torch with
  torch.set_num_threads(T), DiT's reference `models.py` (facebookresearch/DiT at ed81ce2, with the
  timm stand-in of bench_end_to_end.py) configured as diffuse's tiny preset (it drops labels
  itself in train mode), the same data, objective, optimiser, clipping and EMA written as a plain
  loop, no torch.compile. Its rate has the same definition: S x 64 over the summed time of its S
  steps, from the batch's indices to the EMA update and the loss's .item().

So both sides leave out the process start, loading the data, building the model and whatever
follows the last step (diffuse's final checkpoint, model file and sample grid). The first step
(allocations, AdamW's state) is in on both sides. Each run is a fresh process. The PyTorch worker
runs twice per block: with OpenBLAS's own kernel choice (what `python3` gets) and with the
OPENBLAS_CORETYPE diffuse's launcher picks, so the table separates the BLAS kernels from the rest;
where the two are the same kernels, the second run would repeat the first and is left out.
Blocks alternate and swap order every round; every ratio comes from this one run. The workers get
libgomp's default wait policy (the launcher sets OMP_WAIT_POLICY=PASSIVE for diffuse): with 2
threads next to another busy process their spinning threads slow them down, so compare 2-thread
rows on an otherwise idle machine only. Each table row also shows the mean training loss (diffuse:
its loss.csv row over all steps) as a check that both sides train the same thing.
Needs python3-torch and python3-numpy (Debian), a built diffuse and Fashion-MNIST's gzipped idx
files.
"""
import argparse
import copy
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_end_to_end import DIT_CONFIG, openblas_core, own_openblas_core, timm_stand_in  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.environ.get("DIFFUSE_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
# The config both sides train with (diffuse's keys; the worker implements each one).
TRAIN = dict(objective="denoising", schedule="discrete", preset="tiny", patch=4, batch_size=64,
             lr=3e-4, warmup=200, grad_clip=1.0, ema_decay=0.9999, label_dropout=0.1)
TIMESTEPS, BETA_START, BETA_END = 1000, 1e-4, 0.02  # diffuse's "discrete" schedule defaults


# --------------------------------------------------------------------------------------------
# Worker: the plain PyTorch loop


def load_fashion_mnist(folder):
    """The training split as float32 [60000, 1, 28, 28] in [-1, 1] and int64 labels."""
    import numpy as np
    import torch

    def idx(name, header):
        with gzip.open(os.path.join(folder, name)) as f:
            return np.frombuffer(f.read(), np.uint8, offset=header)

    images = torch.from_numpy(idx("train-images-idx3-ubyte.gz", 16).copy())
    labels = torch.from_numpy(idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
    return images.float().div(127.5).sub(1.0).view(-1, 1, 28, 28), labels


def worker(a):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    timm_stand_in(torch)
    sys.path.insert(0, a.dit)
    import models as dit_models  # facebookresearch/DiT's models.py

    data, labels = load_fashion_mnist(a.data)
    torch.manual_seed(a.seed)
    model = dit_models.DiT(**dict(DIT_CONFIG, patch_size=TRAIN["patch"],
                                  class_dropout_prob=TRAIN["label_dropout"]))
    model.train()
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0)
    ac = torch.cumprod(1 - torch.linspace(BETA_START, BETA_END, TIMESTEPS, dtype=torch.float64), 0)
    sqrt_ac, sqrt_1m_ac = ac.sqrt().float(), (1 - ac).sqrt().float()
    n, b = data.shape[0], TRAIN["batch_size"]
    perm, pos, loss_sum, step_s = None, n, 0.0, []
    for step in range(1, a.steps + 1):
        t0 = time.perf_counter()
        if pos + b > n:  # a new epoch (drop_last)
            perm, pos = torch.randperm(n), 0
        i = perm[pos:pos + b]
        pos += b
        x0, y = data.index_select(0, i), labels.index_select(0, i)
        t = torch.randint(0, TIMESTEPS, (b,))
        noise = torch.randn_like(x0)
        x_t = sqrt_ac[t].view(-1, 1, 1, 1) * x0 + sqrt_1m_ac[t].view(-1, 1, 1, 1) * noise
        loss = F.mse_loss(model(x_t, t, y), noise)  # the model drops labels (train mode)
        for g in opt.param_groups:
            g["lr"] = TRAIN["lr"] * min(1.0, step / TRAIN["warmup"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()
        decay = min(TRAIN["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.mul_(decay).add_(p, alpha=1 - decay)
        loss_sum += loss.item()
        step_s.append(time.perf_counter() - t0)
    print(json.dumps({
        "images_per_s": a.steps * b / sum(step_s), "first_step_s": step_s[0],
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "mean_loss": loss_sum / a.steps, "blas": openblas_core()}))


# --------------------------------------------------------------------------------------------
# Driver


def run(cmd, env):
    """Runs cmd; returns (wall s, stdout + stderr). Exits on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    if p.returncode != 0:
        sys.exit(f"bench_training: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}")
    return time.perf_counter() - t0, p.stdout


def grab(pattern, text, what):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"bench_training: no {what} in diffuse's log:\n{text}")
    return m.group(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dit", default=os.environ.get("DIT_SRC"), help="facebookresearch/DiT checkout")
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "examples", "cli", "diffuse"))
    ap.add_argument("--data", default=DEFAULT_DATA, help="Fashion-MNIST folder (gzipped idx files)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=6, help="runs of each side per thread count")
    ap.add_argument("--steps", type=int, default=200, help="optimiser steps per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.worker:
        a.threads = int(a.threads)
        return worker(a)
    if not a.dit or not os.path.isfile(os.path.join(a.dit, "models.py")):
        sys.exit("bench_training: --dit must name a facebookresearch/DiT checkout (models.py)")
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"bench_training: no diffuse program at {a.bin} (build it, or pass --bin)")
    threads = [int(v) for v in a.threads.split(",")]
    work = tempfile.mkdtemp(prefix="diffuse_trainbench_")
    base_env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    sets = dict(TRAIN, minutes=0, steps=a.steps, seed=a.seed, data_dir=a.data, sample_every=0,
                checkpoint_every=0, log_every=a.steps, eval=0)
    set_args = [arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")]

    # The kernels the launcher picks (logged with -v before anything is trained).
    _, log = run([a.bin, "-v", "--threads", "1", "train", "--print-config"], base_env)
    launcher_core = grab(r"OpenBLAS (\S+) kernels", log, "OpenBLAS kernels")
    # The mended run only where it runs other kernels than python3's own.
    mended = launcher_core.lower() != own_openblas_core(sys.executable or "/usr/bin/python3",
                                                        base_env).lower()

    def diffuse(th):
        out = os.path.join(work, "run")
        wall, log = run([a.bin, "-v", "--threads", str(th), "--no-progress", "train", "--out", out]
                        + set_args, base_env)
        with open(os.path.join(out, "loss.csv")) as f:  # one row: the mean over every step
            mean_loss = float(f.read().splitlines()[-1].split(",")[1])
        shutil.rmtree(out)
        steps = int(grab(r"finished after (\d+) steps", log, "step count"))
        if steps != a.steps:
            sys.exit(f"bench_training: diffuse ran {steps} steps, not {a.steps}:\n{log}")
        return {"images_per_s": float(grab(r"([\d.]+) images/s in training steps alone", log,
                                           "training rate")),
                "params": int(grab(r"\((\d+) parameters\)", log, "parameter count")),
                "mean_loss": mean_loss,
                "blas": grab(r"OpenBLAS (\S+) kernels", log, "OpenBLAS kernels"), "wall_s": wall}

    def pytorch(th, coretype):
        env = dict(base_env, **({"OPENBLAS_CORETYPE": coretype} if coretype else {}))
        wall, out = run([sys.executable or "/usr/bin/python3", os.path.abspath(__file__), "--worker",
                         "--dit", a.dit, "--data", a.data, "--threads", str(th), "--steps",
                         str(a.steps), "--seed", str(a.seed)], env)
        line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]  # after any warnings
        return dict(json.loads(line), wall_s=wall)

    sides = {"diffuse": "diffuse train", "pytorch": "PyTorch loop, OpenBLAS's own kernels"}
    if mended:
        sides["pytorch_mended"] = f"PyTorch loop, OPENBLAS_CORETYPE={launcher_core}"
    runs = {}  # (threads, side) -> list of run dicts
    t0, load0 = time.time(), os.getloadavg()[0]
    for rnd in range(a.runs):
        for ti, th in enumerate(threads):
            blocks = [("diffuse", lambda: diffuse(th)), ("pytorch", lambda: pytorch(th, None)),
                      ("pytorch_mended", lambda: pytorch(th, launcher_core))][:len(sides)]
            if (rnd + ti) % 2:
                blocks.reverse()
            for side, fn in blocks:
                runs.setdefault((th, side), []).append(fn())
            print(f"round {rnd + 1}/{a.runs}: {th} thread(s) done", file=sys.stderr, flush=True)
    elapsed = time.time() - t0
    shutil.rmtree(work, ignore_errors=True)

    cpu_name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name")), "?")
    first = {s: runs[(threads[0], s)][0] for s in sides}
    params = {s: first[s]["params"] for s in sides}
    print(f"DiT-tiny patch 4 (trainable parameters: diffuse {params['diffuse']:,}, PyTorch "
          f"{params['pytorch']:,}), denoising, batch {TRAIN['batch_size']}, {a.steps} steps per "
          f"run, float32 CPU; {cpu_name}, {os.cpu_count()} hardware threads; load {load0:.2f} at the "
          f"start, {os.getloadavg()[0]:.2f} at the end; {a.runs} alternating rounds, {elapsed:.0f} s "
          f"in all; OpenBLAS kernels: diffuse {first['diffuse']['blas']}, python3's own "
          f"{first['pytorch']['blas'] or '?'}"
          + (f", mended {first['pytorch_mended']['blas'] or '?'}" if mended else
             " (the launcher's too: the PyTorch loop runs once per round)"))
    print(f"\nImages/s in the training steps alone, {a.runs} runs per side (fresh processes):\n")
    print("| threads | side | min | median | max | max ÷ min | diffuse ÷ side, medians "
          "| diffuse ÷ side, bests | mean loss |")
    print("|---" * 9 + "|")
    summary = {}
    for th in threads:
        d = [r["images_per_s"] for r in runs[(th, "diffuse")]]
        for side, label in sides.items():
            v = [r["images_per_s"] for r in runs[(th, side)]]
            s = summary[f"{th}/{side}"] = {"min": min(v), "median": statistics.median(v), "max": max(v),
                                           "spread": max(v) / min(v),
                                           "ratio_median": statistics.median(d) / statistics.median(v),
                                           "ratio_best": max(d) / max(v),
                                           "mean_loss": statistics.median([r["mean_loss"] for r in
                                                                runs[(th, side)]])}
            ratios = ("—", "—") if side == "diffuse" else (f"**{s['ratio_median']:.2f}**",
                                                           f"{s['ratio_best']:.2f}")
            print(f"| {th} | {label} | {s['min']:.1f} | {s['median']:.1f} | {s['max']:.1f} "
                  f"| {s['spread']:.3f} | {ratios[0]} | {ratios[1]} | {s['mean_loss']:.4f} |")
    if params["diffuse"] != params["pytorch"]:
        print(f"\nwarning: the two models differ in size ({params['diffuse']} / {params['pytorch']})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"steps": a.steps, "summary": summary,
                       "runs": {f"{k[0]}/{k[1]}": v for k, v in runs.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
