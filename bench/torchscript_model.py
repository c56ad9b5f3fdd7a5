#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a TorchScript DiT for bench/torchscript.cpp (frozen vs not frozen on load).

The module is the reference-layout DiT of tests/training/fixtures/make_interop_fixtures.py (a
re-implementation of facebookresearch/DiT's module structure), traced with torch.jit.trace at
the shipped model's size by default: 28 x 28 x 1, patch 4, hidden 64, depth 4, 4 heads, 10
classes, epsilon only (no learned sigma); random weights (the speed does not depend on them).
Its card is given to the benchmark (--card), not stored in the module.

  /usr/bin/python3 bench/torchscript_model.py --out /tmp/dit_ts.pt [--hidden 64 --depth 4 ...]
"""
import argparse
import importlib.util
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--input", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--classes", type=int, default=10)
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location(
        "fixtures", os.path.join(REPO, "tests", "training", "fixtures", "make_interop_fixtures.py"))
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    torch.manual_seed(0)
    model = fixtures.DiT(a.input, a.patch, a.channels, a.hidden, a.depth, a.heads, a.classes, False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.randn_like(p) * 0.05)
    model.eval()
    x = torch.randn(2, a.channels, a.input, a.input)
    t = torch.tensor([10.0, 500.0])
    y = torch.tensor([1, a.classes])
    with torch.no_grad():
        traced = torch.jit.trace(model, (x, t, y))
    traced.save(a.out)
    print(f"wrote {a.out}: DiT {a.input}x{a.input}x{a.channels} patch {a.patch} hidden {a.hidden} "
          f"depth {a.depth} heads {a.heads} classes {a.classes}")


if __name__ == "__main__":
    main()
