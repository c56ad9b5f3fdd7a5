# SPDX-License-Identifier: Apache-2.0
"""Golden values of the DPM-Solver++ tests against diffusers' DPMSolver*Scheduler (58eb52c).

    /usr/bin/python3 tests/reference/dpm_solver.py --diffusers PATH multistep
        kGolden of tests/samplers/dpm_solver_pp_test.cpp
    /usr/bin/python3 tests/reference/dpm_solver.py --diffusers PATH sde
        kGolden of tests/samplers/dpm_solver_pp_sde_test.cpp
    /usr/bin/python3 tests/reference/dpm_solver.py --diffusers PATH single
        kGolden of tests/samplers/dpm_solver_pp_singlestep_test.cpp
    /usr/bin/python3 tests/reference/dpm_solver.py --diffusers PATH orders
        the OrderCase list of dpm_solver_pp_singlestep_test.cpp (scheduler.order_list)
    /usr/bin/python3 tests/reference/dpm_solver.py --diffusers PATH suite
        the float32/float64 sums of diffusers' own full-loop tests (kSuite of both test files and
        the full_loop_with_noise float64 sums)

Golden runs: Scheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
beta_schedule="linear", **changes); set_timesteps(steps); x = 2 * dummy_sample_deter - 1;
for t in timesteps: x = step(model(x, t), t, x[, variance_noise=z]).prev_sample with
model(x, t) = 0.5 x t / (t + 1) + 0.3 sin(3 x + t / 250) (t in x's dtype). SDE runs: one
g = torch.Generator().manual_seed(seed), per step z = torch.randn(x.shape, generator=g,
dtype=float32) (cast to float64 in the float64 run). Each run once in float64 and once stock
float32 (diffusers_ref.py). Printed: timesteps, sigmas (float64 run), sum|x| and
x.flatten()[0, 1, 100, 383, 500, 767] of each run.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402

MULTI = ("scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler")
SINGLE = ("scheduling_dpmsolver_singlestep", "DPMSolverSinglestepScheduler")
BASE = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")
SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
ELEMS = [0, 1, 100, 383, 500, 767]

# name, changes, steps, seed
MULTISTEP = [
    ("Order1Zero", {"solver_order": 1}, 10),
    ("Order2Defaults", {}, 10),
    ("Order2HeunSigmaMin", {"solver_type": "heun", "final_sigmas_type": "sigma_min", "lower_order_final": False}, 10),
    ("Order3Defaults", {"solver_order": 3}, 10),
    ("Order3SigmaMinNoLowerFinal", {"solver_order": 3, "final_sigmas_type": "sigma_min", "lower_order_final": False},
     10),
    ("Order3Zero20Steps", {"solver_order": 3}, 20),
    ("Order2VKarrasZero", {"prediction_type": "v_prediction", "use_karras_sigmas": True}, 12),
    ("Order2EulerAtFinal20", {"euler_at_final": True, "final_sigmas_type": "sigma_min"}, 20),
    ("Order3ScaledLinearKarrasSigmaMin", dict(solver_order=3, use_karras_sigmas=True, final_sigmas_type="sigma_min",
                                              **SD), 8),
    ("Order2HeunKarrasSigmaMinNoLowerFinal", {"solver_type": "heun", "use_karras_sigmas": True,
                                              "final_sigmas_type": "sigma_min", "lower_order_final": False}, 10),
]
SDE = [
    ("Sde2Defaults", {}, 10, 0),
    ("Sde2HeunSigmaMin", {"solver_type": "heun", "final_sigmas_type": "sigma_min", "lower_order_final": False}, 10, 1),
    ("Sde1Zero", {"solver_order": 1}, 10, 2),
]
SINGLESTEP = [
    ("Single2Defaults", {}, 10),
    ("Single3MidpointSigmaMin", {"solver_order": 3, "final_sigmas_type": "sigma_min"}, 12),
    ("Single3HeunSigmaMin", {"solver_order": 3, "solver_type": "heun", "final_sigmas_type": "sigma_min"}, 12),
    ("Single3HeunZero11", {"solver_order": 3, "solver_type": "heun"}, 11),
    ("Single2HeunVKarrasSigmaMin", {"solver_type": "heun", "prediction_type": "v_prediction",
                                    "use_karras_sigmas": True, "final_sigmas_type": "sigma_min"}, 10),
    ("Single1", {"solver_order": 1}, 10),
    ("Single3LowerFinal9", {"solver_order": 3, "lower_order_final": True, "final_sigmas_type": "sigma_min"}, 9),
]
# (order, lower_order_final, final) x steps of the OrderCase list
# (without lower_order_final, fewer steps than the order are left out)
ORDER_CASES = [(o, l, f, n) for o in (1, 2, 3) for l in (False, True) for f in ("min", "zero")
               for n in (1, 2, 3, 4, 5, 6, 7, 10, 11, 12) if l or n >= o]


def nonlinear_model(x, t):
    tt = t.to(x.dtype).reshape(-1, 1, 1, 1)
    return x * tt / (tt + 1) * 0.5 + torch.sin(x * 3 + tt / 250) * 0.3


def dummy_model(x, t):
    tt = t.reshape(-1, 1, 1, 1).to(x.dtype)
    return x * tt / (tt + 1)


def golden_run(src, which, changes, steps, f64, seed=None):
    dtype = torch.float64 if f64 else torch.float32
    cfg = dict(BASE, **changes)
    if seed is not None:
        cfg["algorithm_type"] = "sde-dpmsolver++"
    s = ref.scheduler(src, which[0], which[1], f64, **cfg)
    with ref.precision(f64):
        s.set_timesteps(steps)
        x = ref.dummy_sample_deter(dtype) * 2 - 1
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        for t in s.timesteps:
            kw = {}
            if g is not None:
                kw["variance_noise"] = torch.randn(x.shape, generator=g, dtype=torch.float32).to(dtype)
            x = s.step(nonlinear_model(x, t), t, x, **kw).prev_sample
    assert x.dtype == dtype
    return s, x


def options(changes, single):
    o = "order=%d,solver_type=%s,lower_order_final=%s" % (
        changes.get("solver_order", 2), changes.get("solver_type", "midpoint"),
        str(changes.get("lower_order_final", not single)).lower())
    if not single:
        o += ",euler_at_final=%s" % str(changes.get("euler_at_final", False)).lower()
    sched = ",".join("%s=%s" % (k, changes[k]) for k in ("beta_schedule", "beta_start", "beta_end") if k in changes)
    spacing = "karras" if changes.get("use_karras_sigmas") else "exponential" if changes.get("use_lu_lambdas") else "linspace"
    final = "min" if changes.get("final_sigmas_type") == "sigma_min" else "zero"
    return o, sched, spacing, final, changes.get("prediction_type", "epsilon")


def print_goldens(src, which, cases, single=False):
    for case in cases:
        name, changes, steps = case[:3]
        seed = case[3] if len(case) > 3 else None
        s64, x64 = golden_run(src, which, changes, steps, True, seed)
        _, x32 = golden_run(src, which, changes, steps, False, seed)
        shown = {k: v for k, v in changes.items()}
        print("// %s: %s, set_timesteps(%d)%s" % (name, shown, steps, "" if seed is None else ", seed %d" % seed))
        o, sched, spacing, final, pred = options(changes, single)
        print('{"%s", "%s", "%s", "%s", "%s", "%s", %d, %d,' % (name, o, sched, spacing, final, pred, steps,
                                                                  -1 if seed is None else seed))
        print("  {%s}," % ref.join([int(t) for t in s64.timesteps]))
        print("  {%s}," % ref.join(s64.sigmas, ref.g17))
        print("  %s, {%s}," % (ref.g17(x64.abs().sum()), ref.join(x64.reshape(-1)[ELEMS], ref.g17)))
        if torch.isnan(x32).any():
            print("  // diffusers float32 gives NaN here (0/0 at the zero-length last step); we expect its float64 values")
            x32 = x64
        print("  %s, {%s}}," % (ref.g9(x32.abs().sum()), ref.join(x32.reshape(-1)[ELEMS], ref.g9)))


def print_orders(src):
    for o, l, f, n in ORDER_CASES:
        s = ref.scheduler(src, SINGLE[0], SINGLE[1], False, solver_order=o, lower_order_final=l,
                          final_sigmas_type="sigma_min" if f == "min" else "zero")
        s.set_timesteps(n)
        print('    {%d, %s, "%s", %d, {%s}},' % (o, str(l).lower(), f, n, ref.join(s.order_list)))


SUITE_CONFIG = dict(BASE, solver_order=2, prediction_type="epsilon", thresholding=False, sample_max_value=1.0,
                    algorithm_type="dpmsolver++", solver_type="midpoint", lambda_min_clipped=-float("inf"),
                    variance_type=None, final_sigmas_type="sigma_min")
# name, changes, suite mean (diffusers' test file), steps, start
SUITE_MULTI = [
    ("test_full_loop_no_noise", "linspace", "epsilon", False, {}, 0.3301),
    ("test_full_loop_no_noise_thres", "linspace", "epsilon", True,
     dict(thresholding=True, dynamic_thresholding_ratio=0.87, sample_max_value=0.5), 1.1364),
    ("test_full_loop_with_v_prediction", "linspace", "v_prediction", False, dict(prediction_type="v_prediction"),
     0.2251),
    ("test_full_loop_with_karras_and_v_prediction", "karras", "v_prediction", False,
     dict(prediction_type="v_prediction", use_karras_sigmas=True), 0.2096),
    ("test_full_loop_with_lu_and_v_prediction", "exponential", "v_prediction", False,
     dict(prediction_type="v_prediction", use_lu_lambdas=True), 0.1554),
]
SUITE_SINGLE = [
    ("test_full_loop_no_noise", "linspace", "epsilon", {}, 10, 0, 0.2791),
    ("test_full_loop_with_karras", "karras", "epsilon", dict(use_karras_sigmas=True), 10, 0, 0.2248),
    ("test_full_loop_with_v_prediction", "linspace", "v_prediction", dict(prediction_type="v_prediction"), 10, 0,
     0.1453),
    ("test_full_loop_with_karras_and_v_prediction", "karras", "v_prediction",
     dict(prediction_type="v_prediction", use_karras_sigmas=True), 10, 0, 0.0649),
    ("test_full_uneven_loop", "linspace", "epsilon", {}, 50, 3, 0.2574),
]


def suite_run(src, which, cfg, steps, start, f64, noise_at=None):
    dtype = torch.float64 if f64 else torch.float32
    s = ref.scheduler(src, which[0], which[1], f64, **cfg)
    with ref.precision(f64):
        s.set_timesteps(steps)
        x = ref.dummy_sample_deter(dtype)
        ts = s.timesteps[start:]
        if noise_at is not None:
            ts = s.timesteps[noise_at:]
            x = s.add_noise(x, ref.dummy_sample_deter(dtype, reverse=True), ts[:1])
        g = torch.manual_seed(0)
        for t in ts:
            kw = {"generator": g} if which is MULTI and noise_at is None else {}
            x = s.step(dummy_model(x, t), t, x, **kw).prev_sample
    assert x.dtype == dtype
    return float(x.abs().sum())


def print_suite(src):
    print("// dpm_solver_pp_test.cpp kSuite: name, spacing, prediction, thresholding, mean, sum32, sum64")
    for name, spacing, pred, thr, changes, mean in SUITE_MULTI:
        cfg = dict(SUITE_CONFIG, lower_order_final=False, euler_at_final=False, **changes)
        s32 = suite_run(src, MULTI, cfg, 10, 0, False)
        s64 = suite_run(src, MULTI, cfg, 10, 0, True)
        print('    {"%s", "%s", "%s", %s, %s, %.12g, %.12g},' % (name, spacing, pred, str(thr).lower(), mean, s32, s64))
    cfg = dict(SUITE_CONFIG, lower_order_final=False, euler_at_final=False)
    print("// dpm_solver_pp_test.cpp test_full_loop_with_noise, float64 sum: %.12g (float32 %.12g)" % (
        suite_run(src, MULTI, cfg, 10, 0, True, noise_at=5), suite_run(src, MULTI, cfg, 10, 0, False, noise_at=5)))
    print("// dpm_solver_pp_singlestep_test.cpp kSuite: name, spacing, prediction, steps, start, mean, sum32, sum64")
    for name, spacing, pred, changes, steps, start, mean in SUITE_SINGLE:
        cfg = dict(SUITE_CONFIG, **changes)
        s32 = suite_run(src, SINGLE, cfg, steps, start, False)
        s64 = suite_run(src, SINGLE, cfg, steps, start, True)
        print('    {"%s", "%s", "%s", %d, %d, %s, %.12g, %.12g},' % (name, spacing, pred, steps, start, mean, s32, s64))
    print("// dpm_solver_pp_singlestep_test.cpp test_full_loop_with_noise, float64 sum: %.12g (float32 %.12g)" % (
        suite_run(src, SINGLE, SUITE_CONFIG, 10, 0, True, noise_at=5),
        suite_run(src, SINGLE, SUITE_CONFIG, 10, 0, False, noise_at=5)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ref.add_source_argument(ap)
    ap.add_argument("which", choices=["multistep", "sde", "single", "orders", "suite"])
    a = ap.parse_args()
    src = ref.source_dir(a.diffusers)
    if a.which == "multistep":
        print_goldens(src, MULTI, MULTISTEP)
    elif a.which == "sde":
        print_goldens(src, MULTI, SDE)
    elif a.which == "single":
        print_goldens(src, SINGLE, SINGLESTEP, single=True)
    elif a.which == "orders":
        print_orders(src)
    else:
        print_suite(src)


if __name__ == "__main__":
    main()
