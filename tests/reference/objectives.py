# SPDX-License-Identifier: Apache-2.0
"""Hand-computed values of tests/training/objectives_test.cpp, re-implemented from the formulas.

    /usr/bin/python3 tests/reference/objectives.py

An independent PyTorch (float64) re-implementation from the papers, not from diffuse's code:
  * denoising: per-example mean over C, H, W of (net(x_t, t) - target)^2 times the weight, with
    x_t = alpha x0 + sigma eps and target eps / v = alpha eps - sigma x0 (Salimans & Ho 2022) / x0;
  * Min-SNR-gamma weights (Hang et al. 2023), snr = alpha^2 / sigma^2: epsilon min(snr, g) / snr,
    v_prediction min(snr, g) / (snr + 1), sample min(snr, g);
  * DDPM-IP (Ning et al. 2023): network input from eps + gamma xi, target from the unperturbed eps;
  * MaskDiT (Zheng et al. 2024; Anima-Lab/MaskDiT train_utils/loss.py): the squared error averaged
    over channels and p x p patches, then over the VISIBLE patches, times the weight (dsm); the
    MAE term: the denoised x0 implied by the output (eps: (x_t - sigma out) / alpha,
    v: alpha x_t - sigma out, sample: out) against the per-patch normalised noisy input
    ((v - mean) / sqrt(var + 1e-6), unbiased var over the patch's p^2 C values), mean over the
    patch, averaged over the MASKED patches, unweighted; loss = dsm + 0.1 mae.
The tiny problem: T = 10 linear betas 0.05..0.5, x0 = arange(32) / 16 - 1 as [2, 1, 4, 4],
t = {2, 7}, eps = sin(0.7 k + 0.3), xi = cos(1.3 k - 0.2), net(x, t) = 0.5 x + 0.01 t,
mask [[1, 0, 0, 1], [0, 1, 0, 0]] (true = masked, patch 2, N = 4).
Flow matching: the flow schedule (x_t = (1 - sigma) x0 + sigma eps, t = 1000 sigma), t = {250, 700},
velocity target eps - x0, plain, with input perturbation 0.1 and as MaskDiT (x0_hat = x_t - sigma out).
Prints each case under the name the test's comments use ("denoising <p> <w>", "ip0.1 <p>",
"masked <p> <w>", "flow", "flow ip0.1", "flow masked", "minsnr_all <p>"), values with 17
significant digits.
"""
import torch

D = torch.float64
T = 10
betas = torch.linspace(0.05, 0.5, T, dtype=D)
abar = torch.cumprod(1 - betas, 0)
ALPHA, SIGMA = abar.sqrt(), (1 - abar).sqrt()
k = torch.arange(32, dtype=D)
X0 = (k / 16 - 1).reshape(2, 1, 4, 4)
EPS = torch.sin(k * 0.7 + 0.3).reshape(2, 1, 4, 4)
XI = torch.cos(k * 1.3 - 0.2).reshape(2, 1, 4, 4)
TT = torch.tensor([2.0, 7.0], dtype=D)
MASK = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.bool)
PREDICTIONS = ("epsilon", "v_prediction", "sample")


def net(x, t):
    return x * 0.5 + t.reshape(-1, 1, 1, 1) * 0.01


def scales(t):
    i = t.long()
    return ALPHA[i].reshape(-1, 1, 1, 1), SIGMA[i].reshape(-1, 1, 1, 1)


def target(p, x0, eps, a, s):
    return {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[p]


def min_snr(p, t, gamma):
    a, s = ALPHA[t.long()], SIGMA[t.long()]
    snr = a * a / (s * s)
    m = torch.minimum(snr, torch.full_like(snr, gamma))
    return {"epsilon": m / snr, "v_prediction": m / (snr + 1), "sample": m}[p]


def weight(p, w, t, gamma=1.0):
    return torch.ones_like(t) if w == "none" else min_snr(p, t, gamma)


def denoising(p, w, gamma_ip=0.0):
    a, s = scales(TT)
    x_t = a * X0 + s * (EPS + gamma_ip * XI)
    err = (net(x_t, TT) - target(p, X0, EPS, a, s)) ** 2
    return err.mean(dim=(1, 2, 3)) * weight(p, w, TT)


def patchify(x, p=2):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


def masked(p, w):
    a, s = scales(TT)
    x_t = a * X0 + s * EPS
    out = net(x_t, TT)
    err = (out - target(p, X0, EPS, a, s)) ** 2
    patch_err = patchify(err).mean(-1)
    visible = (~MASK).to(D)
    dsm = (patch_err * visible).sum(1) / visible.sum(1) * weight(p, w, TT)
    x0_hat = {"epsilon": (x_t - s * out) / a, "v_prediction": a * x_t - s * out, "sample": out}[p]
    tgt = patchify(x_t)
    tgt = (tgt - tgt.mean(-1, keepdim=True)) / (tgt.var(-1, keepdim=True) + 1e-6).sqrt()  # unbiased var
    patch_mae = ((patchify(x0_hat) - tgt) ** 2).mean(-1)
    m = MASK.to(D)
    mae = (patch_mae * m).sum(1) / m.sum(1)
    return dsm, mae, dsm + 0.1 * mae


# Flow matching (Lipman et al. 2022; SD3): the flow schedule x_t = (1 - sigma) x0 + sigma eps with
# model time t = 1000 sigma, the velocity target eps - x0, the same net and tensors, t = {250, 700};
# MaskDiT on flow: x0_hat = x_t - sigma out.
FLOW_T = torch.tensor([250.0, 700.0], dtype=D)


def flow(gamma_ip=0.0):
    s = (FLOW_T / 1000).reshape(-1, 1, 1, 1)
    x_t = (1 - s) * X0 + s * (EPS + gamma_ip * XI)
    err = (net(x_t, FLOW_T) - (EPS - X0)) ** 2
    return err.mean(dim=(1, 2, 3))


def flow_masked():
    s = (FLOW_T / 1000).reshape(-1, 1, 1, 1)
    x_t = (1 - s) * X0 + s * EPS
    out = net(x_t, FLOW_T)
    patch_err = patchify((out - (EPS - X0)) ** 2).mean(-1)
    visible = (~MASK).to(D)
    dsm = (patch_err * visible).sum(1) / visible.sum(1)
    tgt = patchify(x_t)
    tgt = (tgt - tgt.mean(-1, keepdim=True)) / (tgt.var(-1, keepdim=True) + 1e-6).sqrt()
    patch_mae = ((patchify(x_t - s * out) - tgt) ** 2).mean(-1)
    m = MASK.to(D)
    mae = (patch_mae * m).sum(1) / m.sum(1)
    return dsm, mae, dsm + 0.1 * mae


def show(v):
    return "{" + ", ".join("%.17g" % float(x) for x in v) + "}"


def main():
    for p in PREDICTIONS:
        for w in ("none", "min_snr"):
            print("denoising %s %s (min_snr gamma 1): %s" % (p, w, show(denoising(p, w))))
    for p in PREDICTIONS:
        print("ip0.1 %s: %s" % (p, show(denoising(p, "none", gamma_ip=0.1))))
    for p in PREDICTIONS:
        for w in ("none", "min_snr"):
            dsm, mae, loss = masked(p, w)
            print("masked %s %s: dsm %s mae %s loss %s" % (p, w, show(dsm), show(mae), show(loss)))
    print("flow: %s" % show(flow()))
    print("flow ip0.1: %s" % show(flow(0.1)))
    dsm, mae, loss = flow_masked()
    print("flow masked: dsm %s mae %s loss %s" % (show(dsm), show(mae), show(loss)))
    t = torch.arange(10, dtype=D)
    for p in PREDICTIONS:
        print("minsnr_all %s (gamma 5): %s" % (p, show(min_snr(p, t, 5.0))))


if __name__ == "__main__":
    main()
