# SPDX-License-Identifier: Apache-2.0
"""Golden values of the flow-matching tests against diffusers (58eb52c).

    /usr/bin/python3 tests/reference/flow_match.py --diffusers PATH
        kFlowGolden of tests/samplers/flow_match_test.cpp

Each case builds a diffusers scheduler with the case's config (FlowMatchEuler/HeunDiscreteScheduler, or
DPMSolverMultistep/SinglestepScheduler with use_flow_sigmas=True), calls set_timesteps(steps[, mu]),
and runs x = 2 * dummy_sample_deter - 1; for t in timesteps: x = step(model(x, t), t, x).prev_sample
with model(x, t) = 0.5 x t / (t + 1) + 0.3 sin(3 x + t / 250) (t cast to x's dtype; the same
nonlinear model as dpm_solver.py). SDE cases draw one torch.Generator().manual_seed(seed) stream,
z = torch.randn(x.shape, generator=g, dtype=float32) per step (cast in the float64 run): passed as
variance_noise to DPM-Solver, drawn by FlowMatchEuler's stochastic_sampling step itself from
generator=g (it draws on the last step too, where the noise is multiplied by sigma = 0). Each case runs
once with the float64 copy of diffusers and once stock float32 (diffusers_ref.py). Printed: the
config as diffuse's from_diffusers reads it, timesteps and sigmas of the float64 run (Heun: one of
each interleaved pair, i.e. the grid), and sum |x| and x.flatten()[0, 1, 100, 383, 500, 767] of each
run.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402

EULER = ("scheduling_flow_match_euler_discrete", "FlowMatchEulerDiscreteScheduler")
HEUN = ("scheduling_flow_match_heun_discrete", "FlowMatchHeunDiscreteScheduler")
MULTI = ("scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler")
SINGLE = ("scheduling_dpmsolver_singlestep", "DPMSolverSinglestepScheduler")
ELEMS = [0, 1, 100, 383, 500, 767]
DPM_FLOW = dict(use_flow_sigmas=True, prediction_type="flow_prediction")


def calculate_shift(image_seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    """diffusers.pipelines.flux.pipeline_flux.calculate_shift (58eb52c)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return image_seq_len * m + b


# name, scheduler, config, steps, mu (None: not passed), seed (None: ODE)
CASES = [
    ("EulerDefault", EULER, {}, 10, None, None),
    ("EulerShift3", EULER, {"shift": 3.0}, 10, None, None),
    ("EulerShift3OneStep", EULER, {"shift": 3.0}, 1, None, None),
    ("EulerDynamicExponential", EULER, {"use_dynamic_shifting": True}, 8, calculate_shift(1024), None),
    ("EulerDynamicLinear", EULER, {"use_dynamic_shifting": True, "time_shift_type": "linear"}, 8, 0.8, None),
    ("EulerShiftTerminal", EULER, {"shift": 3.0, "shift_terminal": 0.1}, 12, None, None),
    ("EulerKarrasShift3", EULER, {"shift": 3.0, "use_karras_sigmas": True}, 10, None, None),
    ("EulerExponential", EULER, {"use_exponential_sigmas": True}, 10, None, None),
    ("EulerBetaShift3", EULER, {"shift": 3.0, "use_beta_sigmas": True}, 10, None, None),
    ("EulerShift3Train500", EULER, {"shift": 3.0, "num_train_timesteps": 500}, 7, None, None),
    ("EulerStochasticShift3", EULER, {"shift": 3.0, "stochastic_sampling": True}, 8, None, 0),
    ("HeunDefault", HEUN, {}, 6, None, None),
    ("HeunShift3", HEUN, {"shift": 3.0}, 8, None, None),
    ("DpmFlow2Shift3", MULTI, dict(DPM_FLOW, flow_shift=3.0), 10, None, None),
    ("DpmFlow3HeunShift3", MULTI, dict(DPM_FLOW, flow_shift=3.0, solver_order=3, solver_type="heun"), 12, None,
     None),
    ("DpmFlow2Dynamic", MULTI, dict(DPM_FLOW, use_dynamic_shifting=True), 10, calculate_shift(4096), None),
    ("DpmFlowThresholdShift3", MULTI, dict(DPM_FLOW, flow_shift=3.0, thresholding=True, sample_max_value=0.5), 10,
     None, None),
    ("DpmFlowEpsilonShift2", MULTI, dict(use_flow_sigmas=True, flow_shift=2.0), 10, None, None),
    ("DpmFlowSde2Shift3", MULTI, dict(DPM_FLOW, flow_shift=3.0, algorithm_type="sde-dpmsolver++"), 10, None, 0),
    ("DpmSingleFlow2Shift3", SINGLE, dict(DPM_FLOW, flow_shift=3.0), 10, None, None),
]


def nonlinear_model(x, t):
    tt = t.to(x.dtype).reshape(-1, 1, 1, 1)
    return x * tt / (tt + 1) * 0.5 + torch.sin(x * 3 + tt / 250) * 0.3


def run(src, which, config, steps, mu, seed, f64):
    dtype = torch.float64 if f64 else torch.float32
    s = ref.scheduler(src, which[0], which[1], f64, **config)
    with ref.precision(f64):
        if mu is None:
            s.set_timesteps(steps)
        else:
            s.set_timesteps(steps, mu=mu)
        x = ref.dummy_sample_deter(dtype) * 2 - 1
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        for t in s.timesteps:
            kw = {}
            if g is not None and which is EULER:  # stochastic_sampling: step() draws from g
                kw["generator"] = g
            elif g is not None:
                kw["variance_noise"] = torch.randn(x.shape, generator=g, dtype=torch.float32).to(dtype)
            x = s.step(nonlinear_model(x, t), t, x, **kw).prev_sample
    assert x.dtype == dtype, (x.dtype, dtype)
    return s, x


def cpp_config(config, mu):
    items = []
    for k, v in sorted(config.items()):
        if isinstance(v, list):  # a list option ("disable_corrector=0;3")
            v = ";".join(str(e) for e in v)
        items.append("%s=%s" % (k, str(v).lower() if isinstance(v, bool) else ref.r(v) if isinstance(v, float) else v))
    if mu is not None:
        items.append("mu=%s" % ref.r(mu))
    return ",".join(items)


def print_cases(src, cases):
    """Prints each case as a ConfigGolden row (tests/samplers/dpm_fixtures.h)."""
    for name, which, config, steps, mu, seed in cases:
        s64, x64 = run(src, which, config, steps, mu, seed, True)
        _, x32 = run(src, which, config, steps, mu, seed, False)
        print("// %s: %s %s, set_timesteps(%d%s)%s" % (name, which[1], config, steps,
                                                       "" if mu is None else ", mu=%s" % ref.r(mu),
                                                       "" if seed is None else ", seed %d" % seed))
        print('{"%s", "%s", "%s", %d, %d,' % (name, which[1], cpp_config(config, mu), steps,
                                               -1 if seed is None else seed))
        ts, sig = list(s64.timesteps), list(s64.sigmas)
        if which is HEUN:  # [t0, t1, t1, t2, t2, ...]: the two calls of each step; one grid point each
            ts, sig = ts[:1] + ts[1::2], sig[:1] + sig[1::2]
        print("  {%s}," % ref.join([float(t) for t in ts], ref.g17))
        print("  {%s}," % ref.join(sig, ref.g17))
        print("  %s, {%s}," % (ref.g17(x64.abs().sum()), ref.join(x64.reshape(-1)[ELEMS], ref.g17)))
        print("  %s, {%s}}," % (ref.g9(x32.abs().sum()), ref.join(x32.reshape(-1)[ELEMS], ref.g9)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ref.add_source_argument(ap)
    args = ap.parse_args()
    print_cases(ref.source_dir(args.diffusers), CASES)


if __name__ == "__main__":
    main()
