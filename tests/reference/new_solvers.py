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
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH k
        kKGolden of tests/samplers/k_from_diffusers_test.cpp (LMSDiscreteScheduler, KDPM2DiscreteScheduler,
        KDPM2AncestralDiscreteScheduler)
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH pndm [--suite]
        kPndmGolden [kPndmSuite] of tests/samplers/plms_test.cpp (PNDMScheduler, PLMS and PNDM)
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH edm [--suite]
        kEdmGolden [kEdmSuite] of tests/samplers/edm_test.cpp (EDMEulerScheduler and
        EDMDPMSolverMultistepScheduler)
    /usr/bin/python3 tests/reference/new_solvers.py --diffusers PATH lcm [--suite]
        kLcmGolden [kLcmSuite] of tests/samplers/lcm_test.cpp (LCMScheduler and TCDScheduler)

cases: flow_match.py's harness (LCM / TCD: run_distilled below, the same loop with the scheduler's
own draws from torch.Generator().manual_seed(seed) and TCD's eta passed to step(); the printed
sigmas are sigma_ve = sqrt((1 - abar) / abar) of the float64 run's timesteps, then of the point the
last step lands on: 0 for LCM, training step 0 for TCD) (the scheduler built from the case's config, set_timesteps(steps),
x = 2 * dummy_sample_deter - 1 stepped with the nonlinear model at the scheduler's timesteps; a
float64 copy of the scheduler module and stock float32).

suite: diffusers' own full loops (tests/schedulers/test_scheduler_unipc.py and
test_scheduler_dpm_multi.py at 58eb52c): the suite's scheduler config, set_timesteps(10), the dummy
model sample * t / (t + 1) from dummy_sample_deter; with_noise cases first add_noise(sample,
dummy_noise_deter, timesteps[t_start]) and step over timesteps[t_start:]. The printed rows carry the
suite's expected mean (copied from the test file) and the sums of the float64 and float32 runs.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402
import flow_match  # noqa: E402
import torch  # noqa: E402

MULTI = flow_match.MULTI
UNIPC = ("scheduling_unipc_multistep", "UniPCMultistepScheduler")
DEIS = ("scheduling_deis_multistep", "DEISMultistepScheduler")
PNDM = ("scheduling_pndm", "PNDMScheduler")
LMS = ("scheduling_lms_discrete", "LMSDiscreteScheduler")
KDPM2 = ("scheduling_k_dpm_2_discrete", "KDPM2DiscreteScheduler")
KDPM2_A = ("scheduling_k_dpm_2_ancestral_discrete", "KDPM2AncestralDiscreteScheduler")
EULER = ("scheduling_euler_discrete", "EulerDiscreteScheduler")
EDM_EULER = ("scheduling_edm_euler", "EDMEulerScheduler")
EDM_DPM = ("scheduling_edm_dpmsolver_multistep", "EDMDPMSolverMultistepScheduler")
LCM = ("scheduling_lcm", "LCMScheduler")
TCD = ("scheduling_tcd", "TCDScheduler")
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
    ("UniPCFlowShift3", UNIPC, dict(flow_match.DPM_FLOW, flow_shift=3.0), 10, None, None),
    # (bh1 with flow sigmas: diffusers returns NaN at the zero final sigma, as on the VP grids.)
    ("UniPCFlowOrder3Shift3", UNIPC, dict(flow_match.DPM_FLOW, flow_shift=3.0, solver_order=3),
     12, None, None),
    ("UniPCFlowDynamic", UNIPC, dict(flow_match.DPM_FLOW, use_dynamic_shifting=True), 10,
     flow_match.calculate_shift(4096), None),
    ("UniPCFlowShiftTerminal", UNIPC, dict(flow_match.DPM_FLOW, flow_shift=3.0, shift_terminal=0.1), 10, None, None),
    # final_sigmas_type="sigma_min" repeats the last flow sigma: a zero-length last step (finite with bh1).
    ("UniPCFlowSigmaMin", UNIPC, dict(flow_match.DPM_FLOW, flow_shift=3.0, final_sigmas_type="sigma_min"), 8,
     None, None),
    ("UniPCFlowBh1SigmaMinTerminal", UNIPC, dict(flow_match.DPM_FLOW, flow_shift=2.0, solver_type="bh1",
                                                 final_sigmas_type="sigma_min", shift_terminal=0.2), 8, None, None),
    # (No epsilon-prediction flow case: UniPC's first flow sigma is 1 - 1e-6, where x0 = (x - sigma eps) /
    # alpha divides by 1e-6 and the float32 run is chaos; diffusers' and ours alike.)
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

# name, scheduler, config (eta: TCD's step() argument), steps, seed
DISTILLED = [
    ("LcmDefault4", LCM, {}, 4, 0),
    ("LcmDefault1", LCM, {}, 1, 0),
    ("LcmOriginal100Steps8", LCM, {"original_inference_steps": 100}, 8, 3),
    ("LcmLinearV", LCM, {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                         "prediction_type": "v_prediction"}, 6, 1),
    ("LcmSampleClipScaling1", LCM, {"prediction_type": "sample", "clip_sample": True, "timestep_scaling": 1.0},
     5, 2),
    ("LcmThreshold", LCM, {"thresholding": True, "sample_max_value": 0.8}, 4, 5),
    ("LcmZeroSnrV", LCM, {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}, 4, 4),
    ("TcdDefault4", TCD, {}, 4, 0),
    ("TcdEta0", TCD, {"eta": 0.0}, 6, None),
    ("TcdEta1Steps8", TCD, {"eta": 1.0}, 8, 7),
    ("TcdEta05V", TCD, {"eta": 0.5, "prediction_type": "v_prediction"}, 5, 2),
    ("TcdSampleOriginal20", TCD, {"prediction_type": "sample", "original_inference_steps": 20}, 3, 6),
    # set_timesteps(n, strength=s) (the img2img pipelines): the grid starts part-way down.
    ("LcmStrength06", LCM, {"strength": 0.6}, 4, 0),
    ("LcmStrength03Original100", LCM, {"strength": 0.3, "original_inference_steps": 100}, 6, 2),
    ("TcdStrength05", TCD, {"strength": 0.5}, 4, 1),
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


def run_distilled(src, which, config, steps, seed, f64):
    dtype = torch.float64 if f64 else torch.float32
    cfg = {k: v for k, v in config.items() if k not in ("eta", "strength")}
    s = ref.scheduler(src, which[0], which[1], f64, **cfg)
    with ref.precision(f64):
        s.set_timesteps(steps, **({"strength": config["strength"]} if "strength" in config else {}))
        x = ref.dummy_sample_deter(dtype) * 2 - 1
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        kw = {"eta": config["eta"]} if "eta" in config else {}
        for t in s.timesteps:
            x = s.step(flow_match.nonlinear_model(x, t), t, x, generator=g, **kw).prev_sample
    assert x.dtype == dtype, (x.dtype, dtype)
    return s, x


def print_distilled(src):
    """LCM / TCD cases as ConfigGolden rows (tests/samplers/dpm_fixtures.h)."""
    for name, which, config, steps, seed in DISTILLED:
        s64, x64 = run_distilled(src, which, config, steps, seed, True)
        _, x32 = run_distilled(src, which, config, steps, seed, False)
        print("// %s: %s %s, set_timesteps(%d)%s" % (name, which[1], config, steps,
                                                     "" if seed is None else ", seed %d" % seed))
        print('{"%s", "%s", "%s", %d, %d,' % (name, which[1], flow_match.cpp_config(config, None), steps,
                                               -1 if seed is None else seed))
        ts = [int(t) for t in s64.timesteps]
        abar = s64.alphas_cumprod.to(torch.float64)
        sig = [float(((1 - abar[t]) / abar[t]).sqrt()) for t in ts]
        sig.append(0.0 if which is LCM else float(((1 - abar[0]) / abar[0]).sqrt()))
        print("  {%s}," % ref.join([float(t) for t in ts], ref.g17))
        print("  {%s}," % ref.join(sig, lambda v: "INFINITY" if v == float("inf") else ref.g17(v)))
        print("  %s, {%s}," % (ref.g17(x64.abs().sum()), ref.join(x64.reshape(-1)[flow_match.ELEMS], ref.g17)))
        print("  %s, {%s}}," % (ref.g9(x32.abs().sum()), ref.join(x32.reshape(-1)[flow_match.ELEMS], ref.g9)))


# name, scheduler, config, steps, seed (None: ODE)
EDM_CASES = [
    ("EdmEulerDefault", EDM_EULER, {}, 10, None),
    ("EdmEulerExponentialMin", EDM_EULER, {"sigma_schedule": "exponential", "final_sigmas_type": "sigma_min"}, 8,
     None),
    ("EdmEulerVRho5SigmaData1", EDM_EULER, {"prediction_type": "v_prediction", "rho": 5.0, "sigma_data": 1.0,
                                            "sigma_min": 0.03, "sigma_max": 14.6}, 12, None),
    ("EdmDpmDefault", EDM_DPM, {}, 10, None),
    ("EdmDpmOrder3Heun", EDM_DPM, {"solver_order": 3, "solver_type": "heun"}, 12, None),
    ("EdmDpmOrder1Exponential", EDM_DPM, {"solver_order": 1, "sigma_schedule": "exponential"}, 8, None),
    ("EdmDpmVMinNoLowerOrderFinal", EDM_DPM, {"prediction_type": "v_prediction", "final_sigmas_type": "sigma_min",
                                              "lower_order_final": False}, 10, None),
    ("EdmDpmThreshold", EDM_DPM, {"thresholding": True, "sample_max_value": 0.8}, 10, None),
    ("EdmDpmSde", EDM_DPM, {"algorithm_type": "sde-dpmsolver++"}, 10, 0),
    ("EdmDpmSdeOrder1Min", EDM_DPM, {"algorithm_type": "sde-dpmsolver++", "solver_order": 1,
                                     "final_sigmas_type": "sigma_min"}, 8, 3),
]


def run_edm(src, which, config, steps, seed, f64):
    """The pipeline's loop: x = base * init_noise_sigma, the model fed scale_model_input(x, t) at
    t = c_noise (EDM) or the model time, step() drawing any noise from the generator itself; the
    step() argument `order` (LMS) is taken out of the config."""
    dtype = torch.float64 if f64 else torch.float32
    step_kw = {k: v for k, v in config.items() if k == "order"}
    s = ref.scheduler(src, which[0], which[1], f64, **{k: v for k, v in config.items() if k != "order"})
    with ref.precision(f64):
        s.set_timesteps(steps)
        x = (ref.dummy_sample_deter(dtype) * 2 - 1) * s.init_noise_sigma
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        for t in s.timesteps:
            out = flow_match.nonlinear_model(s.scale_model_input(x, t), t)
            if which is LMS or which is KDPM2 or which is EULER:
                x = s.step(out, t, x, **step_kw).prev_sample
            else:
                x = s.step(out, t, x, generator=g).prev_sample
    assert x.dtype == dtype, (x.dtype, dtype)
    return s, x


SD_BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
K_CASES = [
    ("LmsDefault", LMS, {}, 10, None),
    ("LmsSdLeadingOrder2", LMS, dict(SD_BETAS, timestep_spacing="leading", steps_offset=1, order=2), 12, None),
    ("LmsKarrasV", LMS, dict(SD_BETAS, use_karras_sigmas=True, prediction_type="v_prediction"), 10, None),
    ("LmsTrailingSampleOrder3", LMS, {"timestep_spacing": "trailing", "prediction_type": "sample", "order": 3}, 8,
     None),
    ("Kdpm2Default", KDPM2, {}, 10, None),
    ("Kdpm2KarrasV", KDPM2, {"use_karras_sigmas": True, "prediction_type": "v_prediction"}, 8, None),
    ("Kdpm2LeadingSd", KDPM2, dict(SD_BETAS, timestep_spacing="leading", steps_offset=1), 12, None),
    ("Kdpm2ADefault", KDPM2_A, {}, 10, 0),
    ("Kdpm2AKarrasV", KDPM2_A, {"use_karras_sigmas": True, "prediction_type": "v_prediction"}, 8, 5),
    ("Kdpm2ATrailing", KDPM2_A, {"timestep_spacing": "trailing"}, 7, 2),
    # Sigma re-spacings over leading / trailing timesteps: diffusers interpolates the sigmas at the
    # spacing's timesteps first, so the range is sigma(t_last) .. sigma(t_first).
    ("EulerKarrasLeadingSd", EULER, dict(SD_BETAS, use_karras_sigmas=True, timestep_spacing="leading",
                                         steps_offset=1), 10, None),
    ("EulerExponentialTrailing", EULER, {"use_exponential_sigmas": True, "timestep_spacing": "trailing"}, 8, None),
    ("LmsKarrasTrailingSd", LMS, dict(SD_BETAS, use_karras_sigmas=True, timestep_spacing="trailing"), 9, None),
    ("Kdpm2BetaLeading", KDPM2, {"use_beta_sigmas": True, "timestep_spacing": "leading", "steps_offset": 1}, 8, None),
    # interpolation_type="log_linear": n + 1 log-uniform sigmas under the spacing's own timesteps; the run ends
    # on sigma_min (the appended final 0 is never reached and not printed). With a sigma override the
    # log-linear sigmas only supply the schedule's range.
    ("EulerLogLinear", EULER, {"interpolation_type": "log_linear"}, 10, None),
    ("EulerLogLinearLeadingSdV", EULER, dict(SD_BETAS, interpolation_type="log_linear", timestep_spacing="leading",
                                             steps_offset=1, prediction_type="v_prediction"), 8, None),
    ("EulerLogLinearKarrasTrailingSd", EULER, dict(SD_BETAS, interpolation_type="log_linear", use_karras_sigmas=True,
                                                   timestep_spacing="trailing"), 8, None),
    ("Kdpm2AKarrasTrailingV", KDPM2_A, {"use_karras_sigmas": True, "timestep_spacing": "trailing",
                                        "prediction_type": "v_prediction"}, 6, 3),
]


def print_k(src):
    """LMS / KDPM2 / KDPM2-a cases as ConfigGolden rows: the pipeline loop of run_edm (KDPM2's
    interleaved timesteps and sigmas de-interleaved to the grid)."""
    for name, which, config, steps, seed in K_CASES:
        s64, x64 = run_edm(src, which, config, steps, seed, True)
        _, x32 = run_edm(src, which, config, steps, seed, False)
        ts, sig = [float(t) for t in s64.timesteps], [float(v) for v in s64.sigmas]
        overrides = any(config.get(k) for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"))
        if config.get("interpolation_type") == "log_linear" and not overrides:
            sig = sig[:steps + 1]  # the steps end on sigmas[steps] = sigma_min
        if which in (KDPM2, KDPM2_A):  # [t0, m1, t1, m2, t2, ...] and [s0, s1, s1, s2, s2, ..., 0, 0, 0]
            ts = ts[:1] + ts[2::2]
            sig = sig[:1] + sig[1:2 * steps - 1:2] + [0.0]
        print("// %s: %s %s, set_timesteps(%d)%s" % (name, which[1], config, steps,
                                                     "" if seed is None else ", seed %d" % seed))
        print('{"%s", "%s", "%s", %d, %d,' % (name, which[1], flow_match.cpp_config(config, None), steps,
                                               -1 if seed is None else seed))
        print("  {%s}," % ref.join(ts, ref.g17))
        print("  {%s}," % ref.join(sig, ref.g17))
        print("  %s, {%s}," % (ref.g17(x64.abs().sum()), ref.join(x64.reshape(-1)[flow_match.ELEMS], ref.g17)))
        print("  %s, {%s}}," % (ref.g9(x32.abs().sum()), ref.join(x32.reshape(-1)[flow_match.ELEMS], ref.g9)))


def print_edm(src):
    """EDM cases as ConfigGolden rows; diffuse's EDM model time is sigma, so the timesteps row holds
    the sigmas the network is called at (diffusers' timesteps are c_noise = ln(sigma) / 4 of them)."""
    for name, which, config, steps, seed in EDM_CASES:
        s64, x64 = run_edm(src, which, config, steps, seed, True)
        _, x32 = run_edm(src, which, config, steps, seed, False)
        sig = [float(v) for v in s64.sigmas]
        assert all(abs(float(t) - 0.25 * math.log(v)) < 1e-12 for t, v in zip(s64.timesteps, sig)), name
        print("// %s: %s %s, set_timesteps(%d)%s" % (name, which[1], config, steps,
                                                     "" if seed is None else ", seed %d" % seed))
        print('{"%s", "%s", "%s", %d, %d,' % (name, which[1], flow_match.cpp_config(config, None), steps,
                                               -1 if seed is None else seed))
        print("  {%s}," % ref.join(sig[:-1], ref.g17))
        print("  {%s}," % ref.join(sig, ref.g17))
        print("  %s, {%s}," % (ref.g17(x64.abs().sum()), ref.join(x64.reshape(-1)[flow_match.ELEMS], ref.g17)))
        print("  %s, {%s}}," % (ref.g9(x32.abs().sum()), ref.join(x32.reshape(-1)[flow_match.ELEMS], ref.g9)))


SUITE_EDM_EULER = {"num_train_timesteps": 256, "sigma_min": 0.002, "sigma_max": 80.0}
SUITE_EDM_DPM = {"sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5, "num_train_timesteps": 1000,
                 "solver_order": 2, "prediction_type": "epsilon", "thresholding": False, "sample_max_value": 1.0,
                 "algorithm_type": "dpmsolver++", "solver_type": "midpoint", "lower_order_final": False,
                 "euler_at_final": False, "final_sigmas_type": "sigma_min"}
# name, scheduler, config, t_start (None: the whole loop), pipeline loop (scale_model_input and
# init_noise_sigma: the Euler suite) or the bare loop (the DPM suite), the suite's expected mean |x|
SUITE_EDM = [
    ("edm_euler test_full_loop_no_noise", EDM_EULER, SUITE_EDM_EULER, None, True, 0.044),
    ("edm_dpm test_full_loop_no_noise", EDM_DPM, SUITE_EDM_DPM, None, False, 0.0001),
    ("edm_dpm test_full_loop_with_noise", EDM_DPM, SUITE_EDM_DPM, 5, False, 0.0106),
    ("edm_dpm test_full_loop_no_noise_thres", EDM_DPM,
     dict(SUITE_EDM_DPM, thresholding=True, dynamic_thresholding_ratio=0.87, sample_max_value=0.5), None, False,
     0.0080),
    ("edm_dpm test_full_loop_with_v_prediction", EDM_DPM, dict(SUITE_EDM_DPM, prediction_type="v_prediction"),
     None, False, 0.0092),
]


def print_suite_edm(src):
    """diffusers' own EDM full loops (test_scheduler_edm_euler.py, test_scheduler_edm_dpmsolver_multistep.py
    at 58eb52c) with their dummy model sample * t / (t + 1), t = c_noise."""
    for name, which, config, t_start, pipeline, mean in SUITE_EDM:
        sums = []
        for f64 in (True, False):
            dtype = torch.float64 if f64 else torch.float32
            s = ref.scheduler(src, which[0], which[1], f64, **config)
            with ref.precision(f64):
                s.set_timesteps(10)
                x = ref.dummy_sample_deter(dtype)
                timesteps = s.timesteps
                if pipeline:
                    x = x * s.init_noise_sigma
                if t_start is not None:
                    timesteps = s.timesteps[t_start:]
                    x = s.add_noise(x, ref.dummy_sample_deter(dtype, reverse=True), timesteps[:1])
                for t in timesteps:
                    xin = s.scale_model_input(x, t) if pipeline else x
                    x = s.step(dummy_model(xin, t), t, x).prev_sample
            sums.append(x.abs().sum())
        cfg = {k: v for k, v in config.items()}
        print("// %s: %s %s%s" % (name, which[1], cfg, "" if t_start is None else ", t_start %d" % t_start))
        print('{"%s", "%s", "%s", %d, %s, %s, %s, %s},' % (
            name, which[1], flow_match.cpp_config(cfg, None), -1 if t_start is None else t_start,
            "true" if pipeline else "false", ref.r(mean), ref.g17(sums[0]), ref.g9(sums[1])))


# name, config, steps
PNDM_CASES = [
    ("PlmsSd", dict(SD_BETAS, skip_prk_steps=True, steps_offset=1), 10),
    ("PlmsV12", {"skip_prk_steps": True, "prediction_type": "v_prediction"}, 12),
    ("Plms2Steps", {"skip_prk_steps": True, "set_alpha_to_one": True}, 2),
    ("Plms1Step", {"skip_prk_steps": True}, 1),
    ("PndmDefault", {}, 10),
    ("PndmOddStrideAlphaOne", {"set_alpha_to_one": True}, 8),
    ("PndmV6", {"prediction_type": "v_prediction", "steps_offset": 1}, 6),
    ("PndmCosine20", {"beta_schedule": "squaredcos_cap_v2"}, 20),
]


def print_pndm(src):
    """PNDMScheduler cases as ConfigGolden rows: flow_match.py's harness over the scheduler's own
    timesteps (PRK's half steps and PLMS's repeated second timestep included); the printed grid is
    set_timesteps' _timesteps, noisiest first, then the final point (sigma_ve of
    final_alpha_cumprod)."""
    for name, config, steps in PNDM_CASES:
        s64, x64 = flow_match.run(src, PNDM, config, steps, None, None, True)
        _, x32 = flow_match.run(src, PNDM, config, steps, None, None, False)
        ts = [int(t) for t in s64._timesteps[::-1]]
        abar = s64.alphas_cumprod.to(torch.float64)
        sig = [float(((1 - abar[t]) / abar[t]).sqrt()) for t in ts]
        fa = float(s64.final_alpha_cumprod)
        sig.append(((1 - fa) / fa) ** 0.5)
        print("// %s: PNDMScheduler %s, set_timesteps(%d)" % (name, config, steps))
        print('{"%s", "PNDMScheduler", "%s", %d, -1,' % (name, flow_match.cpp_config(config, None), steps))
        print("  {%s}," % ref.join([float(t) for t in ts], ref.g17))
        print("  {%s}," % ref.join(sig, ref.g17))
        print("  %s, {%s}," % (ref.g17(x64.abs().sum()), ref.join(x64.reshape(-1)[flow_match.ELEMS], ref.g17)))
        print("  %s, {%s}}," % (ref.g9(x32.abs().sum()), ref.join(x32.reshape(-1)[flow_match.ELEMS], ref.g9)))


SUITE_PNDM_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}
# name, config, the suite's expected mean |x| (test_scheduler_pndm.py at 58eb52c)
SUITE_PNDM = [
    ("pndm test_full_loop_no_noise", SUITE_PNDM_CONFIG, 0.2580),
    ("pndm test_full_loop_with_v_prediction", dict(SUITE_PNDM_CONFIG, prediction_type="v_prediction"), 0.0878),
    ("pndm test_full_loop_with_set_alpha_to_one", dict(SUITE_PNDM_CONFIG, set_alpha_to_one=True, beta_start=0.01),
     0.2995),
    ("pndm test_full_loop_with_no_set_alpha_to_one",
     dict(SUITE_PNDM_CONFIG, set_alpha_to_one=False, beta_start=0.01), 0.2434),
]


def print_suite_pndm(src):
    """diffusers' own PNDM full loops: step_prk over prk_timesteps, then step_plms over
    plms_timesteps, the dummy model, set_timesteps(10), from dummy_sample_deter."""
    for name, config, mean in SUITE_PNDM:
        sums = []
        for f64 in (True, False):
            dtype = torch.float64 if f64 else torch.float32
            s = ref.scheduler(src, PNDM[0], PNDM[1], f64, **config)
            with ref.precision(f64):
                s.set_timesteps(10)
                x = ref.dummy_sample_deter(dtype)
                for t in s.prk_timesteps:
                    x = s.step_prk(dummy_model(x, torch.tensor(t)), t, x).prev_sample
                for t in s.plms_timesteps:
                    x = s.step_plms(dummy_model(x, torch.tensor(t)), t, x).prev_sample
            sums.append(x.abs().sum())
        print("// %s: PNDMScheduler %s" % (name, config))
        print('{"%s", "PNDMScheduler", "%s", -1, %s, %s, %s},' % (
            name, flow_match.cpp_config(config, None), ref.r(mean), ref.g17(sums[0]), ref.g9(sums[1])))


SUITE_DISTILLED_CONFIG = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                          "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}
# name, scheduler, steps, TCD's eta (None: LCM), the suite's expected sum |x|
SUITE_DISTILLED = [
    ("lcm test_full_loop_onestep", LCM, 1, None, 18.7097),
    ("lcm test_full_loop_multistep", LCM, 10, None, 197.7616),
    ("tcd test_full_loop_onestep_deter", TCD, 1, 0.0, 29.8715),
    ("tcd test_full_loop_multistep_deter", TCD, 10, 0.0, 181.2040),
]


def print_suite_distilled(src):
    """diffusers' own LCM / TCD full loops (test_scheduler_lcm.py / test_scheduler_tcd.py at 58eb52c):
    dummy_sample_deter, the dummy model, generator torch.manual_seed(0) passed to every step."""
    for name, which, steps, eta, expected in SUITE_DISTILLED:
        sums = []
        for f64 in (True, False):
            dtype = torch.float64 if f64 else torch.float32
            s = ref.scheduler(src, which[0], which[1], f64, **SUITE_DISTILLED_CONFIG)
            with ref.precision(f64):
                s.set_timesteps(steps)
                x = ref.dummy_sample_deter(dtype)
                g = torch.manual_seed(0)
                for t in s.timesteps:
                    kw = {} if eta is None else {"eta": eta}
                    x = s.step(dummy_model(x, t), t, x, generator=g, **kw).prev_sample
            sums.append(x.abs().sum())
        cfg = "" if eta is None else "eta=%s" % ref.r(eta)
        print('{"%s", "%s", "%s", %d, %s, %s, %s},' % (name, which[1], cfg, steps, ref.r(expected),
                                                      ref.g17(sums[0]), ref.g9(sums[1])))


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
    ap.add_argument("what", choices=["unipc", "dpm_noise", "deis", "lcm", "edm", "pndm", "k"])
    ap.add_argument("--suite", action="store_true", help="diffusers' own full loops instead of the golden runs")
    args = ap.parse_args()
    src = ref.source_dir(args.diffusers)
    if args.what == "k":
        print_k(src)
    elif args.what == "pndm":
        print_suite_pndm(src) if args.suite else print_pndm(src)
    elif args.what == "edm":
        print_edm(src) if not args.suite else print_suite_edm(src)
    elif args.what == "lcm":
        print_suite_distilled(src) if args.suite else print_distilled(src)
    elif args.suite:
        print_suite(src, args.what)
    else:
        prefix = {"unipc": "UniPC", "dpm_noise": "DpmNoise", "deis": "Deis"}[args.what]
        flow_match.print_cases(src, [c for c in CASES if c[0].startswith(prefix)])


if __name__ == "__main__":
    main()
