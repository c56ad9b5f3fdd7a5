# SPDX-License-Identifier: Apache-2.0
"""Loads diffusers' scheduler modules from a source checkout, without installing diffusers.

Only the scheduler files themselves are real diffusers code (src/diffusers/schedulers/scheduling_*.py
of the pinned commit). The hub/packaging modules they import (configuration_utils, utils,
utils/torch_utils, schedulers/scheduling_utils) are replaced by the small stubs below, which keep
what the schedulers use: ConfigMixin/register_to_config (the config object), BaseOutput,
randn_tensor (CPU generator path), deprecate, logging.

Two precisions:
  * float32 ("stock"): the module as shipped.
  * float64: a copy of the scheduler file with every "float32" replaced by "float64" (torch and
    numpy dtypes alike), run with float64 as the default dtype (so torch.tensor(1.0) is float64
    too), and randn_tensor drawing the float32 stream and casting it
    (torch.randn(shape, generator=g, dtype=float32).to(float64)), which is what diffuse's
    make_torch_noise gives a double tensor.

Where the diffusers source is: --diffusers PATH on the command line of the generators, or the
environment variable DIFFUSERS_SRC (the root of a checkout, i.e. the folder holding src/diffusers).
See tests/reference/README.md for the pinned commit and how to fetch it.
"""
import contextlib
import dataclasses
import functools
import enum
import inspect
import logging as _logging
import os
import sys
import types

import torch

DIFFUSERS_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"


# ------------------------------------------------------------------------------------------------
# Stubs of the modules the scheduler files import.


class _FrozenDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


class ConfigMixin:
    config_name = None
    ignore_for_config = []

    def register_to_config(self, **kwargs):
        d = dict(getattr(self, "_internal_dict", {}))
        kwargs.pop("kwargs", None)
        d.update(kwargs)
        self._internal_dict = _FrozenDict(d)

    @property
    def config(self):
        return self._internal_dict


def register_to_config(init):
    @functools.wraps(init)
    def inner_init(self, *args, **kwargs):
        ignore = getattr(self, "ignore_for_config", [])
        params = {
            name: p.default
            for i, (name, p) in enumerate(inspect.signature(init).parameters.items())
            if i > 0 and name not in ignore
        }
        new_kwargs = dict(zip(params.keys(), args))
        new_kwargs.update({k: kwargs.get(k, d) for k, d in params.items() if k not in new_kwargs})
        self.register_to_config(**new_kwargs)
        init(self, *args, **kwargs)

    return inner_init


class BaseOutput:
    def __getitem__(self, i):
        return [getattr(self, f.name) for f in dataclasses.fields(self)][i]


def deprecate(*args, take_from=None, standard_warn=True, stacklevel=2):
    return None


def randn_tensor_stock(shape, generator=None, device=None, dtype=None, layout=None):
    """diffusers' randn_tensor for a single CPU generator (utils/torch_utils.py)."""
    return torch.randn(shape, generator=generator, dtype=dtype, layout=layout or torch.strided)


def randn_tensor_f64(shape, generator=None, device=None, dtype=None, layout=None):
    """The float64 run's replacement: the float32 stream, cast."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(torch.float64)


class KarrasDiffusionSchedulers(enum.Enum):
    DDIMScheduler = 1
    DDPMScheduler = 2
    PNDMScheduler = 3
    LMSDiscreteScheduler = 4
    EulerDiscreteScheduler = 5
    HeunDiscreteScheduler = 6
    EulerAncestralDiscreteScheduler = 7
    DPMSolverMultistepScheduler = 8
    DPMSolverSinglestepScheduler = 9
    KDPM2DiscreteScheduler = 10
    KDPM2AncestralDiscreteScheduler = 11
    DEISMultistepScheduler = 12
    UniPCMultistepScheduler = 13
    DPMSolverSDEScheduler = 14
    EDMEulerScheduler = 15


@dataclasses.dataclass
class SchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor


class SchedulerMixin:
    config_name = "scheduler_config.json"
    _compatibles = []
    has_compatibles = True


def _package(name, path=None, **attrs):
    m = types.ModuleType(name)
    if path is not None:
        m.__path__ = [path]
    for k, v in attrs.items():
        setattr(m, k, v)
    sys.modules[name] = m
    return m


_installed = None


def _quiet_logger(name):
    """The schedulers' warnings (e.g. lower_order_final switched on) are not needed here."""
    log = _logging.getLogger(name)
    log.setLevel(_logging.ERROR)
    return log


def source_dir(cli_value=None):
    src = cli_value or os.environ.get("DIFFUSERS_SRC")
    if not src:
        sys.exit("the diffusers source is needed: --diffusers PATH or DIFFUSERS_SRC=PATH "
                 "(a checkout of huggingface/diffusers at %s; see tests/reference/README.md)" % DIFFUSERS_COMMIT)
    if not os.path.isdir(os.path.join(src, "src", "diffusers", "schedulers")):
        sys.exit("%s: no src/diffusers/schedulers in it" % src)
    return src


def _install(src):
    global _installed
    if _installed == src:
        return
    sched_dir = os.path.join(src, "src", "diffusers", "schedulers")
    utils = _package("diffusers.utils", os.path.join(src, "src", "diffusers", "utils"),
                     BaseOutput=BaseOutput, deprecate=deprecate, is_scipy_available=lambda: True,
                     logging=types.SimpleNamespace(get_logger=_quiet_logger))
    _package("diffusers.utils.torch_utils", randn_tensor=randn_tensor_stock)
    _package("diffusers", os.path.join(src, "src", "diffusers"), utils=utils)
    _package("diffusers.configuration_utils", ConfigMixin=ConfigMixin, register_to_config=register_to_config)
    _package("diffusers.schedulers", sched_dir)
    _package("diffusers.schedulers.scheduling_utils", KarrasDiffusionSchedulers=KarrasDiffusionSchedulers,
             SchedulerMixin=SchedulerMixin, SchedulerOutput=SchedulerOutput)
    _installed = src


_cache = {}


def scheduler_module(src, name, f64):
    """src/diffusers/schedulers/<name>.py loaded from `src`, in float64 or stock float32 form."""
    key = (src, name, f64)
    if key in _cache:
        return _cache[key]
    _install(src)
    path = os.path.join(src, "src", "diffusers", "schedulers", name + ".py")
    modname = "diffusers.schedulers.%s%s" % (name, "__f64" if f64 else "")
    mod = types.ModuleType(modname)
    mod.__file__ = path
    mod.__package__ = "diffusers.schedulers"
    sys.modules[modname] = mod
    with open(path) as f:
        text = f.read()
    if f64:
        text = text.replace("float32", "float64")
    exec(compile(text, path, "exec"), mod.__dict__)
    if f64:
        mod.randn_tensor = randn_tensor_f64
    _cache[key] = mod
    return mod


@contextlib.contextmanager
def precision(f64):
    """Default dtype float64 while a float64 run constructs and steps its scheduler."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if f64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def scheduler(src, module, cls, f64, **config):
    mod = scheduler_module(src, module, f64)
    with precision(f64):
        return getattr(mod, cls)(**config)


# ------------------------------------------------------------------------------------------------
# diffusers' SchedulerCommonTest fixtures (tests/schedulers/test_schedulers.py).


def dummy_sample_deter(dtype, reverse=False):
    """(c*256 + h*32 + w*4 + b) / 768 in shape [4, 3, 8, 8], computed in `dtype`."""
    a = torch.arange(768, dtype=dtype)
    if reverse:
        a = a.flip(0)
    return a.reshape(3, 8, 8, 4).div(768).permute(3, 0, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------------
# Printing in the tests' C++ form.


def r(x):
    """A double as Python's shortest round-trip repr (what the tests' literals are)."""
    x = float(x)
    if x == x and abs(x) < 1e15 and x == int(x):
        return str(int(x))
    return repr(x)


def g17(x):
    """%.17g (float32 values widened to double print exactly)."""
    x = float(x)
    if x == x and abs(x) < 1e15 and x == int(x):
        return str(int(x))
    return "%.17g" % x


def g9(x):
    """%.9g: enough for a float32."""
    return "%.9g" % float(x)


def join(values, fmt=r):
    return ", ".join(fmt(v) for v in values)


def add_source_argument(ap):
    ap.add_argument("--diffusers", help="root of a huggingface/diffusers checkout at %s (default: $DIFFUSERS_SRC)"
                    % DIFFUSERS_COMMIT[:7])
