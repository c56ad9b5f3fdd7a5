# SPDX-License-Identifier: Apache-2.0
"""Golden values of tests/samplers/kdiffusion_*.inc: k-diffusion's own samplers
(crowsonkb/k-diffusion 4601bf0) on the same network.

    /usr/bin/python3 tests/reference/kdiffusion.py --kdiffusion KPATH --diffusers DPATH euler \\
        > tests/samplers/kdiffusion_euler.inc
    (likewise euler_ancestral, heun, lms, dpm_2, dpm_2_ancestral, dpmpp_2s_ancestral, dpmpp_sde,
    dpmpp_3m_sde)

Each case (its comment line names the exact call): after torch.manual_seed(seed),
k_diffusion.sampling.sample_<x>(Discrete{Eps,V}DDPMDenoiser(net, alphas_cumprod, quantize=False),
sample_deter * sigmas[0], sigmas, **extra) with net(x, t) = 0.8 tanh(x) + 0.2 x cos(t / 300)
(t = the denoiser's fractional sigma_to_t, in x's dtype), sample_deter computed in float32.
alphas_cumprod and the sigmas are diffusers' (58eb52c): the scaled_linear 0.00085..0.012 table
and EulerDiscreteScheduler(use_karras_sigmas / use_exponential_sigmas=True).set_timesteps(n).sigmas
(or an explicit list), float64 in the float64 run (diffusers_ref.py's float64 copy) and stock
float32 in the float32 run. In the float64 run torch.randn_like draws the float32 stream and casts
it. Printed: the diffuse-side fields, the float64 run's sigma_to_t(sigmas[:-1]) and sigmas, then
sum|x|, sum x * linspace(-1, 1, 768) and x.flatten()[0, 123, 456, 767] of each run.

KPATH: the root of a k-diffusion checkout (holding k_diffusion/), or $KDIFFUSION_SRC. Only
k_diffusion/sampling.py, external.py and utils.py are used; the imports they need beyond torch and
scipy (tqdm, torchsde, torchdiffeq, PIL, safetensors, torchvision) are stubbed here.
"""
import argparse
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusers_ref as ref  # noqa: E402
from k_schedulers import smooth_model, stats, fmt_stats  # noqa: E402

KDIFFUSION_COMMIT = "4601bf085320592473f681a62808ed873d17fad5"
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
EXPLICIT = [14.614641229333635, 6.678016262459337, 3.5220637628696423, 2.0606428913444716, 1.276833141471462,
            0.7912610494546163, 0.4396669334982228, 0.029167158151720367, 0.0]

# sampler, denoiser, sigmas ("karras"/"exponential" with the step count, or the explicit list),
# extra kwargs, seed (None: no torch.manual_seed), the diffuse-side GoldenCase fields.
CASES = {
    "euler": [
        ("sample_euler", "DiscreteEpsDDPMDenoiser", ("karras", 10),
         dict(s_churn=1.5, s_tmin=0.3, s_tmax=6.0, s_noise=1.007), 11,
         '{"karras_sd_churn_window", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, '
         '{{"s_churn", "1.5"}, {"s_tmin", "0.3"}, {"s_tmax", "6.0"}, {"s_noise", "1.007"}}, 11,'),
        ("sample_euler", "DiscreteVDDPMDenoiser", ("explicit", 8), dict(s_churn=0.8), 12,
         '{"sigmas_sd_churn_v", 1000, 0.00085, 0.012, "scaled_linear", {}, "sigmas", {{"sigmas", "'
         + ";".join(repr(s) for s in EXPLICIT) + '"}}, "v_prediction", 8, {{"s_churn", "0.8"}}, 12,'),
    ],
    "euler_ancestral": [
        ("sample_euler_ancestral", "DiscreteEpsDDPMDenoiser", ("karras", 12), dict(eta=0.6, s_noise=1.02), 13,
         '{"karras_sd_eta", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 12, '
         '{{"eta", "0.6"}, {"s_noise", "1.02"}}, 13,'),
    ],
    "heun": [
        ("sample_heun", "DiscreteEpsDDPMDenoiser", ("karras", 9), dict(s_churn=3.0, s_tmin=0.1, s_tmax=20.0), 14,
         '{"karras_sd_churn", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 9, '
         '{{"s_churn", "3.0"}, {"s_tmin", "0.1"}, {"s_tmax", "20.0"}}, 14,'),
        ("sample_heun", "DiscreteVDDPMDenoiser", ("exponential", 7), {}, None,
         '{"exponential_sd_v", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "v_prediction", 7, {}, -1,'),
    ],
    # The issue-16 samplers. noise_sampler="default" passes k_diffusion.sampling.default_noise_sampler(x)
    # (torch.randn_like per call) where the sampler would build a BrownianTreeNoiseSampler (torchsde is not
    # installed here); diffuse's noise=gaussian draws the same stream.
    "lms": [
        ("sample_lms", "DiscreteEpsDDPMDenoiser", ("karras", 10), {}, None,
         '{"karras_sd_order4", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, {}, -1,'),
        ("sample_lms", "DiscreteVDDPMDenoiser", ("exponential", 8), dict(order=2), None,
         '{"exponential_sd_v_order2", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "v_prediction", 8, '
         '{{"order", "2"}}, -1,'),
        ("sample_lms", "DiscreteEpsDDPMDenoiser", ("explicit", 8), dict(order=3), None,
         '{"sigmas_sd_order3", 1000, 0.00085, 0.012, "scaled_linear", {}, "sigmas", {{"sigmas", "'
         + ";".join(repr(s) for s in EXPLICIT) + '"}}, "epsilon", 8, {{"order", "3"}}, -1,'),
    ],
    "dpm_2": [
        ("sample_dpm_2", "DiscreteEpsDDPMDenoiser", ("karras", 10), {}, None,
         '{"karras_sd", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, {}, -1,'),
        ("sample_dpm_2", "DiscreteVDDPMDenoiser", ("exponential", 7), dict(s_churn=1.0, s_tmin=0.2, s_tmax=10.0,
                                                                           s_noise=1.01), 21,
         '{"exponential_sd_v_churn", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "v_prediction", 7, '
         '{{"s_churn", "1.0"}, {"s_tmin", "0.2"}, {"s_tmax", "10.0"}, {"s_noise", "1.01"}}, 21,'),
    ],
    "dpm_2_ancestral": [
        ("sample_dpm_2_ancestral", "DiscreteEpsDDPMDenoiser", ("karras", 10), {}, 22,
         '{"karras_sd", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, {}, 22,'),
        ("sample_dpm_2_ancestral", "DiscreteVDDPMDenoiser", ("exponential", 8), dict(eta=0.5, s_noise=1.01), 23,
         '{"exponential_sd_v_eta", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "v_prediction", 8, '
         '{{"eta", "0.5"}, {"s_noise", "1.01"}}, 23,'),
    ],
    "dpmpp_2s_ancestral": [
        ("sample_dpmpp_2s_ancestral", "DiscreteEpsDDPMDenoiser", ("karras", 10), {}, 24,
         '{"karras_sd", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, {}, 24,'),
        ("sample_dpmpp_2s_ancestral", "DiscreteVDDPMDenoiser", ("explicit", 8), dict(eta=0.7), 25,
         '{"sigmas_sd_v_eta", 1000, 0.00085, 0.012, "scaled_linear", {}, "sigmas", {{"sigmas", "'
         + ";".join(repr(s) for s in EXPLICIT) + '"}}, "v_prediction", 8, {{"eta", "0.7"}}, 25,'),
    ],
    "dpmpp_sde": [
        ("sample_dpmpp_sde", "DiscreteEpsDDPMDenoiser", ("karras", 10), dict(noise_sampler="default"), 26,
         '{"karras_sd", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, '
         '{{"noise", "gaussian"}}, 26,'),
        ("sample_dpmpp_sde", "DiscreteVDDPMDenoiser", ("exponential", 8), dict(eta=0.5, r=0.4, noise_sampler="default"),
         27,
         '{"exponential_sd_v_eta_r", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "v_prediction", 8, '
         '{{"eta", "0.5"}, {"r", "0.4"}, {"noise", "gaussian"}}, 27,'),
        ("sample_dpmpp_sde", "DiscreteEpsDDPMDenoiser", ("karras", 6), dict(eta=0.0, noise_sampler="default"), None,
         '{"karras_sd_eta0", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 6, '
         '{{"eta", "0"}}, -1,'),
    ],
    "dpmpp_3m_sde": [
        ("sample_dpmpp_3m_sde", "DiscreteEpsDDPMDenoiser", ("karras", 12), dict(noise_sampler="default"), 28,
         '{"karras_sd", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 12, '
         '{{"noise", "gaussian"}}, 28,'),
        ("sample_dpmpp_3m_sde", "DiscreteVDDPMDenoiser", ("exponential", 9), dict(eta=0.6, s_noise=1.02,
                                                                                  noise_sampler="default"), 29,
         '{"exponential_sd_v_eta", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, "v_prediction", 9, '
         '{{"eta", "0.6"}, {"s_noise", "1.02"}, {"noise", "gaussian"}}, 29,'),
        ("sample_dpmpp_3m_sde", "DiscreteEpsDDPMDenoiser", ("karras", 10), dict(eta=0.0, noise_sampler="default"), None,
         '{"karras_sd_eta0", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 10, '
         '{{"eta", "0"}}, -1,'),
    ],
    # A1111's Restart sampler (modules/sd_samplers_extra.py at A1111_EXTRA_COMMIT, --a1111-extra FILE), taken out
    # with ast: "a1111:restart_sampler". ("a1111_auto", n): restart_list=None, which re-grids n steps to a Karras
    # grid of n - 9 steps (n in 20..35) from sigmas[-2] to sigmas[0] with one 9-step restart on [0.1, 2]; the
    # printed grid is that re-gridded one. An explicit restart_list {min: [steps + 1, times, max]} keeps the grid.
    "restart": [
        ("a1111:restart_sampler", "DiscreteEpsDDPMDenoiser", ("a1111_auto", 20), {}, 31,
         '{"a1111_auto_20_steps", 1000, 0.00085, 0.012, "scaled_linear", {}, "karras", {}, "epsilon", 11, {}, 31,'),
        ("a1111:restart_sampler", "DiscreteVDDPMDenoiser", ("exponential", 12),
         dict(s_noise=1.01, restart_list={0.3: [5, 2, 4.0]}), 32,
         '{"exponential_sd_v_two_restarts", 1000, 0.00085, 0.012, "scaled_linear", {}, "exponential", {}, '
         '"v_prediction", 12, {{"restart_min", "0.3"}, {"restart_max", "4.0"}, {"restart_steps", "4"}, '
         '{"restart_times", "2"}, {"s_noise", "1.01"}}, 32,'),
        ("a1111:restart_sampler", "DiscreteEpsDDPMDenoiser", ("explicit", 8), dict(restart_list={0.5: [4, 1, 5.0]}),
         33,
         '{"sigmas_sd_coarse", 1000, 0.00085, 0.012, "scaled_linear", {}, "sigmas", {{"sigmas", "'
         + ";".join(repr(s) for s in EXPLICIT) + '"}}, "epsilon", 8, {{"restart_min", "0.5"}, {"restart_max", "5.0"}, '
         '{"restart_steps", "3"}}, 33,'),
    ],
    # A1111's scheduler functions (modules/sd_schedulers.py at A1111_COMMIT, --a1111-schedulers FILE) on
    # the same k-diffusion discrete denoiser, run with sample_euler: the sigmas kind is ("a1111", function, n).
    "a1111_spacings": [
        ("sample_euler", "DiscreteEpsDDPMDenoiser", ("a1111:normal_scheduler", 8), {}, None,
         '{"a1111_normal", 1000, 0.00085, 0.012, "scaled_linear", {}, "normal", {}, "epsilon", 8, {}, -1,'),
        ("sample_euler", "DiscreteVDDPMDenoiser", ("a1111:sgm_uniform", 12), {}, None,
         '{"a1111_sgm_uniform_v", 1000, 0.00085, 0.012, "scaled_linear", {}, "sgm_uniform", {}, "v_prediction", 12, '
         '{}, -1,'),
        ("sample_euler", "DiscreteEpsDDPMDenoiser", ("a1111:simple_scheduler", 7), {}, None,
         '{"a1111_simple", 1000, 0.00085, 0.012, "scaled_linear", {}, "simple", {}, "epsilon", 7, {}, -1,'),
    ],
}

A1111_COMMIT = "02b0092d5a8450b282bd7d9c2d84fdfed0f3c6db"
# modules/sd_samplers_extra.py (restart_sampler) is read at this commit.
A1111_EXTRA_COMMIT = "598aef823083397a58257be58bcfea01f1c8849a"


def load_a1111(path, name, f64):
    """One scheduler function of A1111's sd_schedulers.py, taken out with ast; in the float64 run its
    torch.FloatTensor is torch.DoubleTensor (the diffusers float64 copies' rule: every float32 made float64)."""
    import ast
    text = open(path).read()
    if f64:
        text = text.replace("torch.FloatTensor", "torch.DoubleTensor")
    tree = ast.parse(text)
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    if not fn:
        sys.exit("%s: no %s in it" % (path, name))
    ns = {"torch": torch}
    exec(compile(ast.Module(body=fn, type_ignores=[]), path, "exec"), ns)
    return ns[name]


A1111_FILE = [None]
A1111_EXTRA_FILE = [None]
DRAWS = []  # noise draws of each A1111 sampler run


def load_a1111_sampler(name):
    """One sampler function of A1111's sd_samplers_extra.py, taken out with ast; it imports tqdm (stubbed) and
    k_diffusion.sampling (the loaded module)."""
    if not A1111_EXTRA_FILE[0]:
        sys.exit("the restart cases need --a1111-extra FILE (modules/sd_samplers_extra.py at %s)" % A1111_EXTRA_COMMIT)
    import ast
    path = A1111_EXTRA_FILE[0]
    tree = ast.parse(open(path).read())
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    if not fn:
        sys.exit("%s: no %s in it" % (path, name))
    ns = {"torch": torch, "tqdm": types.SimpleNamespace(tqdm=lambda it, disable=None: it),
          "k_diffusion": sys.modules["k_diffusion"]}
    exec(compile(ast.Module(body=fn, type_ignores=[]), path, "exec"), ns)
    return ns[name]


def _stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def load_kdiffusion(src):
    if not os.path.isfile(os.path.join(src, "k_diffusion", "sampling.py")):
        sys.exit("%s: no k_diffusion/sampling.py in it (a k-diffusion checkout at %s is needed)" %
                 (src, KDIFFUSION_COMMIT[:7]))

    def trange(*args, **kwargs):
        return range(*args)

    _stub("tqdm")
    _stub("tqdm.auto", trange=trange, tqdm=lambda it=None, **kwargs: it)
    _stub("torchsde")
    _stub("torchdiffeq", odeint=None)
    _stub("PIL", Image=_stub("PIL.Image"))
    _stub("safetensors")
    _stub("torchvision")
    _stub("torchvision.transforms", functional=_stub("torchvision.transforms.functional"))
    pkg = _stub("k_diffusion")
    pkg.__path__ = [os.path.join(src, "k_diffusion")]
    out = {}
    for name in ("utils", "sampling", "external"):
        path = os.path.join(src, "k_diffusion", name + ".py")
        m = types.ModuleType("k_diffusion." + name)
        m.__file__, m.__package__ = path, "k_diffusion"
        sys.modules[m.__name__] = m
        setattr(pkg, name, m)
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), m.__dict__)
        out[name] = m
    return out["sampling"], out["external"]


def net(x, t):
    return smooth_model(x, t)


def run(kd, dsrc, case, f64):
    sampling, external = kd
    fn, denoiser, (kind, n), extra, seed, _ = case
    dtype = torch.float64 if f64 else torch.float32
    table = ref.scheduler(dsrc, "scheduling_ddpm", "DDPMScheduler", f64, **SD).alphas_cumprod
    if kind == "explicit":
        sigmas = torch.tensor(EXPLICIT, dtype=dtype)
    elif kind == "a1111_auto":
        s = ref.scheduler(dsrc, "scheduling_euler_discrete", "EulerDiscreteScheduler", f64, **SD, use_karras_sigmas=True)
        with ref.precision(f64):
            s.set_timesteps(n)
        sigmas = s.sigmas.to(dtype)
    elif kind.startswith("a1111:"):
        if not A1111_FILE[0]:
            sys.exit("the a1111 cases need --a1111-schedulers FILE (modules/sd_schedulers.py at %s)" % A1111_COMMIT)
        sched_fn = load_a1111(A1111_FILE[0], kind.split(":", 1)[1], f64)
        inner = getattr(external, denoiser)(net, table, quantize=False)
        old_dtype = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            sigmas = sched_fn(n, inner.sigma_min, inner.sigma_max, inner_model=inner, device="cpu").to(dtype)
        finally:
            torch.set_default_dtype(old_dtype)
    else:
        flag = "use_karras_sigmas" if kind == "karras" else "use_exponential_sigmas"
        s = ref.scheduler(dsrc, "scheduling_euler_discrete", "EulerDiscreteScheduler", f64, **SD, **{flag: True})
        with ref.precision(f64):
            s.set_timesteps(n)
        sigmas = s.sigmas.to(dtype)
    model = getattr(external, denoiser)(net, table, quantize=False)
    x = ref.dummy_sample_deter(torch.float32).to(dtype) * sigmas[0]
    randn_like = torch.randn_like
    if f64:
        torch.randn_like = lambda t, **kw: torch.randn(t.shape, dtype=torch.float32).to(t.dtype)
    extra = dict(extra)
    if extra.get("noise_sampler") == "default":
        extra["noise_sampler"] = sampling.default_noise_sampler(x)
    old_dtype = torch.get_default_dtype()
    try:
        if seed is not None:
            torch.manual_seed(seed)
        if fn.startswith("a1111:"):
            # get_sigmas_karras inside makes default-dtype tensors: float64 in the float64 run. The noise draws
            # are counted (restart_sampler draws one per restart, plus one whenever get_sigmas_karras' round-off
            # leaves the last restart sigma below the grid point it returns to).
            torch.set_default_dtype(dtype)
            draw = torch.randn_like

            def counted(t, **kw):
                DRAWS[-1] += 1
                return draw(t, **kw)
            torch.randn_like = counted
            DRAWS.append(0)
            out = load_a1111_sampler(fn.split(":", 1)[1])(model, x, sigmas, disable=True, **extra)
        else:
            out = getattr(sampling, fn)(model, x, sigmas, disable=True, **extra)
    finally:
        torch.randn_like = randn_like
        torch.set_default_dtype(old_dtype)
    if kind == "a1111_auto":  # the grid A1111 runs: n - 9 Karras steps from sigmas[-2] to sigmas[0]
        torch.set_default_dtype(dtype)
        try:
            sigmas = sampling.get_sigmas_karras(n - 9, sigmas[-2].item(), sigmas[0].item())
        finally:
            torch.set_default_dtype(old_dtype)
    assert out.dtype == dtype
    return model, sigmas, out


def call_text(case):
    fn, denoiser, _, extra, seed, _ = case
    args = "".join(", %s=%s" % (k, "default_noise_sampler(x)" if k == "noise_sampler" else repr(v))
                   for k, v in extra.items())
    where = "A1111 sd_samplers_extra." if fn.startswith("a1111:") else "k_diffusion.sampling."
    text = "%s%s(%s(net, alphas_cumprod, quantize=False), sample_deter * sigmas[0], sigmas%s)" % (
        where, fn.split(":")[-1], denoiser, args)
    return text + (" after torch.manual_seed(%d)" % seed if seed is not None else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ref.add_source_argument(ap)
    ap.add_argument("--kdiffusion", help="root of a crowsonkb/k-diffusion checkout at %s (default: $KDIFFUSION_SRC)"
                    % KDIFFUSION_COMMIT[:7])
    ap.add_argument("--a1111-schedulers", help="A1111's modules/sd_schedulers.py at %s (the a1111_spacings "
                    "cases; default: $AYS_A1111)" % A1111_COMMIT[:7])
    ap.add_argument("which", choices=sorted(CASES))
    ap.add_argument("--a1111-extra", help="A1111's modules/sd_samplers_extra.py at %s (the restart cases; "
                    "default: $A1111_EXTRA)" % A1111_EXTRA_COMMIT[:7])
    a = ap.parse_args()
    A1111_FILE[0] = a.a1111_schedulers or os.environ.get("AYS_A1111")
    A1111_EXTRA_FILE[0] = a.a1111_extra or os.environ.get("A1111_EXTRA")
    dsrc = ref.source_dir(a.diffusers)
    ksrc = a.kdiffusion or os.environ.get("KDIFFUSION_SRC")
    if not ksrc:
        sys.exit("the k-diffusion source is needed: --kdiffusion PATH or KDIFFUSION_SRC=PATH")
    kd = load_kdiffusion(ksrc)
    print("    // Generated by /usr/bin/python3 tests/reference/kdiffusion.py --kdiffusion DIR --diffusers DIR %s (see tests/reference/README.md)."
          % a.which)
    for case in CASES[a.which]:
        model, sigmas, x64 = run(kd, dsrc, case, True)
        _, _, x32 = run(kd, dsrc, case, False)
        ts = [float(model.sigma_to_t(s.reshape(1), quantize=False)) for s in sigmas[:-1]]
        print("    // %s: %s" % (a.which, call_text(case)))
        if case[0].startswith("a1111:"):
            print("    // noise draws: %d in the float64 run, %d in the float32 run" % (DRAWS[-2], DRAWS[-1]))
        print("    " + case[-1])
        print("     {%s}," % ref.join(ts, ref.g17))
        print("     {%s}," % ref.join(sigmas, ref.g17))
        print("     %s," % fmt_stats(stats(x64)))
        print("     %s}," % fmt_stats(stats(x32)))


if __name__ == "__main__":
    main()
