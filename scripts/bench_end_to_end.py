#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""End to end with the shipped model: `diffuse sample` against PyTorch + diffusers, one run.

    /usr/bin/python3 scripts/bench_end_to_end.py --dit /path/to/DiT --diffusers /path/to/diffusers \
        [--bin build/examples/cli/diffuse] [--images 40,400] [--threads 1,2] [--steps 50] \
        [--rounds 3] [--network shipped|dit-s2] [--json FILE]

The job: N class-conditional samples of the shipped Fashion-MNIST DiT (training/assets/
fashion_mnist_dit.pt, diffuse's default model) with DPM-Solver++ 2M, 50 steps, classifier-free
guidance 2, classes 0..9 repeating, seed 0, float32 on the CPU, as `diffuse sample -n N` does it
by default. Each run is a fresh process, timed from outside (wall time, and the child's CPU time
from wait4: user + system, every thread), so both sides pay their start-up and model load:

- diffuse: `diffuse --threads T -q sample -n N --steps 50 --seed 0 -o out.png --save-tensor x.npy`
  (the launcher, as users run it: it also mends OpenBLAS's kernel choice, docs/cli.md#threads);
- PyTorch + diffusers: this script in worker mode, `python3 bench_end_to_end.py --worker ...`:
  imports torch, DiT's reference `models.py` (facebookresearch/DiT at ed81ce2, with a small stand-in
  for the three timm layers it imports: PatchEmbed, Attention, Mlp, written as timm 0.9 computes them
  on torch 1.13) and diffusers' DPMSolverMultistepScheduler (the import shim of
  bench_vs_diffusers.py), loads the shipped weights (the file is a LibTorch archive of a state dict
  with DiT's own key names: torch.jit.load reads it), and runs the diffusers loop with DiT's
  classifier-free guidance (one batched call on [x; x] with [y; null], eps = u + s (c - u)), the
  model card's clip_sample (x0 clipped to [-1, 1], handed to the scheduler as the eps it implies), on
  the timesteps diffuse's record lists, from the per-sample noise diffuse draws (image i:
  torch.Generator().manual_seed(seed + i)). It writes the final x as .npy.

--network dit-s2 runs the same job on a DiT-S/2-sized network instead (the DiT paper's S/2 on
32x32x4 latents: 12 blocks of width 384, 1000 classes, learn_sigma; 33M parameters, 6 GMAC per
image and call), with random weights that this script writes first (reference models.py, seeded
--seed, every weight but the fixed position embedding drawn from N(0, 0.02^2)) as a torch.save()
state dict, which diffuse reads as it reads the published DiT checkpoints (`--model FILE
--model-card vae=`: the latents are compared, not decoded); CFG 4 on channels 0..2 as DiT's
forward_with_cfg (the reference card's guided_channels), no clip_sample. It is 550x the shipped
model's arithmetic: use a few images and steps on a CPU.

The worker runs twice per block: with OpenBLAS's own kernel choice (what `python3` gets) and with
the OPENBLAS_CORETYPE diffuse's launcher picks, so the table separates the BLAS kernels from the
rest; where the two are the same kernels (OpenBLAS knows the CPU), the second run would repeat the
first and is left out. The launcher's kernels and the grid's timesteps come from a one-image
diffuse run before the rounds. Blocks alternate and swap order every round; every ratio comes from this one run, and a
table gives each side's run-to-run spread (max / min over the rounds). The first
round also compares the two sides' final images (x clamped to [-1, 1]: max |x_diffusers -
x_diffuse| / max |x|; float32 rounding, amplified by the first step's 1 / alpha).
Needs python3-torch, python3-numpy and python3-packaging (Debian) and a built diffuse.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIT_COMMIT = "ed81ce2229091fd4ecc9a223645f95cf379d582b"
MODEL = os.path.join(REPO, "training", "assets", "fashion_mnist_dit.pt")
# The shipped model's card (training/assets/README.md): DiT "tiny", patch 4 on 28x28x1.
DIT_CONFIG = dict(input_size=28, patch_size=4, in_channels=1, hidden_size=64, depth=4, num_heads=4,
                  mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10, learn_sigma=False)
CFG = 2.0
# --network dit-s2: a DiT-S/2-sized network (the DiT paper's S/2 on 32x32x4 latents, 1000 classes,
# learn_sigma), random weights written by this script: time does not depend on the values.
S2_CONFIG = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=384, depth=12, num_heads=6,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True)
S2_CFG = 4.0  # DiT's sample.py default


# --------------------------------------------------------------------------------------------
# Worker: PyTorch + diffusers


def timm_stand_in(torch):
    """timm.models.vision_transformer's PatchEmbed, Attention and Mlp as DiT uses them."""
    nn = torch.nn

    class PatchEmbed(nn.Module):
        def __init__(self, img_size, patch_size, in_chans, embed_dim, bias=True):
            super().__init__()
            self.patch_size = (patch_size, patch_size)
            self.num_patches = (img_size // patch_size) ** 2
            self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, bias=bias)

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)

    class Attention(nn.Module):
        def __init__(self, dim, num_heads=8, qkv_bias=False, **_):
            super().__init__()
            self.num_heads, self.head_dim = num_heads, dim // num_heads
            self.scale = self.head_dim ** -0.5
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            b, n, c = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            q = q * self.scale
            attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
            return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))

    class Mlp(nn.Module):
        def __init__(self, in_features, hidden_features=None, act_layer=nn.GELU, drop=0.0, **_):
            super().__init__()
            self.fc1 = nn.Linear(in_features, hidden_features)
            self.act = act_layer()
            self.fc2 = nn.Linear(hidden_features, in_features)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    vt = types.ModuleType("timm.models.vision_transformer")
    vt.PatchEmbed, vt.Attention, vt.Mlp = PatchEmbed, Attention, Mlp
    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    timm.models, models.vision_transformer = models, vt
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.vision_transformer": vt})


def worker(a):
    t_start = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_vs_diffusers import import_diffusers

    _, classes = import_diffusers(a.diffusers)
    timm_stand_in(torch)  # after diffusers, which probes for a real timm
    sys.path.insert(0, a.dit)
    import models as dit_models  # facebookresearch/DiT's models.py

    t_imported = time.perf_counter()
    s2 = a.network == "dit-s2"
    cfgd = S2_CONFIG if s2 else DIT_CONFIG
    with torch.no_grad():
        model = dit_models.DiT(**cfgd)
        if s2:  # a torch.save() state dict with DiT's own names, as the published checkpoints
            state = torch.load(a.model_file, map_location="cpu")
        else:  # a LibTorch archive of a state dict with DiT's key names
            state = {k[len("model."):]: v for k, v in torch.jit.load(MODEL).state_dict().items()}
        model.load_state_dict(state)
        model.eval()
        sched = classes["DPMSolverMultistepScheduler"](
            num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
            prediction_type="epsilon", algorithm_type="dpmsolver++", solver_order=2,
            solver_type="midpoint", lower_order_final=True)
        sched.set_timesteps(timesteps=[int(t) for t in a.timesteps.split(",")])
        t_loaded = time.perf_counter()
        n, c, size, classes_n = a.images, cfgd["in_channels"], cfgd["input_size"], cfgd["num_classes"]
        x = torch.cat([torch.randn(1, c, size, size, generator=torch.Generator().manual_seed(a.seed + i))
                       for i in range(n)])
        x = x * sched.init_noise_sigma
        y = torch.arange(n) % classes_n
        y_in = torch.cat([y, torch.full_like(y, classes_n)])  # the null class
        for t in sched.timesteps:
            t_in = torch.full((2 * n,), float(t))
            out = model(torch.cat([x, x]), t_in, y_in)[:, :c]  # learn_sigma: the eps channels
            cond, uncond = out.chunk(2)
            if s2:  # DiT's forward_with_cfg guides channels 0..2 only (the card's guided_channels)
                eps = cond.clone()
                eps[:, :3] = uncond[:, :3] + a.cfg * (cond[:, :3] - uncond[:, :3])
            else:
                eps = uncond + a.cfg * (cond - uncond)
                # The model card's clip_sample=true: x0 clipped to [-1, 1] (DPMSolverMultistep-
                # Scheduler has no clip_sample; the clipped x0, as the eps it implies, is what
                # diffuse uses).
                ab = sched.alphas_cumprod[int(t)]
                alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
                x0 = ((x - sigma * eps) / alpha).clamp(-1, 1)
                eps = (x - alpha * x0) / sigma
            x = sched.step(eps, t, x).prev_sample
        t_sampled = time.perf_counter()
    np.save(a.out, x.numpy())
    print(json.dumps({"import_s": t_imported - t_start, "load_s": t_loaded - t_imported,
                      "sample_s": t_sampled - t_loaded, "blas": openblas_core()}))


def make_s2(a):
    """Writes the random DiT-S/2 state dict (torch.save, DiT's key names) to a.make_s2."""
    import torch

    timm_stand_in(torch)
    sys.path.insert(0, a.dit)
    import models as dit_models

    torch.manual_seed(a.seed)
    model = dit_models.DiT(**S2_CONFIG)
    with torch.no_grad():  # DiT zero-initialises its adaLN and output layers: make them non-zero
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.normal_(0.0, 0.02)
    torch.save(model.state_dict(), a.make_s2)


def openblas_core():
    """openblas_get_corename() of the OpenBLAS this process has loaded ("" without one)."""
    import ctypes

    try:
        f = ctypes.CDLL("libopenblas.so.0").openblas_get_corename
    except (OSError, AttributeError):
        return ""
    f.restype = ctypes.c_char_p
    return f().decode()


def own_openblas_core(python, env):
    """The OpenBLAS core a fresh `python` process picks by itself in `env` ("" without one)."""
    p = subprocess.run([python, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from bench_end_to_end import openblas_core; print(openblas_core())",
                        os.path.dirname(os.path.abspath(__file__))],
                       env=env, stdout=subprocess.PIPE, text=True, check=True)
    return p.stdout.strip()


# --------------------------------------------------------------------------------------------
# Driver


def timed(cmd, env=None, cwd=None):
    """Runs cmd; returns (wall s, stdout). Exits on failure. (The child's CPU time: cpu_children()
    before and after, since communicate() reaps it.)"""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                         text=True)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench_end_to_end: {' '.join(cmd)} failed ({p.returncode}):\n{err}")
    return wall, out


def cpu_children():
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dit", default=os.environ.get("DIT_SRC"), help="facebookresearch/DiT checkout")
    ap.add_argument("--diffusers", default=os.environ.get("DIFFUSERS_SRC"), help="diffusers checkout")
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "examples", "cli", "diffuse"))
    ap.add_argument("--images", default="40,400")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--network", choices=("shipped", "dit-s2"), default="shipped",
                    help="the shipped model, or a random DiT-S/2-sized one (32x32x4 latents)")
    ap.add_argument("--make-s2", help=argparse.SUPPRESS)
    ap.add_argument("--model-file", help=argparse.SUPPRESS)
    # worker mode
    ap.add_argument("--timesteps", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--cfg", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.cfg is None:
        a.cfg = S2_CFG if a.network == "dit-s2" else CFG
    if a.make_s2:
        return make_s2(a)
    if a.worker:
        a.images = int(a.images)
        a.threads = int(a.threads)
        return worker(a)
    if not a.dit or not os.path.isfile(os.path.join(a.dit, "models.py")):
        sys.exit("bench_end_to_end: --dit must name a facebookresearch/DiT checkout (models.py)")
    if not a.diffusers:
        sys.exit("bench_end_to_end: --diffusers (or $DIFFUSERS_SRC) is required")
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"bench_end_to_end: no diffuse program at {a.bin} (build it, or pass --bin)")
    images = [int(v) for v in a.images.split(",")]
    threads = [int(v) for v in a.threads.split(",")]
    work = tempfile.mkdtemp(prefix="diffuse_e2e_")
    py = sys.executable or "/usr/bin/python3"
    base_env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}

    model_args = []
    if a.network == "dit-s2":
        # The reference card of a DiT checkpoint names the SD VAE; "vae=" keeps the latents.
        model_file = os.path.join(work, "DiT-S-2-32.pt")
        timed([sys.executable or "/usr/bin/python3", os.path.abspath(__file__), "--make-s2",
               model_file, "--dit", a.dit, "--seed", str(a.seed)])
        model_args = ["--model", model_file, "--model-card", "vae=", "--cfg", str(a.cfg)]

    def cpp(n, th, tag):
        out = os.path.join(work, f"cpp_{n}_{th}_{tag}")
        cmd = [a.bin, "--threads", str(th), "-q", "sample"] + model_args + [
               "-n", str(n), "--steps", str(a.steps), "--seed", str(a.seed), "-o", out + ".png",
               "--save-tensor", out + ".npy"]
        c0 = cpu_children()
        wall, _ = timed(cmd, env=base_env)
        rec = json.load(open(out + ".json"))
        return wall, cpu_children() - c0, rec, out + ".npy"

    def python(n, th, timesteps, coretype, tag):
        out = os.path.join(work, f"py_{n}_{th}_{tag}.npy")
        env = dict(base_env)
        if coretype:
            env["OPENBLAS_CORETYPE"] = coretype
        cmd = [py, os.path.abspath(__file__), "--worker", "--dit", a.dit, "--diffusers", a.diffusers,
               "--images", str(n), "--threads", str(th), "--seed", str(a.seed), "--timesteps",
               ",".join(str(t) for t in timesteps), "--out", out, "--network", a.network,
               "--cfg", str(a.cfg)] + (["--model-file", model_file] if a.network == "dit-s2" else [])
        c0 = cpu_children()
        wall, stdout = timed(cmd, env=env)
        info = json.loads(stdout.strip().splitlines()[-1])
        return wall, cpu_children() - c0, info, out

    # The grid and the launcher's kernels, from a one-image diffuse run (the grid does not depend
    # on the image count), and the kernels python3 gets by itself.
    _, _, rec, _ = cpp(1, threads[0], "probe")
    timesteps = [int(t) for t in rec["resolved"]["grid_t"][:-1]]
    launcher_core = rec["resolved"].get("blas", "").replace("OpenBLAS ", "")
    own_core = own_openblas_core(py, base_env)
    # The mended run only where it runs other kernels than python3's own.
    mended = bool(launcher_core) and launcher_core.lower() != own_core.lower()
    py_sides = ("pytorch", "pytorch_mended") if mended else ("pytorch",)
    import numpy as np

    runs = {}  # (n, threads, side) -> list of (wall, cpu)
    infos = {}
    diffs = {}
    t0 = time.time()
    load0 = os.getloadavg()[0]
    for rnd in range(a.rounds):
        for ci, (n, th) in enumerate((n, th) for n in images for th in threads):
            blocks = [("diffuse", lambda: cpp(n, th, rnd)),
                      ("pytorch", lambda: python(n, th, timesteps, None, f"own{rnd}")),
                      ("pytorch_mended", lambda: python(n, th, timesteps, launcher_core, f"m{rnd}"))]
            blocks = blocks[:1 + len(py_sides)]
            if (rnd + ci) % 2:
                blocks.reverse()
            outs = {}
            for side, run in blocks:
                wall, cpu, info, npy = run()
                runs.setdefault((n, th, side), []).append((wall, cpu))
                infos.setdefault((n, th, side), []).append(info)
                outs[side] = npy
            if rnd == 0:
                ref = np.clip(np.load(outs["diffuse"]), -1, 1)
                for side in py_sides:
                    # diffuse's --save-tensor holds the images, x clamped to [-1, 1]
                    other = np.clip(np.load(outs[side]).reshape(ref.shape), -1, 1)
                    diffs[(n, th, side)] = float(np.abs(other - ref).max() / np.abs(ref).max())
            print(f"round {rnd + 1}/{a.rounds}: {n} images, {th} thread(s) done", file=sys.stderr,
                  flush=True)
    elapsed = time.time() - t0
    shutil.rmtree(work, ignore_errors=True)

    cpu_name = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu_name = line.split(":", 1)[1].strip()
            break
    py_core = infos[(images[0], threads[0], "pytorch")][0]["blas"]
    network = (f"shipped model ({os.path.relpath(MODEL, REPO)})" if a.network == "shipped" else
               "random DiT-S/2 (32x32x4 latents, 1000 classes, learn_sigma; no VAE decode)")
    print(f"{network}, DPM++ 2M {a.steps} steps, CFG {a.cfg}, "
          f"seed {a.seed}, float32 CPU; {cpu_name}, {os.cpu_count()} hardware threads; load "
          f"{load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; {a.rounds} alternating "
          f"rounds, {elapsed:.0f} s in all; OpenBLAS kernels: python3's own {py_core or '?'}, "
          f"the diffuse launcher's {launcher_core or '?'}"
          + ("" if mended else " (the same kernels: the Python side runs once per block)"))
    print("\nWhole process, seconds (median of the rounds; CPU = user + system of every thread):\n")
    head = "| images | threads | diffuse wall | diffuse CPU | PyTorch+diffusers wall | CPU | ÷ CPU "
    if mended:
        head += f"| PyTorch+diffusers, OPENBLAS_CORETYPE={launcher_core} wall | CPU | ÷ CPU "
    print(head + "| final x: max abs diff ÷ max abs x" + (" (own / mended)" if mended else "") + " |")
    print("|---" * (8 + 3 * mended) + "|")

    for n in images:
        for th in threads:
            m = {s: (statistics.median([r[0] for r in runs[(n, th, s)]]),
                     statistics.median([r[1] for r in runs[(n, th, s)]]))
                 for s in ("diffuse",) + py_sides}
            d = m["diffuse"]
            cells = [f"{m[s][0]:.2f} | {m[s][1]:.2f} | **{d[1] / m[s][1]:.2f}**" for s in py_sides]
            diff = " / ".join(f"{diffs[(n, th, s)]:.1e}" for s in py_sides)
            print(f"| {n} | {th} | {d[0]:.2f} | {d[1]:.2f} | " + " | ".join(cells) + f" | {diff} |")
    print(f"\nRun-to-run spread over the {a.rounds} rounds: max ÷ min of each side's whole-process "
          "time (wall / CPU)\n")
    print("| images | threads | diffuse | PyTorch+diffusers |"
          + (" PyTorch+diffusers, mended kernels |" if mended else ""))
    print("|---" * (4 + mended) + "|")

    def spread(rs, i):
        v = [r[i] for r in rs]
        return max(v) / min(v)

    for n in images:
        for th in threads:
            cells = [f"{spread(runs[(n, th, s)], 0):.3f} / {spread(runs[(n, th, s)], 1):.3f}"
                     for s in ("diffuse",) + py_sides]
            print(f"| {n} | {th} | " + " | ".join(cells) + " |")
    print("\nPython worker's own split, seconds (median): import torch + DiT + diffusers / build and "
          "load the model / sample\n")
    print("| images | threads | kernels | import | load | sample |")
    print("|---|---|---|---|---|---|")
    for n in images:
        for th in threads:
            for s, label in zip(py_sides, ("own", launcher_core)):
                i = infos[(n, th, s)]
                print(f"| {n} | {th} | {label} | {statistics.median([v['import_s'] for v in i]):.2f} | "
                      f"{statistics.median([v['load_s'] for v in i]):.2f} | {statistics.median([v['sample_s'] for v in i]):.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in runs.items()},
                       "worker": {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in infos.items()},
                       "diffs": {f"{k[0]}/{k[1]}/{k[2]}": v for k, v in diffs.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
