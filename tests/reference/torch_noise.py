# SPDX-License-Identifier: Apache-2.0
"""Golden values of tests/core/noise_test.cpp (ReproducesPyTorchManualSeedStream and
ReproducesPyTorchVectorisedPath): PyTorch's CPU normal streams, printed with repr(float(v)).

    /usr/bin/python3 tests/reference/torch_noise.py

Needs only PyTorch (Debian's python3-torch 1.13.1 made the values; the CPU generator's stream is
stable across versions).
"""
import torch


def show(label, t, idx):
    flat = t.flatten()
    print("%s: %s" % (label, ", ".join("{%d, %r}" % (i, float(flat[i])) for i in idx)))


def main():
    print("torch", torch.__version__)
    g = torch.Generator().manual_seed(0)
    show("manual_seed(0) randn(6)", torch.randn(6, generator=g), range(6))
    show("  then randn(3)", torch.randn(3, generator=g), range(3))
    torch.manual_seed(0)
    show("torch.manual_seed(0); torch.randn(6)", torch.randn(6), range(6))
    show("manual_seed(0) randn(32)", torch.randn(32, generator=torch.Generator().manual_seed(0)), [0, 1, 15, 16, 31])
    show("manual_seed(123) randn(2, 3, 4)", torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(123)),
         [0, 5, 23])


if __name__ == "__main__":
    main()
