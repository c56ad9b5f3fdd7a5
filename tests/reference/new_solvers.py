# SPDX-License-Identifier: Apache-2.0
"""Golden values of the issue-16 solvers through from_diffusers (diffusers 58eb52c).

    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH unipc
        kUniPCGolden of tests/samplers/unipc_test.cpp (ConfigGolden rows)
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH dpm_noise
        kDpmNoiseGolden of tests/samplers/dpm_solver_test.cpp (ConfigGolden rows)
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH unipc --suite
        kUniPCSuite of tests/samplers/unipc_test.cpp (SuiteGolden rows)
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH dpm_noise --suite
        the SuiteGolden of DpmSolverSampler.DiffusersSuiteLoop (tests/samplers/dpm_solver_test.cpp)
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH deis [--suite]
        kDeisGolden [kDeisSuite] of tests/samplers/deis_test.cpp

cases: flow_match.py's harness (the scheduler built from the case's config, set_timesteps(steps),
x = 2 * dummy_sample_deter - 1 stepped with the nonlinear model at the scheduler's timesteps; a
float64 copy of the scheduler module and stock float32).

suite: diffusers' own full loops (tests/schedulers/test_scheduler_unipc.py and
test_scheduler_dpm_multi.py at 58eb52c): the suite's scheduler config, set_timesteps(10), the dummy
model sample * t / (t + 1) from dummy_sample_deter; with_noise cases first add_noise(sample,
dummy_noise_deter, timesteps[t_start]) and step over timesteps[t_start:]. The printed rows carry the
suite's expected mean (copied from the test file) and the sums of the float64 and float32 runs.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402
import flow_match  # noqa: E402
import torch  # noqa: E402

MULTI = flow_match.MULTI
UNIPC = ("scheduling_unipc_multistep", "UniPCMultistepScheduler")
DEIS = ("scheduling_deis_multistep", "DEISMultistepScheduler")
MIN = {"final_sigmas_type": "sigma_min"}
NOISE = dict(MIN, algorithm_type="dpmsolver")
COSINE = {"beta_schedule": "squaredcos_cap_v2"}
# name, scheduler, config, steps, mu (None), seed (None: ODE)
CASES = [
    ("UniPCDefault", UNIPC, {}, 10, None, None),
    ("UniPCBh1Min", UNIPC, dict(MIN, solver_type="bh1"), 10, None, None),
    ("UniPCOrder3", UNIPC, {"solver_order": 3}, 12, None, None),
    ("UniPCOrder3Bh1Min", UNIPC, dict(MIN, solver_order=3, solver_type="bh1"), 12, None, None),
    ("UniPCOrder1", UNIPC, {"solver_order": 1}, 8, None, None),
    ("UniPCNoiseMin", UNIPC, dict(MIN, predict_x0=False), 10, None, None),
    ("UniPCNoiseOrder3Bh1Min", UNIPC, dict(MIN, predict_x0=False, solver_order=3, solver_type="bh1"), 12,
     None, None),
    ("UniPCKarrasV", UNIPC, {"use_karras_sigmas": True, "prediction_type": "v_prediction"}, 10, None, None),
    ("UniPCDisableCorrector", UNIPC, {"disable_corrector": [0, 3], "solver_order": 3}, 10, None, None),
    ("UniPCNoLowerOrderFinal", UNIPC, dict(MIN, solver_order=3, lower_order_final=False), 10, None, None),
    ("UniPCExponential", UNIPC, {"use_exponential_sigmas": True}, 10, None, None),
    ("UniPCBeta", UNIPC, {"use_beta_sigmas": True, "solver_order": 3}, 10, None, None),
    ("UniPCThresholdSample", UNIPC, {"thresholding": True, "prediction_type": "sample",
                                     "dynamic_thresholding_ratio": 0.9, "sample_max_value": 0.8}, 10, None, None),
    ("UniPCLeading", UNIPC, {"timestep_spacing": "leading", "steps_offset": 1}, 10, None, None),
    # SD 2.x's betas (with the default linear ones, the 2**-24 terminal clamp of rescale_betas_zero_snr is
    # above alphas_cumprod[998], a table diffuse refuses as non-monotonic).
    ("UniPCTrailingZeroSnr", UNIPC, {"timestep_spacing": "trailing", "rescale_betas_zero_snr": True,
                                     "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                                     "prediction_type": "v_prediction"}, 10, None, None),
    ("UniPCCosineMidpoint", UNIPC, dict(COSINE, solver_type="midpoint"), 10, None, None),
    ("DeisDefault", DEIS, {}, 10, None, None),
    ("DeisOrder1", DEIS, {"solver_order": 1}, 8, None, None),
    ("DeisOrder3", DEIS, {"solver_order": 3}, 12, None, None),
    ("DeisOrder3Long", DEIS, {"solver_order": 3, "prediction_type": "v_prediction"}, 20, None, None),
    ("DeisKarras", DEIS, {"use_karras_sigmas": True, "solver_order": 3}, 10, None, None),
    ("DeisExponentialSample", DEIS, {"use_exponential_sigmas": True, "prediction_type": "sample"}, 10, None,
     None),
    ("DeisThresholdLeading", DEIS, {"thresholding": True, "sample_max_value": 0.8, "timestep_spacing": "leading",
                                    "steps_offset": 1}, 10, None, None),
    ("DeisTrailingNoLowerOrderFinal", DEIS, {"timestep_spacing": "trailing", "lower_order_final": False,
                                             "solver_order": 3}, 10, None, None),
    ("DpmNoiseOrder1", MULTI, dict(NOISE, solver_order=1), 8, None, None),
    ("DpmNoiseOrder2", MULTI, NOISE, 10, None, None),
    ("DpmNoiseOrder2Heun", MULTI, dict(NOISE, solver_type="heun"), 10, None, None),
    ("DpmNoiseOrder3", MULTI, dict(NOISE, solver_order=3), 12, None, None),
    ("DpmNoiseOrder3V", MULTI, dict(NOISE, solver_order=3, prediction_type="v_prediction"), 20, None, None),
    ("DpmNoiseThreshold", MULTI, dict(NOISE, thresholding=True, sample_max_value=0.8), 10, None, None),
]

SUITE_UNIPC = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
               "solver_order": 2, "solver_type": "bh2", "final_sigmas_type": "sigma_min"}
SUITE_DPM = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
             "solver_order": 2, "prediction_type": "epsilon", "thresholding": False, "sample_max_value": 1.0,
             "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "lower_order_final": False,
             "euler_at_final": False, "lambda_min_clipped": -float("inf"), "variance_type": None,
             "final_sigmas_type": "sigma_min"}
SUITE_DEIS = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
              "solver_order": 2}
# name, scheduler, config, t_start (None: the whole loop), the suite's expected mean
SUITE = [
    ("unipc test_full_loop_no_noise", UNIPC, SUITE_UNIPC, None, 0.2464),
    ("unipc test_full_loop_with_karras", UNIPC, dict(SUITE_UNIPC, use_karras_sigmas=True), None, 0.2925),
    ("unipc test_full_loop_with_v_prediction", UNIPC, dict(SUITE_UNIPC, prediction_type="v_prediction"), None,
     0.1014),
    ("unipc test_full_loop_with_karras_and_v_prediction", UNIPC,
     dict(SUITE_UNIPC, prediction_type="v_prediction", use_karras_sigmas=True), None, 0.1966),
    ("unipc test_full_loop_with_noise", UNIPC, SUITE_UNIPC, 8, 0.4109),
    # test_scheduler_dpm_multi.py test_switch's dpmsolver check is for dpmsolver++; its full loops with
    # algorithm_type="dpmsolver" run through test_solver_order_and_type (no expected value), so the
    # dpmsolver suite row here carries only diffusers' own sums (mean printed from the float32 run).
    ("dpm_multi dpmsolver full loop", MULTI, dict(SUITE_DPM, algorithm_type="dpmsolver"), None, None),
    ("deis test_full_loop_no_noise", DEIS, SUITE_DEIS, None, 0.23916),
    ("deis test_full_loop_with_v_prediction", DEIS, dict(SUITE_DEIS, prediction_type="v_prediction"), None, 0.091),
    ("deis test_full_loop_with_noise", DEIS, SUITE_DEIS, 8, 0.41054),
]


def dummy_model(sample, t):
    return sample * t / (t + 1)


def run_suite(src, which, config, t_start, f64):
    dtype = torch.float64 if f64 else torch.float32
    cfg = {k: v for k, v in config.items() if v is not None}
    s = ref.scheduler(src, which[0], which[1], f64, **cfg)
    with ref.precision(f64):
        s.set_timesteps(10)
        sample = ref.dummy_sample_deter(dtype)
        timesteps = s.timesteps
        if t_start is not None:
            timesteps = s.timesteps[t_start:]
            sample = s.add_noise(sample, ref.dummy_sample_deter(dtype, reverse=True), timesteps[:1])
        for t in timesteps:
            sample = s.step(dummy_model(sample, t), t, sample).prev_sample
    assert sample.dtype == dtype
    return sample


def print_suite(src, which_rows):
    want = {"unipc": UNIPC, "dpm_noise": MULTI, "deis": DEIS}[which_rows]
    for name, which, config, t_start, mean in SUITE:
        if which is not want:
            continue
        x64 = run_suite(src, which, config, t_start, True)
        x32 = run_suite(src, which, config, t_start, False)
        cfg = {k: v for k, v in config.items() if v is not None and not (isinstance(v, float) and v == -float("inf"))}
        print("// %s: %s %s%s" % (name, which[1], cfg, "" if t_start is None else ", t_start %d" % t_start))
        print('{"%s", "%s", "%s", %d, %s, %s, %s},' % (
            name, which[1], flow_match.cpp_config(cfg, None), -1 if t_start is None else t_start,
            ref.r(mean) if mean is not None else "-1", ref.g17(x64.abs().sum()), ref.g9(x32.abs().sum())))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ref.add_source_argument(ap)
    ap.add_argument("what", choices=["unipc", "dpm_noise", "deis"])
    ap.add_argument("--suite", action="store_true", help="diffusers' own full loops instead of the golden runs")
    args = ap.parse_args()
    src = ref.source_dir(args.diffusers)
    if args.suite:
        print_suite(src, args.what)
    else:
        prefix = {"unipc": "UniPC", "dpm_noise": "DpmNoise", "deis": "Deis"}[args.what]
        flow_match.print_cases(src, [c for c in CASES if c[0].startswith(prefix)])


if __name__ == "__main__":
    main()
