# SPDX-License-Identifier: Apache-2.0
"""Golden values of tests/samplers/ddim_test.cpp and ddpm_test.cpp (the GoldenValues tables).

    /usr/bin/python3 tests/reference/ddim_ddpm.py --diffusers PATH ddim   # the kDdim* constants
    /usr/bin/python3 tests/reference/ddim_ddpm.py --diffusers PATH ddpm   # the kDdpm* constants
    /usr/bin/python3 tests/reference/ddim_ddpm.py --diffusers PATH ddpm_noise
        # diffusers' DDPMSchedulerTest.test_full_loop_with_noise in float32 and float64 (sums
        # quoted in ddpm_test.cpp DiffusersFullLoopWithNoise)

For each case: s = DDIMScheduler / DDPMScheduler(**cfg); s.set_timesteps(steps);
g = torch.Generator().manual_seed(0); x = sample_deter * scale;
for t in s.timesteps: x = s.step(x * t / (t + 1), t, x, [eta=eta,] generator=g).prev_sample
(variance_type="learned_range": the model output is cat([x * t / (t + 1), tanh(x) * 0.9], dim=1),
the second half the learned-variance values v in [-1, 1] that DDPMScheduler splits off)
once in float64 and once stock float32 (see diffusers_ref.py). Printed: timesteps,
alphas_cumprod[timesteps] (float64 run), sum(x), sum|x| and x.flatten()[0, 100, 383, 767] of the
float64 run, sum|x| and the same elements of the float32 run.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402

LINEAR = dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
THRESH = dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5)

# name, scheduler config, steps, step() kwargs, scale
DDIM = [
    ("kDdimEta0", "ddim_eta0", dict(LINEAR, clip_sample=False), 10, dict(eta=0.0), 1.0),
    ("kDdimEta1", "ddim_eta1", dict(LINEAR, clip_sample=False), 10, dict(eta=1.0), 1.0),
    ("kDdimLinspace", "ddim_linspace", dict(LINEAR, clip_sample=False, timestep_spacing="linspace"), 10,
     dict(eta=0.0), 1.0),
    ("kDdimSdTrailingV", "ddim_sd_trailing_v",
     dict(SD, clip_sample=False, timestep_spacing="trailing", prediction_type="v_prediction"), 10, dict(eta=0.0), 1.0),
    ("kDdimCos", "ddim_cos", dict(beta_schedule="squaredcos_cap_v2", clip_sample=False), 10, dict(eta=0.0), 1.0),
    ("kDdimZsnrVTrailing", "ddim_zsnr_v_trailing",
     dict(SD, clip_sample=False, rescale_betas_zero_snr=True, timestep_spacing="trailing",
          prediction_type="v_prediction"), 10, dict(eta=0.0), 1.0),
    ("kDdimThresh", "ddim_thresh", dict(LINEAR, clip_sample=False, **THRESH), 10, dict(eta=0.0), 20.0),
    ("kDdimThreshNoClip", "ddim_thresh_noclip", dict(LINEAR, clip_sample=False), 10, dict(eta=0.0), 20.0),
]
DDPM = [
    ("kDdpmSmall", "ddpm_small", dict(LINEAR, clip_sample=False), 10, {}, 1.0),
    ("kDdpmLarge", "ddpm_large", dict(LINEAR, clip_sample=False, variance_type="fixed_large"), 10, {}, 1.0),
    ("kDdpmSdTrailingV", "ddpm_sd_trailing_v",
     dict(SD, clip_sample=False, timestep_spacing="trailing", prediction_type="v_prediction"), 10, {}, 1.0),
    ("kDdpmCos", "ddpm_cos", dict(beta_schedule="squaredcos_cap_v2", clip_sample=False), 20, {}, 1.0),
    ("kDdpmZsnrVTrailing", "ddpm_zsnr_v_trailing",
     dict(SD, clip_sample=False, rescale_betas_zero_snr=True, timestep_spacing="trailing",
          prediction_type="v_prediction"), 10, {}, 1.0),
    ("kDdpmThresh", "ddpm_thresh", dict(LINEAR, clip_sample=False, **THRESH), 10, {}, 20.0),
    ("kDdpmLargeTrailing", "ddpm_large_trailing",
     dict(LINEAR, clip_sample=False, variance_type="fixed_large", timestep_spacing="trailing"), 10, {}, 1.0),
    # iDDPM / DiT's learned variance: the model returns 2C channels, the second C (tanh(x) * 0.9)
    # the interpolation v of log beta-tilde and log beta (see LEARNED below).
    ("kDdpmLearnedRange", "ddpm_learned_range",
     dict(LINEAR, clip_sample=False, variance_type="learned_range"), 10, {}, 1.0),
    ("kDdpmLearnedRangeTrailing", "ddpm_learned_range_trailing",
     dict(LINEAR, clip_sample=False, variance_type="learned_range", timestep_spacing="trailing"), 25, {}, 1.0),
]
IDX = [0, 100, 383, 767]


def run(src, module, cls, cfg, steps, kw, scale, f64):
    dtype = torch.float64 if f64 else torch.float32
    s = ref.scheduler(src, module, cls, f64, **cfg)
    with ref.precision(f64):
        s.set_timesteps(steps)
        g = torch.Generator().manual_seed(0)
        x = ref.dummy_sample_deter(dtype) * scale
        for t in s.timesteps:
            out = x * t / (t + 1)
            if cfg.get("variance_type") == "learned_range":
                out = torch.cat([out, torch.tanh(x) * 0.9], dim=1)  # LEARNED: [prediction, v]
            x = s.step(out, t, x, generator=g, **kw).prev_sample
    assert x.dtype == dtype
    return s, x


def ddpm_noise(src):
    """test_full_loop_with_noise: no set_timesteps (timesteps 999..0), t_start = 998, add_noise at
    timesteps[998] = 1, then the two steps with torch.manual_seed(0)."""
    for f64 in (False, True):
        dtype = torch.float64 if f64 else torch.float32
        s = ref.scheduler(src, "scheduling_ddpm", "DDPMScheduler", f64, **dict(LINEAR, variance_type="fixed_small",
                                                                              clip_sample=True))
        with ref.precision(f64):
            g = torch.manual_seed(0)
            ts = s.timesteps[998:]
            x = s.add_noise(ref.dummy_sample_deter(dtype), ref.dummy_sample_deter(dtype, reverse=True), ts[:1])
            for t in ts:
                tt = t.reshape(-1, 1, 1, 1).to(x.dtype)
                x = s.step(x * tt / (tt + 1), t, x, generator=g).prev_sample
        print("test_full_loop_with_noise %s: sum|x| %.8g, mean %.6g" % ("float64" if f64 else "float32",
                                                                       float(x.abs().sum()), float(x.abs().mean())))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ref.add_source_argument(ap)
    ap.add_argument("which", choices=["ddim", "ddpm", "ddpm_noise"])
    a = ap.parse_args()
    src = ref.source_dir(a.diffusers)
    if a.which == "ddpm_noise":
        return ddpm_noise(src)
    module, cls, cases = (("scheduling_ddim", "DDIMScheduler", DDIM) if a.which == "ddim"
                          else ("scheduling_ddpm", "DDPMScheduler", DDPM))
    for const, name, cfg, steps, kw, scale in cases:
        s64, x64 = run(src, module, cls, cfg, steps, kw, scale, True)
        _, x32 = run(src, module, cls, cfg, steps, kw, scale, False)
        ts = [int(t) for t in s64.timesteps]
        ac = [float(s64.alphas_cumprod[t]) for t in ts]
        f64, f32 = x64.reshape(-1), x32.reshape(-1).double()
        print("const GoldenValues %s =" % const)
        print('    {"%s", {%s},' % (name, ref.join(ts)))
        print("     {%s}," % ref.join(ac))
        print("     %s, %s, {%s}," % (ref.r(x64.sum()), ref.r(x64.abs().sum()), ref.join(f64[IDX])))
        print("     %s, {%s}};" % (ref.r(x32.abs().sum()), ref.join(f32[IDX])))


if __name__ == "__main__":
    main()
