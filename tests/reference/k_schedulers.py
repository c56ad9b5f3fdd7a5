# SPDX-License-Identifier: Apache-2.0
"""Golden values of tests/samplers/golden_euler.inc, golden_euler_ancestral.inc, golden_heun.inc.

    /usr/bin/python3 tests/reference/k_schedulers.py --diffusers PATH euler    > tests/samplers/golden_euler.inc
    /usr/bin/python3 tests/reference/k_schedulers.py --diffusers PATH euler_a  > tests/samplers/golden_euler_ancestral.inc
    /usr/bin/python3 tests/reference/k_schedulers.py --diffusers PATH heun     > tests/samplers/golden_heun.inc
    /usr/bin/python3 tests/reference/k_schedulers.py --diffusers PATH noise_suite
        diffusers' own test_full_loop_with_noise (tests/schedulers/test_scheduler_{euler,
        euler_ancestral,heun}.py) run in float64 and float32: the float64 sums quoted in
        euler_test.cpp, euler_ancestral_test.cpp and heun_test.cpp

Each case is diffusers' pipeline loop (the comment line above each case names the exact call):
    S.set_timesteps(steps); x = sample_deter * S.init_noise_sigma
    for t in S.timesteps: x = S.step(smooth_model(S.scale_model_input(x, t), t), t, x, ...).prev_sample
with smooth_model(x, t) = 0.8 tanh(x) + 0.2 x cos(t / 300) (t in x's dtype) and sample_deter
computed in float32 (then cast), the generator (if any) made once per run. Run once in float64
(every float32 of the scheduler file replaced by float64, randn_tensor = float32 stream cast) and
once stock (float32), see diffusers_ref.py. Printed per case (k_sampler_fixtures.h GoldenCase): the
diffuse-side fields (from the table below), the float64 run's timesteps and sigmas (Heun's
de-interleaved: [t0, t1, t2, ...], [s0, s1, ..., 0]), then sum|x|, sum x * linspace(-1, 1, 768)
and x.flatten()[0, 123, 456, 767] of the final sample of each run.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402

MODULES = {
    "EulerDiscreteScheduler": "scheduling_euler_discrete",
    "EulerAncestralDiscreteScheduler": "scheduling_euler_ancestral_discrete",
    "HeunDiscreteScheduler": "scheduling_heun_discrete",
}
LABEL = {"EulerDiscreteScheduler": "euler", "EulerAncestralDiscreteScheduler": "euler_a",
         "HeunDiscreteScheduler": "heun"}

# scheduler class, constructor kwargs, steps, extra step() kwargs, generator seed (None: none),
# and the diffuse-side fields of the GoldenCase (name, T, betas, schedule options, spacing and its
# options, prediction, steps, sampler options, seed), written out by hand.
CASES = {
    "euler": [
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule='linear'), 10, dict(), None,
             '{"linspace_linear_eps", 1000, 0.0001, 0.02, "linear", {}, "linspace", {{"round", "false"}}, "epsilon", 10, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='leading', steps_offset=1), 12, dict(), None,
             '{"leading_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "leading", {{"steps_offset", "1"}}, "epsilon", 12, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='trailing', prediction_type='v_prediction'), 8, dict(), None,
             '{"trailing_sd_v", 1000, 0.00085, 0.012, "scaled_linear", {}, "trailing", {}, "v_prediction", 8, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', use_karras_sigmas=True), 10, dict(), None,
             '{"karras_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule='linear', use_karras_sigmas=True, prediction_type='v_prediction'), 7, dict(), None,
             '{"karras_linear_v", 1000, 0.0001, 0.02, "linear", {}, "karras", {}, "v_prediction", 7, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule='linear', prediction_type='sample'), 6, dict(), None,
             '{"linspace_linear_sample", 1000, 0.0001, 0.02, "linear", {}, "linspace", {{"round", "false"}}, "sample", 6, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', final_sigmas_type='sigma_min'), 9, dict(), None,
             '{"linspace_sd_sigma_min", 1000, 0.00085, 0.012, "scaled_linear", {}, "linspace", {{"round", "false"}, {"final", "min"}}, "epsilon", 9, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', use_exponential_sigmas=True), 10, dict(), None,
             '{"exponential_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "epsilon", 10, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', use_beta_sigmas=True), 10, dict(), None,
             '{"beta_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "beta", {}, "epsilon", 10, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule='linear', use_karras_sigmas=True, sigma_min=0.1, sigma_max=10.0), 9, dict(), None,
             '{"karras_range_linear_eps", 1000, 0.0001, 0.02, "linear", {}, "karras", {{"sigma_min", "0.1"}, {"sigma_max", "10.0"}}, "epsilon", 9, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='trailing', prediction_type='v_prediction', rescale_betas_zero_snr=True), 10, dict(), None,
             '{"trailing_zero_snr_v", 1000, 0.00085, 0.012, "scaled_linear", {{"rescale_betas_zero_snr", "true"}, {"terminal_alphas_cumprod", "5.960464477539063e-08"}}, "trailing", {}, "v_prediction", 10, {}, -1,'),
            ('EulerDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear'), 10, dict(s_churn=2.0, s_tmin=0.5, s_tmax=8.0, s_noise=1.003), 3,
             '{"churn_linspace_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "linspace", {{"round", "false"}}, "epsilon", 10, {{"s_churn", "2"}, {"s_tmin", "0.5"}, {"s_tmax", "8"}, {"s_noise", "1.003"}, {"churn_convention", "diffusers"}}, 3,'),
    ],
    "euler_a": [
            ('EulerAncestralDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule='linear'), 10, dict(), 0,
             '{"linspace_linear_eps", 1000, 0.0001, 0.02, "linear", {}, "linspace", {{"round", "false"}}, "epsilon", 10, {}, 0,'),
            ('EulerAncestralDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='leading', steps_offset=1), 12, dict(), 1,
             '{"leading_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "leading", {{"steps_offset", "1"}}, "epsilon", 12, {}, 1,'),
            ('EulerAncestralDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='trailing', prediction_type='v_prediction'), 8, dict(), 2,
             '{"trailing_sd_v", 1000, 0.00085, 0.012, "scaled_linear", {}, "trailing", {}, "v_prediction", 8, {}, 2,'),
            ('EulerAncestralDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear'), 25, dict(), 4,
             '{"linspace_sd_eps_25", 1000, 0.00085, 0.012, "scaled_linear", {}, "linspace", {{"round", "false"}}, "epsilon", 25, {}, 4,'),
            ('EulerAncestralDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='trailing', prediction_type='v_prediction', rescale_betas_zero_snr=True), 10, dict(), 5,
             '{"trailing_zero_snr_v", 1000, 0.00085, 0.012, "scaled_linear", {{"rescale_betas_zero_snr", "true"}, {"terminal_alphas_cumprod", "5.960464477539063e-08"}}, "trailing", {}, "v_prediction", 10, {}, 5,'),
    ],
    "heun": [
            ('HeunDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule='linear'), 10, dict(), None,
             '{"linspace_linear_eps", 1000, 0.0001, 0.02, "linear", {}, "linspace", {{"round", "false"}}, "epsilon", 10, {}, -1,'),
            ('HeunDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', use_exponential_sigmas=True, prediction_type='v_prediction'), 9, dict(), None,
             '{"exponential_sd_v", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "v_prediction", 9, {}, -1,'),
            ('HeunDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', prediction_type='sample'), 6, dict(), None,
             '{"linspace_sd_sample", 1000, 0.00085, 0.012, "scaled_linear", {}, "linspace", {{"round", "false"}}, "sample", 6, {}, -1,'),
            ('HeunDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='leading', steps_offset=1), 12, dict(), None,
             '{"leading_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "leading", {{"steps_offset", "1"}}, "epsilon", 12, {}, -1,'),
            ('HeunDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', timestep_spacing='trailing', prediction_type='v_prediction'), 8, dict(), None,
             '{"trailing_sd_v", 1000, 0.00085, 0.012, "scaled_linear", {}, "trailing", {}, "v_prediction", 8, {}, -1,'),
            ('HeunDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', use_karras_sigmas=True), 10, dict(), None,
             '{"karras_sd_eps", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, {}, -1,'),
            ('HeunDiscreteScheduler', dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule='linear', use_beta_sigmas=True, prediction_type='v_prediction'), 8, dict(), None,
             '{"beta_linear_v", 1000, 0.0001, 0.02, "linear", {}, "beta", {}, "v_prediction", 8, {}, -1,'),
    ],
}


def smooth_model(x, t):
    tt = t.to(x.dtype).reshape(-1, 1, 1, 1)
    return x.tanh() * 0.8 + x * (tt / 300).cos() * 0.2


def stats(x):
    f = x.double().reshape(-1)
    w = torch.linspace(-1, 1, f.numel(), dtype=torch.float64)
    return float(f.abs().sum()), float((f * w).sum()), [float(f[i]) for i in (0, 123, 456, 767)]


def run(src, cls, ctor, steps, step_kw, seed, f64):
    dtype = torch.float64 if f64 else torch.float32
    s = ref.scheduler(src, MODULES[cls], cls, f64, **ctor)
    with ref.precision(f64):
        s.set_timesteps(steps)
        x = ref.dummy_sample_deter(torch.float32).to(dtype) * s.init_noise_sigma
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        kw = dict(step_kw)
        if g is not None:
            kw["generator"] = g
        for t in s.timesteps:
            x = s.step(smooth_model(s.scale_model_input(x, t), t), t, x, **kw).prev_sample
    assert x.dtype == dtype
    return s, x


def call_text(cls, ctor, steps, step_kw, seed):
    args = ", ".join("%s=%r" % kv for kv in ctor.items())
    extra = "".join(", %s=%r" % kv for kv in step_kw.items())
    if seed is not None:
        extra += ", generator=torch.Generator().manual_seed(%d)" % seed
    return "%s(%s).set_timesteps(%d); step(out, t, x%s)" % (cls, args, steps, extra)


def fmt_stats(st):
    return "{%s, %s, {%s}}" % (ref.g17(st[0]), ref.g17(st[1]), ref.join(st[2], ref.g17))


def noise_suite(src):
    """test_full_loop_with_noise: T = 1100 linear 1e-4..0.02, set_timesteps(10), add_noise at
    timesteps[8 * order], then the test's loop with the dummy model sample * t / (t + 1)."""
    for cls in MODULES:
        sums = []
        for f64 in (True, False):
            dtype = torch.float64 if f64 else torch.float32
            s = ref.scheduler(src, MODULES[cls], cls, f64, num_train_timesteps=1100, beta_start=0.0001,
                              beta_end=0.02, beta_schedule="linear")
            with ref.precision(f64):
                s.set_timesteps(10)
                g = torch.manual_seed(0)
                x = ref.dummy_sample_deter(dtype) * s.init_noise_sigma
                ts = s.timesteps[8 * s.order:]
                x = s.add_noise(x, ref.dummy_sample_deter(dtype, reverse=True), ts[:1])
                for t in ts:
                    x = s.scale_model_input(x, t)
                    tt = t.reshape(-1, 1, 1, 1).to(x.dtype)
                    kw = {} if cls == "HeunDiscreteScheduler" else {"generator": g}
                    x = s.step(x * tt / (tt + 1), t, x, **kw).prev_sample
            sums.append(float(x.abs().sum()))
        print("%s test_full_loop_with_noise: sum|x| float64 %.12g, float32 %.12g" % (cls, sums[0], sums[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ref.add_source_argument(ap)
    ap.add_argument("which", choices=sorted(CASES) + ["noise_suite"])
    a = ap.parse_args()
    src = ref.source_dir(a.diffusers)
    if a.which == "noise_suite":
        return noise_suite(src)
    print("    // Generated by /usr/bin/python3 tests/reference/k_schedulers.py --diffusers DIR %s (see tests/reference/README.md)."
          % a.which)
    for cls, ctor, steps, step_kw, seed, prefix in CASES[a.which]:
        s64, x64 = run(src, cls, ctor, steps, step_kw, seed, True)
        _, x32 = run(src, cls, ctor, steps, step_kw, seed, False)
        ts, sg = [float(t) for t in s64.timesteps], [float(v) for v in s64.sigmas]
        if cls == "HeunDiscreteScheduler":  # de-interleave [t0, t1, t1, t2, t2, ...]
            ts = [ts[0]] + ts[1::2]
            sg = [sg[0]] + sg[1:-1:2] + [sg[-1]]
        print("    // %s: %s" % (LABEL[cls], call_text(cls, ctor, steps, step_kw, seed)))
        print("    " + prefix)
        print("     {%s}," % ref.join(ts, ref.g17))
        print("     {%s}," % ref.join(sg, ref.g17))
        print("     %s," % fmt_stats(stats(x64)))
        print("     %s}," % fmt_stats(stats(x32)))


if __name__ == "__main__":
    main()
