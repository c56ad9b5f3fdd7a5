# SPDX-License-Identifier: Apache-2.0
"""Golden values of tests/samplers/align_your_steps_test.cpp (ComfyUI's and A1111's AYS lists).

    /usr/bin/python3 tests/reference/align_your_steps.py --comfyui FILE --a1111 FILE

FILE: ComfyUI's comfy_extras/nodes_align_your_steps.py (comfyanonymous/ComfyUI 341667c) and
A1111's modules/sd_schedulers.py (AUTOMATIC1111/stable-diffusion-webui 02b0092), or
$AYS_COMFYUI / $AYS_A1111. Each file is run as is, with `torch.FloatTensor` replaced by a float64
numpy array so that the lists are the float64 interpolation (np.interp in log sigma) before
torch's float32 rounding; A1111's imports k_diffusion and modules.shared are stubbed
(shared.sd_model.is_sdxl = False: the SD 1.5 list).

Prints, in the test's order:
  * ComfyUI AlignYourStepsScheduler.get_sigmas("SD1", 5 / 20, 1.0) to 4 decimals
    (ComfyUiInterpolationTestVectors, tolerance 5.01e-5);
  * get_sigmas("SDXL", 7, 1.0) to 8 decimals (tolerance 5e-8);
  * A1111 get_align_your_steps_sigmas(10, ...) to 8 decimals (A1111Convention, tolerance 5e-8).
"""
import argparse
import os
import sys
import types

import numpy as np

COMFYUI_COMMIT = "341667c4d59a67d3b677c6f547f13892b36662cd"
A1111_COMMIT = "02b0092d5a8450b282bd7d9c2d84fdfed0f3c6db"


class _Sigmas(np.ndarray):
    def to(self, device):
        return self


def _float_tensor(values):
    return np.asarray(values, dtype=np.float64).view(_Sigmas)


def _load(path, name):
    if not path or not os.path.isfile(path):
        sys.exit("%s: not found (see tests/reference/README.md for the pinned files)" % path)
    mod = types.ModuleType(name)
    mod.__file__ = path
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), mod.__dict__)
    mod.torch = types.SimpleNamespace(FloatTensor=_float_tensor)
    return mod


def _stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def fmt(values, decimals):
    out = []
    for v in values:
        s = ("%.*f" % (decimals, v)).rstrip("0")
        out.append(s + "0" if s.endswith(".") else s)
    return "{" + ", ".join(out) + "}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--comfyui", default=os.environ.get("AYS_COMFYUI"),
                    help="comfy_extras/nodes_align_your_steps.py at %s" % COMFYUI_COMMIT[:7])
    ap.add_argument("--a1111", default=os.environ.get("AYS_A1111"),
                    help="modules/sd_schedulers.py at %s" % A1111_COMMIT[:7])
    a = ap.parse_args()
    comfy = _load(a.comfyui, "nodes_align_your_steps").AlignYourStepsScheduler()
    for steps in (5, 20):
        print("SD1 steps=%d: %s" % (steps, fmt(comfy.get_sigmas("SD1", steps, 1.0)[0], 4)))
    print("SDXL steps=7: %s" % fmt(comfy.get_sigmas("SDXL", 7, 1.0)[0], 8))

    def no_sampler(*args, **kwargs):
        raise NotImplementedError

    sampling = types.SimpleNamespace(get_sigmas_karras=no_sampler, get_sigmas_exponential=no_sampler,
                                     get_sigmas_polyexponential=no_sampler)
    _stub("k_diffusion", sampling=sampling)
    shared = types.SimpleNamespace(sd_model=types.SimpleNamespace(is_sdxl=False))
    _stub("modules", shared=shared)
    _stub("modules.shared", sd_model=shared.sd_model)
    a1111 = _load(a.a1111, "sd_schedulers")
    print("a1111 n=10: %s" % fmt(a1111.get_align_your_steps_sigmas(10, None, None, "cpu"), 8))


if __name__ == "__main__":
    main()
