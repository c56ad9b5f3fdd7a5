#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Rewrites a PyTorch checkpoint that diffuse cannot read without Python as one it can.

    /usr/bin/python3 scripts/convert_checkpoint.py IN.pt OUT.pt [--entry ema]

diffuse reads torch.save() zip archives of state dicts itself (training/torch_checkpoint.cpp: a
restricted pickle reader that builds only dicts, lists, numbers, strings and tensors). Use this
script for the files it refuses: pickles of PyTorch < 1.6 (not zip archives), pickles whose tensors
are reachable only through Python objects, whole pickled nn.Modules, or diffusers'
diffusion_pytorch_model.bin. It loads IN with torch.load on the CPU, takes the state dict (the
whole object if it maps strings to tensors, else its --entry, default: the first of "ema",
"model", "state_dict" that is one; an nn.Module gives its state_dict()), and saves it as a plain
dict of contiguous tensors with torch.save (zip format). Keep the published file name (a name
starting with "SiT" selects SiT's card in diffuse).
"""
import argparse
import sys

import torch


def state_dict_of(obj, entry):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        return obj
    if isinstance(obj, dict):
        for key in ([entry] if entry else ["ema", "model", "state_dict"]):
            if key in obj:
                return state_dict_of(obj[key], None)
        sys.exit("no state dict in the file; its keys: %s" % ", ".join(map(str, obj.keys())))
    sys.exit("the file holds a %s, not a state dict" % type(obj).__name__)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--entry", help="key of the checkpoint dict holding the weights")
    args = ap.parse_args()
    obj = torch.load(args.src, map_location="cpu")  # a pickle: only for files you trust
    sd = state_dict_of(obj, args.entry)
    plain = {k: v.detach().contiguous().clone() for k, v in sd.items()}
    torch.save(plain, args.dst)
    print("%s: %d tensors, %d parameters -> %s" % (args.src, len(plain), sum(v.numel() for v in plain.values()), args.dst))


if __name__ == "__main__":
    main()
