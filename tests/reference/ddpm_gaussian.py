# SPDX-License-Identifier: Apache-2.0
"""Reference of tests/samplers/ddpm_test.cpp SamplesGaussianDataWithTheExactDenoiser.

    /usr/bin/python3 tests/reference/ddpm_gaussian.py

Data x0 ~ N(mu, s^2) (mu = 0.5, s = 0.3) per element, linear betas 1e-4..0.02 (T = 1000),
leading spacing. With the exact denoiser E[x0 | x_t] = mu + k (x_t - alpha mu),
k = alpha s^2 / (alpha^2 s^2 + sigma^2), a DDPM step x_prev = c1 x0_hat + c2 x_t + std z
(DDPM's posterior, Ho et al. 2020 eq. 7: c1 = sqrt(abar_prev) beta_t / (1 - abar_t),
c2 = sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t), alpha_t = abar_t / abar_prev; variance
fixed_small = (1 - abar_prev) / (1 - abar_t) beta_t, fixed_large = beta_t; no noise on the last
step) is affine in x_t, so starting from the exact marginal at the first grid point the chain stays
Gaussian and its mean and variance follow a scalar recursion, computed here in float64 (numpy only).
Prints the final mean and std for 1000 and 20 steps, fixed_small and fixed_large.
"""
import numpy as np

MU, S, T = 0.5, 0.3, 1000


def run(steps, variance):
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    ratio = T // steps
    ts = (np.arange(0, steps) * ratio)[::-1]  # leading spacing
    a0, s0 = np.sqrt(abar[ts[0]]), np.sqrt(1 - abar[ts[0]])
    m, v = a0 * MU, a0 * a0 * S * S + s0 * s0
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        ab_t, ab_p = abar[t], (abar[prev] if prev >= 0 else 1.0)
        alpha, sigma = np.sqrt(ab_t), np.sqrt(1 - ab_t)
        k = alpha * S * S / (alpha * alpha * S * S + sigma * sigma)
        alpha_t = ab_t / ab_p
        beta_t = 1 - alpha_t
        c1 = np.sqrt(ab_p) * beta_t / (1 - ab_t)
        c2 = np.sqrt(alpha_t) * (1 - ab_p) / (1 - ab_t)
        a, b = c1 * k + c2, c1 * (MU - k * alpha * MU)
        var = (1 - ab_p) / (1 - ab_t) * beta_t if variance == "fixed_small" else beta_t
        m, v = a * m + b, a * a * v + (var if prev >= 0 else 0.0)
    return m, np.sqrt(v)


def main():
    for steps in (1000, 20):
        for variance in ("fixed_small", "fixed_large"):
            m, sd = run(steps, variance)
            print("%4d steps %-11s: mean %.5f std %.5f" % (steps, variance, m, sd))


if __name__ == "__main__":
    main()
