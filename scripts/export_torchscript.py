# SPDX-License-Identifier: Apache-2.0
"""Exports a PyTorch denoiser as TorchScript for `diffuse sample --model FILE.pt`.

The module's forward must be

    forward(x: Tensor [B, C, H, W], t: Tensor [B] (float, the schedule's model time),
            y: Tensor [B] (int64 class labels; num_classes = the null class)) -> Tensor

returning [B, C, H, W] (or [B, 2C, H, W] for a learned variance: the first C channels are used).
An unconditional model leaves y out: forward(x, t). A string attribute `diffuse_card` set in
__init__ describes the model (key=value,key=value; see docs/interop.md).

As shipped, this script builds a tiny untrained example (a few convolutions with time and label
embeddings) and writes it with a fixed input and the output PyTorch computes for it:

    python3 scripts/export_torchscript.py tests/training/fixtures/tiny_eps.pt

which is the fixture of tests/training/torchscript_test.cpp (the expected output goes next to it,
as tiny_eps_expected.txt). Replace TinyEps by your own model to export a real one.
"""
import math
import os
import sys

import torch
import torch.nn as nn


class TinyEps(nn.Module):
    """An epsilon-predictor for 1 x 8 x 8 samples and 4 classes (label 4 = null)."""

    def __init__(self, channels: int = 1, width: int = 8, num_classes: int = 4):
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.label = nn.Embedding(num_classes + 1, width)
        self.time = nn.Linear(16, width)
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        # Read by diffuse (torchscript_attribute(module, "diffuse_card")).
        # diffuse's model card (training/model_file.h, docs/interop.md): one key=value per item.
        self.diffuse_card: str = ("architecture=torchscript,prediction_type=epsilon,schedule=discrete,"
                                  "sample_shape=1x8x8,num_classes=4")

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(torch.arange(8, dtype=torch.float32, device=x.device)
                          * (-math.log(1000.0) / 8))
        args = t.float()[:, None] * freqs[None, :]
        temb = self.time(torch.cat([torch.cos(args), torch.sin(args)], dim=1))
        h = torch.nn.functional.silu(self.inp(x) + (temb + self.label(y))[:, :, None, None])
        return self.out(h)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tiny_eps.pt"
    torch.manual_seed(0)
    model = TinyEps().eval()
    scripted = torch.jit.script(model)
    scripted.save(out_path)

    # A fixed input anyone can rebuild: x[i] = cos(0.11 i), t = [3, 500], y = [2, 4 (null)].
    x = torch.cos(torch.arange(2 * 1 * 8 * 8, dtype=torch.float32) * 0.11).reshape(2, 1, 8, 8)
    t = torch.tensor([3.0, 500.0])
    y = torch.tensor([2, 4])
    with torch.no_grad():
        out = scripted(x, t, y)
        assert torch.allclose(out, model(x, t, y))
    expected = os.path.splitext(out_path)[0] + "_expected.txt"
    with open(expected, "w") as f:
        f.write("# x[i] = cos(0.11 i) reshaped [2, 1, 8, 8]; t = 3 500; y = 2 4\n")
        f.write("# output [2, 1, 8, 8] row-major, float32 printed %.9g\n")
        f.write(" ".join("%.9g" % v for v in out.reshape(-1).tolist()) + "\n")
    print("wrote", out_path, os.path.getsize(out_path), "bytes;", expected)
    print("output[0, 0, 0, :4] =", out[0, 0, 0, :4].tolist())


if __name__ == "__main__":
    main()
