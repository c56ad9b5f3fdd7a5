# SPDX-License-Identifier: Apache-2.0
"""Golden values of the apg and cfg_zero_star guidances against diffusers' guiders (58eb52c).

    /usr/bin/python3 tests/reference/guiders.py --diffusers PATH
        kGuiderGolden of tests/samplers/guidance_test.cpp

The functions normalized_guidance and MomentumBuffer (src/diffusers/guiders/
adaptive_projected_guidance.py) and cfg_zero_star_scale (classifier_free_zero_star_guidance.py)
are taken out of diffusers' source with ast and run on fixed float64 inputs of shape [2, 3, 4, 4]:
c = sin(0.37 i + 0.2) + 0.1 i / 96 and u = 0.8 cos(0.23 i) for i = 0..95 (row-major), and, for the
second call of a momentum case, c2 = c + 0.5 sin(0.11 i), u2 = u - 0.3 cos(0.07 i). The
ClassifierFreeZeroStarGuidance.forward formula is restated around cfg_zero_star_scale:
s* u + scale (c - s* u), or c + scale (c - s* u) with use_original_formulation. Printed per case:
sum, sum |x| and elements 0, 17, 50, 95 of the guided output.
"""
import argparse
import ast
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402


def take(path, names):
    tree = ast.parse(open(path).read())
    body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]
    ns = {"torch": torch}
    exec(compile(ast.Module(body=body, type_ignores=[]), path, "exec"), ns)
    return ns


def inputs():
    i = torch.arange(96, dtype=torch.float64)
    c = (torch.sin(0.37 * i + 0.2) + 0.1 * i / 96).reshape(2, 3, 4, 4)
    u = (0.8 * torch.cos(0.23 * i)).reshape(2, 3, 4, 4)
    c2 = c + (0.5 * torch.sin(0.11 * i)).reshape(2, 3, 4, 4)
    u2 = u - (0.3 * torch.cos(0.07 * i)).reshape(2, 3, 4, 4)
    return c, u, c2, u2


def row(name, config, calls, x):
    f = x.reshape(-1)
    print('{"%s", "%s", %d, %s, %s, {%s}},' % (name, config, calls, ref.g17(x.sum()), ref.g17(x.abs().sum()),
                                             ref.join([f[k] for k in (0, 17, 50, 95)], ref.g17)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ref.add_source_argument(ap)
    a = ap.parse_args()
    g = os.path.join(ref.source_dir(a.diffusers), "src", "diffusers", "guiders")
    apg = take(os.path.join(g, "adaptive_projected_guidance.py"), {"normalized_guidance", "MomentumBuffer"})
    zs = take(os.path.join(g, "classifier_free_zero_star_guidance.py"), {"cfg_zero_star_scale"})
    c, u, c2, u2 = inputs()
    # name, our config, diffusers arguments (scale, momentum, eta, norm_threshold, original), calls
    for name, cfg, (w, mom, eta, thr, orig), calls in [
        ("ApgDefaults", "scale=7.5", (7.5, None, 1.0, 15.0, False), 1),
        ("ApgThresholdOrthogonal", "scale=5,eta=0,norm_threshold=2", (5.0, None, 0.0, 2.0, False), 1),
        ("ApgMomentum", "scale=5,eta=0.3,norm_threshold=3,momentum=-0.5", (5.0, -0.5, 0.3, 3.0, False), 2),
        ("ApgOriginal", "scale=3,eta=0.5,norm_threshold=0,original_formulation=true", (3.0, None, 0.5, 0.0, True), 1),
    ]:
        buf = apg["MomentumBuffer"](mom) if mom is not None else None
        out = apg["normalized_guidance"](c, u, w, buf, eta, thr, orig)
        if calls == 2:
            out = apg["normalized_guidance"](c2, u2, w, buf, eta, thr, orig)
        row(name, cfg, calls, out)
    for name, cfg, w, orig in [("ZeroStar", "scale=4,zero_init_steps=0", 4.0, False),
                               ("ZeroStarOriginal", "scale=4,zero_init_steps=0,original_formulation=true", 4.0, True)]:
        s = zs["cfg_zero_star_scale"](c.flatten(1), u.flatten(1)).view(-1, 1, 1, 1)
        su = u * s
        out = (c if orig else su) + w * (c - su)
        row(name, cfg, 1, out)


if __name__ == "__main__":
    main()
