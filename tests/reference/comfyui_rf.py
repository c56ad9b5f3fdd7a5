# SPDX-License-Identifier: Apache-2.0
"""Golden values of euler_ancestral's flow rule against ComfyUI's sample_euler_ancestral_RF.

    /usr/bin/python3 tests/reference/comfyui_rf.py --comfyui-sampling FILE --diffusers PATH
        kComfyRf of tests/samplers/flow_match_test.cpp

FILE is comfy/k_diffusion/sampling.py of ComfyUI at 02159d814dee609acc27994c1bf25fc5b40e2aaa (the
function sample_euler_ancestral_RF is taken from it with ast and run alone; ComfyUI calls it for
models whose model sampling is CONST, i.e. rectified flow). The grid is diffusers'
FlowMatchEulerDiscreteScheduler(shift=S).set_timesteps(N) sigmas (the float64 copy, see
diffusers_ref.py), ending at 0. The model is the denoiser of the velocity
v(x, t) = 0.5 x t / (t + 1) + 0.3 sin(3 x + t / 250) at t = 1000 sigma (flow_match.py's model):
denoised = x - sigma v. Noise: one torch.Generator().manual_seed(seed) stream,
torch.randn(x.shape, generator=g, dtype=float32) cast to float64 per call of noise_sampler (ComfyUI
calls it only when eta > 0 and the next sigma is not 0). x starts at 2 * dummy_sample_deter - 1, in
float64. Printed: case name, shift, steps, eta, s_noise, seed, sum |x| and
x.flatten()[0, 1, 100, 383, 500, 767].
"""
import argparse
import ast
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402

COMFYUI_COMMIT = "02159d814dee609acc27994c1bf25fc5b40e2aaa"
EULER = ("scheduling_flow_match_euler_discrete", "FlowMatchEulerDiscreteScheduler")
ELEMS = [0, 1, 100, 383, 500, 767]
# name, shift, steps, eta, s_noise, seed
CASES = [
    ("Shift3Eta1", 3.0, 8, 1.0, 1.0, 0),
    ("Shift1EtaHalf", 1.0, 10, 0.5, 1.0, 3),
    ("Shift3Eta1Snoise07", 3.0, 6, 1.0, 0.7, 5),
]


def load_rf(path):
    text = open(path).read()
    tree = ast.parse(text)
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "sample_euler_ancestral_RF"]
    if not fn:
        sys.exit("%s: no sample_euler_ancestral_RF in it" % path)
    ns = {"torch": torch, "trange": lambda n, disable=None: range(n),
          "default_noise_sampler": None}
    exec(compile(ast.Module(body=fn, type_ignores=[]), path, "exec"), ns)
    return ns["sample_euler_ancestral_RF"]


class _Sampling:  # ComfyUI's model sampling object; no noise_scale attribute (scale 1)
    pass


class _Patcher:
    def get_model_object(self, name):
        assert name == "model_sampling"
        return _Sampling()


class _Inner:
    model_patcher = _Patcher()


class Model:
    """ComfyUI's denoiser wrapper, as sample_* calls it: model(x, sigma) -> denoised."""
    inner_model = _Inner()

    def __call__(self, x, sigma):
        t = (sigma * 1000).to(x.dtype).reshape(-1, 1, 1, 1)
        v = x * t / (t + 1) * 0.5 + torch.sin(x * 3 + t / 250) * 0.3
        return x - sigma.reshape(-1, 1, 1, 1) * v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfyui-sampling", default=os.environ.get("COMFYUI_SAMPLING"),
                    help="comfy/k_diffusion/sampling.py of ComfyUI at %s (default: $COMFYUI_SAMPLING)"
                    % COMFYUI_COMMIT[:7])
    ref.add_source_argument(ap)
    args = ap.parse_args()
    if not args.comfyui_sampling:
        sys.exit("--comfyui-sampling FILE (or COMFYUI_SAMPLING) is needed; see tests/reference/README.md")
    rf = load_rf(args.comfyui_sampling)
    src = ref.source_dir(args.diffusers)
    for name, shift, steps, eta, s_noise, seed in CASES:
        s = ref.scheduler(src, EULER[0], EULER[1], True, shift=shift)
        with ref.precision(True):
            s.set_timesteps(steps)
        sigmas = s.sigmas.to(torch.float64)
        x = ref.dummy_sample_deter(torch.float64) * 2 - 1
        g = torch.Generator().manual_seed(seed)
        noise = lambda a, b: torch.randn(x.shape, generator=g, dtype=torch.float32).to(torch.float64)  # noqa: E731
        out = rf(Model(), x, sigmas, eta=eta, s_noise=s_noise, noise_sampler=noise)
        print("// %s: shift %s, %d steps, eta %s, s_noise %s, seed %d" % (name, ref.r(shift), steps, ref.r(eta),
                                                                      ref.r(s_noise), seed))
        print('{"%s", %s, %d, %s, %s, %d, %s, {%s}},' % (name, ref.r(shift), steps, ref.r(eta), ref.r(s_noise), seed,
                                                          ref.g17(out.abs().sum()),
                                                          ref.join(out.reshape(-1)[ELEMS], ref.g17)))


if __name__ == "__main__":
    main()
