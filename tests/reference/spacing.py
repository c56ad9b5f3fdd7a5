# SPDX-License-Identifier: Apache-2.0
"""Golden values of tests/schedules/spacing_test.cpp: diffusers' discrete tables and timestep lists.

    /usr/bin/python3 tests/reference/spacing.py --diffusers PATH tables     # TablesAreBitEqualToDiffusers
    /usr/bin/python3 tests/reference/spacing.py --diffusers PATH spacings   # EveryStepCountMatchesDiffusers
    /usr/bin/python3 tests/reference/spacing.py --diffusers PATH points     # the values of discrete_test.cpp

tables: DDIMScheduler(**cfg).alphas_cumprod and .betas (DDPMScheduler gives identical tensors),
stock float32 and the float64 copy (diffusers_ref.py); checksum = sum_i bits(v_i) * (i + 1) mod 2^64
over the float32 (or float64) bit patterns; plus alphas_cumprod[500] (float32) and [998] (float64).
spacings: DDPMScheduler(num_train_timesteps=T, linear 1e-4..0.02, timestep_spacing=s,
steps_offset=o).set_timesteps(n).timesteps for every n in 1..T, checksum
sum_n n * sum_k (k + 1) * timesteps[k] over the first n values (trailing can return an extra -1);
with steps_offset=1 only the n whose first timestep stays <= T - 1.
"""
import argparse
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402

LINEAR = dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
SCALED = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
TABLES = [
    ("linear", "kLinear", LINEAR),
    ("scaled_linear", "kScaled", SCALED),
    ("squaredcos_cap_v2", '{{"beta_schedule", "squaredcos_cap_v2"}}', dict(beta_schedule="squaredcos_cap_v2")),
    ("zsnr_scaled_linear", 'with(kScaled, "rescale_betas_zero_snr", "true")', dict(SCALED, rescale_betas_zero_snr=True)),
    ("zsnr_linear", 'with(kLinear, "rescale_betas_zero_snr", "true")', dict(LINEAR, rescale_betas_zero_snr=True)),
]
SPACINGS = [(T, s, off) for T in (1000, 1100) for s, off in
            (("linspace", 0), ("leading", 0), ("leading", 1), ("trailing", 0))]


def checksum(values, f32):
    total = 0
    for i, v in enumerate(values):
        b = struct.unpack("<I", struct.pack("<f", v))[0] if f32 else struct.unpack("<Q", struct.pack("<d", v))[0]
        total = (total + b * (i + 1)) % (1 << 64)
    return total


def tables(src):
    for name, cpp, cfg in TABLES:
        s32 = ref.scheduler(src, "scheduling_ddim", "DDIMScheduler", False, **cfg)
        s64 = ref.scheduler(src, "scheduling_ddim", "DDIMScheduler", True, **cfg)
        ac32, b32 = s32.alphas_cumprod.tolist(), s32.betas.tolist()
        ac64, b64 = s64.alphas_cumprod.tolist(), s64.betas.tolist()
        print('      {"%s", %s, 0x%016xULL, 0x%016xULL, 0x%016xULL,' % (name, cpp, checksum(ac32, True),
                                                                    checksum(b32, True), checksum(ac64, False)))
        print("       0x%016xULL, %s, %s}," % (checksum(b64, False), ref.r(ac32[500]), ref.r(ac64[998])))


def spacings(src):
    for T, sp, off in SPACINGS:
        total = 0
        for n in range(1, T + 1):
            if off and (n - 1) * (T // n) + off > T - 1:
                continue
            s = ref.scheduler(src, "scheduling_ddpm", "DDPMScheduler", False, num_train_timesteps=T,
                              timestep_spacing=sp, steps_offset=off, **LINEAR)
            s.set_timesteps(n)
            ts = [int(t) for t in s.timesteps[:n]]
            assert len(ts) == n
            total += n * sum((k + 1) * t for k, t in enumerate(ts))
        cfg = '{{"steps_offset", "1"}}' if off else "{}"
        print('      {%d, "%s", %s, %dLL},' % (T, sp, cfg, total))


def points(src):
    """Single table values quoted in tests/schedules/discrete_test.cpp (float64 copy)."""
    lin = ref.scheduler(src, "scheduling_ddim", "DDIMScheduler", True, **LINEAR).alphas_cumprod
    sd = ref.scheduler(src, "scheduling_ddim", "DDIMScheduler", True, **SCALED).alphas_cumprod
    zsnr = ref.scheduler(src, "scheduling_ddim", "DDIMScheduler", True, rescale_betas_zero_snr=True,
                         **SCALED).alphas_cumprod
    sigma = ((1 - sd) / sd).sqrt()
    print("linear alphas_cumprod[999] = %r" % float(lin[999]))
    print("scaled_linear sigma_ve(999) = %r, sigma_ve(0) = %r, alpha(999) = %r" % (
        float(sigma[999]), float(sigma[0]), float(sd[999].sqrt())))
    print("scaled_linear rescale_betas_zero_snr alphas_cumprod[998] = %r, [999] = %r" % (
        float(zsnr[998]), float(zsnr[999])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ref.add_source_argument(ap)
    ap.add_argument("which", choices=["tables", "spacings", "points"])
    a = ap.parse_args()
    src = ref.source_dir(a.diffusers)
    {"tables": tables, "spacings": spacings, "points": points}[a.which](src)


if __name__ == "__main__":
    main()
