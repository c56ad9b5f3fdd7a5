# SPDX-License-Identifier: Apache-2.0
"""Golden values of DPM-Solver's grid options through from_diffusers (diffusers 58eb52c).

    /usr/bin/python3 tests/reference/dpm_options.py --diffusers PATH
        kDpmOptionGolden of tests/samplers/from_diffusers_test.cpp

The same harness as flow_match.py (its run() and print_cases(): the scheduler built from the case's
config, set_timesteps(steps), x = 2 * dummy_sample_deter - 1 stepped with the nonlinear model at
the scheduler's timesteps; float64 copy and stock float32) on the discrete schedules, for the
options whose model times are not the rounded Karras ones: DPMSolverMultistep/Singlestep cast
their timesteps to int64, which truncates the exponential and beta ones and, on the cosine
schedule, multistep's Karras ones (singlestep rounds those); and lambda_min_clipped, which drops
the noisiest training steps from the linspace / leading grids.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402
import flow_match  # noqa: E402

MULTI, SINGLE = flow_match.MULTI, flow_match.SINGLE
COSINE = {"beta_schedule": "squaredcos_cap_v2"}
# name, scheduler, config, steps, mu (None), seed (None: ODE)
CASES = [
    ("MultiExponential", MULTI, {"use_exponential_sigmas": True}, 10, None, None),
    ("MultiBeta", MULTI, {"use_beta_sigmas": True}, 10, None, None),
    ("MultiBetaOrder3V", MULTI, {"use_beta_sigmas": True, "solver_order": 3, "prediction_type": "v_prediction"},
     12, None, None),
    ("MultiCosineKarras", MULTI, dict(COSINE, use_karras_sigmas=True), 10, None, None),
    ("MultiCosineClipped", MULTI, dict(COSINE, lambda_min_clipped=-5.1), 10, None, None),
    ("MultiLeadingClipped", MULTI, {"lambda_min_clipped": -4.0, "timestep_spacing": "leading"}, 10, None, None),
    ("SingleBeta", SINGLE, {"use_beta_sigmas": True}, 10, None, None),
    ("SingleCosineClipped", SINGLE, dict(COSINE, lambda_min_clipped=-5.1), 10, None, None),
    # algorithm_type="dpmsolver" (noise prediction); diffusers requires final_sigmas_type=sigma_min for it.
    ("SingleNoiseOrder2", SINGLE, {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, 10, None, None),
    ("SingleNoiseOrder3Heun", SINGLE, {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min",
                                       "solver_order": 3, "solver_type": "heun"}, 12, None, None),
    ("SingleNoiseOrder3MidpointV", SINGLE, {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min",
                                            "solver_order": 3, "prediction_type": "v_prediction"}, 11, None, None),
    ("SingleNoiseOrder2Heun", SINGLE, {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min",
                                       "solver_type": "heun"}, 9, None, None),
    # (No thresholding case: diffusers' singlestep dpmsolver indexes alpha_t by the timestep tensor there and
    # fails with a shape error; diffuse thresholds x0 and re-derives eps, as its multistep dpmsolver does.)
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ref.add_source_argument(ap)
    args = ap.parse_args()
    flow_match.print_cases(ref.source_dir(args.diffusers), CASES)


if __name__ == "__main__":
    main()
