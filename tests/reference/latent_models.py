# SPDX-License-Identifier: Apache-2.0
"""Golden data for the latent-space models: VAEs (diffusers and CompVis ldm layouts), DiT and SiT.

    /usr/bin/python3 tests/reference/latent_models.py \\
        --diffusers DIR --dit DIR --sit DIR --ldm DIR [--out DIR] [--no-key-lists]

(or DIFFUSERS_SRC, DIT_SRC, SIT_SRC, LDM_SRC in the environment). Run from the repository root;
the outputs go to tests/training/fixtures/latent/ (see the README.md there). Every output is
computed by the reference projects' own code, loaded from checkouts at these commits:

  huggingface/diffusers         58eb52c0803ea9af3abec60841c2a093bdf1f951  (DIR holds src/diffusers;
                                __version__ 0.40.0.dev0) models/autoencoders/autoencoder_kl.py,
                                models/autoencoders/vae.py and the blocks they use
  facebookresearch/DiT          ed81ce2229091fd4ecc9a223645f95cf379d582b  models.py
  willisma/SiT                  947f95bd3a510e9af441d38c1e9f72e0eee873c5  models.py
  CompVis/stable-diffusion      21f890f9da3cfbeaba8e2ac3c425ee9e998d5229  (DIR holds ldm/)
                                ldm/models/autoencoder.py AutoencoderKL,
                                ldm/modules/diffusionmodules/model.py Encoder / Decoder,
                                ldm/modules/distributions/distributions.py

Checked with Debian 12's python3 3.11.2, python3-torch 1.13.1 (torch.__version__ 1.13.0a0),
python3-numpy 1.24.2, on the CPU, float32, every model in eval mode. The outputs are
byte-for-byte reproducible (fixed seeds; two runs compared with cmp).

What is stubbed (nothing that computes): the reference code is run unmodified, but it imports
packages that are not installed here, which are replaced in sys.modules before the import:
  * timm.models.vision_transformer (DiT and SiT models.py): PatchEmbed, Attention and Mlp below
    mirror timm v0.6.12 (huggingface/pytorch-image-models ce4d3485b690837ba4e1cb4e0e6c4ed415e36cea,
    timm/models/layers/patch_embed.py, timm/models/vision_transformer.py Attention,
    timm/models/layers/mlp.py Mlp), the timm of DiT's time, statement for statement:
      PatchEmbed: proj = Conv2d(in_chans, embed_dim, patch, stride patch, bias); norm = Identity;
                  forward: proj(x).flatten(2).transpose(1, 2); num_patches = (img // patch)^2;
                  patch_size is a 2-tuple (DiT's unpatchify reads patch_size[0]).
      Attention:  qkv = Linear(dim, 3 dim, bias=qkv_bias), proj = Linear(dim, dim);
                  qkv(x).reshape(B, N, 3, H, C/H).permute(2, 0, 3, 1, 4); q, k, v = unbind(0);
                  attn = (q @ k^T) * (C/H)^-0.5 (v0.6.12 scales after the product; timm >= 0.9
                  scales q first: the same up to float rounding); softmax(-1);
                  (attn @ v).transpose(1, 2).reshape(B, N, C); proj.
      Mlp:        fc1 = Linear(in, hidden), act = act_layer(), fc2 = Linear(hidden, in)
                  (DiT passes act_layer = GELU(approximate="tanh"), drop 0).
  * diffusers: huggingface_hub, PIL, tqdm, safetensors (hub / image / progress-bar side),
    diffusers.dependency_versions_check (installed-version checks),
    diffusers.models.transformers (imported by unets/unet_2d_blocks.py for the cross-attention
    blocks, which a VAE does not use; several of its files need torch >= 2),
    torch.distributed._functional_collectives; `packaging` is pip's / setuptools' vendored copy
    when it is not installed. torch 1.13 lacks a few attributes that diffusers' import-time code
    names (torch.xpu, torch.mps, torch.compiler, torch.distributed.device_mesh, the float8 /
    uint1-7 dtypes): placeholders are added for the missing ones only. None of them is on the
    VAE's path. The attention processor is diffusers' AttnProcessor (set explicitly; torch 1.13
    has no F.scaled_dot_product_attention, so AttnProcessor2_0 is not an option).
  * ldm: pytorch_lightning (LightningModule = torch.nn.Module), taming (the VQ quantizer, unused
    by AutoencoderKL), einops (only LinearAttention / the unused rescaler modules use it), PIL.
    AutoencoderKL's lossconfig is {"target": "torch.nn.Identity"} (no parameters).

Random weights: every parameter is overwritten, in named_parameters() order, from one
torch.Generator per model: tensors of 2+ dims ~ N(0, s^2) with s = clamp(fan_in^-1/2, 0.02, 0.2)
(fan_in = numel / shape[0]); 1-dim "...weight" (GroupNorm / LayerNorm scales) ~ 1 + 0.1 N(0, 1);
biases ~ 0.1 N(0, 1). This includes DiT's zero-initialised adaLN and final layers (else the
output is 0). The one exception is DiT/SiT pos_embed, a frozen (requires_grad False) parameter,
which keeps the 2-D sin-cos table the constructor writes, as in the published checkpoints.

Sizes: far below the production models, to keep the fixture folder at ~2 MB (the ldm VAE alone
is 0.9 MB: ldm's Normalize is GroupNorm with 32 groups, so its channels cannot go below 32).

Outputs (float32 unless said; safetensors written from the format's specification, header in
insertion order, data in the same order, __metadata__ holding the generator, commits and config):

vae_tiny/config.json, vae_tiny/diffusion_pytorch_model.safetensors
    diffusers AutoencoderKL(in/out 3, 3 x DownEncoderBlock2D / UpDecoderBlock2D,
    block_out_channels [8, 16, 16], layers_per_block 2, latent_channels 4, norm_num_groups 4,
    sample_size 32, scaling_factor 0.18215, act_fn silu; every other argument at its default:
    use_quant_conv / use_post_quant_conv True, mid_block_add_attention True, shift_factor None,
    force_upcast True, latents_mean / latents_std None). config.json is written by the model's
    own ConfigMixin.save_config (sorted keys, indent 2, "_class_name", "_diffusers_version");
    the weights are state_dict() under diffusers' names, metadata {"format": "pt"} (as
    save_pretrained writes it).
vae_tiny_io.safetensors
    image   [2,3,32,32] uniform in [-1, 1)  (torch.rand * 2 - 1)
    mean, logvar [2,4,8,8]: posterior = vae.encode(image).latent_dist, i.e.
            DiagonalGaussianDistribution(quant_conv(encoder(image))): mean, logvar = chunk(2, dim 1),
            logvar = clamp(logvar, -30, 20) (vae.py DiagonalGaussianDistribution.__init__)
    noise   [2,4,8,8] = torch.randn(shape, generator=torch.Generator().manual_seed(NOISE_SEED))
    sample  = posterior.sample(generator=torch.Generator().manual_seed(NOISE_SEED)): diffusers
            draws randn_tensor(mean.shape) (= torch.randn on the CPU generator, float32) and
            returns mean + std * noise with std = exp(0.5 * logvar) (the clamped logvar); the
            script asserts sample == mean + exp(0.5 * logvar) * noise bit for bit
    latent  [2,4,8,8] standard normal
    decoded [2,3,32,32] = vae.decode(latent).sample = decoder(post_quant_conv(latent)); no
            scaling_factor / shift_factor is applied anywhere in these fixtures (that is the
            pipeline's job: latents * scaling_factor after encode, / scaling_factor before decode)
vae_tiny_sd3/, vae_tiny_sd3_io.safetensors
    the same for an SD3/Flux-style config: block_out_channels [8, 16], 2 blocks each,
    layers_per_block 1, latent_channels 16, use_quant_conv False, use_post_quant_conv False
    (no quant_conv.* / post_quant_conv.* keys; encode = encoder(x), decode = decoder(z)),
    scaling_factor 1.5305, shift_factor 0.0609. image [2,3,16,16] -> latents [2,16,8,8].
vae_tiny_ldm.safetensors
    a single-file Stable-Diffusion-style checkpoint: CompVis ldm AutoencoderKL(ddconfig =
    {double_z True, z_channels 4, resolution 16, in_channels 3, out_ch 3, ch 32, ch_mult [1, 1],
    num_res_blocks 1, attn_resolutions [], dropout 0.0}, embed_dim 4) under
    "first_stage_model." + its state_dict() names (encoder.*, decoder.*, quant_conv.*,
    post_quant_conv.*), mixed (alphabetical header) with unrelated keys a full checkpoint has:
    model.diffusion_model.input_blocks.0.0.{weight,bias} (tiny), model_ema.decay (F32 []),
    model_ema.num_updates (I32 []), cond_stage_model.transformer.text_model.embeddings.position_ids
    (I64 [1,8]), alphas_cumprod (F32 [10]). A loader must take first_stage_model.* only.
vae_tiny_ldm_io.safetensors
    same tensors as vae_tiny_io, computed by ldm: encode = DiagonalGaussianDistribution(
    quant_conv(encoder(x))) (ldm clamps logvar to [-30, 20] the same way); ldm's sample() draws
    torch.randn without a generator, so `sample` here is mean + exp(0.5 * logvar) * noise
    computed from the posterior's own std attribute (posterior.mean + posterior.std * noise);
    decoded = decoder(post_quant_conv(latent)). image [2,3,16,16] -> latents [2,4,8,8].
dit_tiny.pt
    torch.save(model.state_dict(), path) (zip format, like the published DiT-XL-2-256x256.pt,
    a plain state dict) of DiT(input_size=8, patch_size=2, in_channels=4, hidden_size=16,
    depth=2, num_heads=4, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10,
    learn_sigma=True) from facebookresearch/DiT models.py.
dit_tiny_ema_ckpt.pt
    torch.save({"model": sd, "ema": sd_ema, "opt": opt.state_dict()}) as DiT's train.py saves
    (train.py also stores "args", an argparse.Namespace, which is left out here). sd is the
    dit_tiny.pt state dict, sd_ema another random one, opt = AdamW(lr=1e-4, weight_decay=0) as
    train.py builds it, after one step in which only the 1-dim parameters had gradients (so its
    "state" is non-empty but small). DiT's find_model (download.py) loads checkpoint["ema"]
    when the key is present.
dit_tiny_io.safetensors
    x [3,4,8,8] N(0,1); t [3] = (0, 17.5, 999) float32; y [3] int64 = (0, 5, 10) (10 = the
    null class: num_classes + 1 rows since class_dropout_prob > 0); out = model(x, t, y)
    [3,8,8,8]; ema_out = the same with the "ema" weights of dit_tiny_ema_ckpt.pt;
    cfg_x [4,4,8,8] = cat([x[:2], x[:2]]), cfg_t [4] = (17.5, 600, 17.5, 600),
    cfg_y [4] = (3, 7, 10, 10) (as sample.py builds the batch: z = cat([z, z]),
    y = cat([y, null])), cfg_out = model.forward_with_cfg(cfg_x, cfg_t, cfg_y, cfg_scale=4.0)
    [4,8,8,8].
sit_tiny.pt, sit_tiny_io.safetensors
    willisma/SiT models.py SiT with the same config (learn_sigma True). Its forward ends with
    `if self.learn_sigma: x, _ = x.chunk(2, dim=1)`: the output has in_channels (4) channels,
    the sigma half is dropped. t is fed to the timestep embedding as is (t in [0, 1], no x1000).
    x, t = (0.0, 0.3, 0.95), y, out [3,4,8,8]; cfg_x, cfg_t = (0.3, 0.7, 0.3, 0.7), cfg_y,
    cfg_out = forward_with_cfg(..., cfg_scale=4.0) [4,4,8,8].
    DiT forward_with_cfg (models.py:250-266): runs forward on cat([x[:n/2], x[:n/2]]) (the
    second half of x is ignored), splits channels 0..2 ("eps") from 3.. ("rest"), guides only
    0..2: half = uncond + s (cond - uncond) with cond = first half, uncond = second half, and
    returns cat([cat([half, half]), rest], dim 1): channels 0..2 are the guided values in both
    halves, channel 3 (the 4th latent channel, unguided!) and channels 4..7 (the learned-sigma
    half) are the raw outputs of each half. SiT's forward_with_cfg (models.py:249-265) is the
    same code on its 4-channel output (channel 3 unguided).
key lists (text: "# how made" lines, then "name d0 d1 ..." per tensor in state-dict order):
    dit_xl2_256_keys.txt  DiT_XL_2(input_size=32, num_classes=1000, learn_sigma=True)
    dit_xl2_512_keys.txt  DiT_XL_2(input_size=64, ...)
    sit_xl2_256_keys.txt  SiT_XL_2(input_size=32, num_classes=1000, learn_sigma=True)
    sd_vae_diffusers_keys.txt  diffusers AutoencoderKL, stabilityai/sd-vae-ft-ema config
    sd_vae_ldm_keys.txt   ldm AutoencoderKL, SD v1 ddconfig (ch 128, ch_mult [1,2,4,4]),
                          "first_stage_model." prefix
    (instantiating the XL models takes ~3 GB and a minute; --no-key-lists skips them.)

SiT conventions (willisma/SiT 947f95b; for the C++ side, not used by the outputs):
  * transport/path.py ICPlan (path "Linear", the default): alpha_t = t, d_alpha = 1 (23-25),
    sigma_t = 1 - t, d_sigma = -1 (27-29); x_t = alpha_t x1 + sigma_t x0 (compute_mu_t 114-119);
    target u_t = d_alpha x1 + d_sigma x0 = x1 - x0 (compute_ut 126-131). transport.py sample()
    (103-113): x0 = randn_like(x1) (noise), x1 = the data latents, t ~ U[t0, t1] = U[0, 1]
    (velocity + Linear: train_eps = sample_eps = 0, transport/__init__.py 52-54). So t = 0 is
    noise, t = 1 is data, and the model predicts v = data - noise; training_losses: MSE(model(x_t,
    t, y), u_t) (131-140). The model sees t in [0, 1] directly (models.py:238, :52).
  * sampling integrates t from 0 to 1. ODE: Sampler.sample_ode(sampling_method="dopri5",
    num_steps=50, atol=1e-6, rtol=1e-3, reverse=False) (transport.py 341-381), drift = the
    model output (velocity_ode 177-179), torchdiffeq odeint on linspace(t0, t1, num_steps)
    (integrators.py 91, 107-114), t0 = 0, t1 = 1 (check_interval 73-100). sample.py /
    sample_ddp.py defaults: --sampling-method dopri5, --atol 1e-6, --rtol 1e-3
    (train_utils.py 14-20), --num-sampling-steps 250 (sample.py:129, sample_ddp.py:217).
  * SDE: Sampler.sample_sde(sampling_method="Euler", diffusion_form="SBDM", diffusion_norm=1.0,
    last_step="Mean", last_step_size=0.04, num_steps=250) (transport.py 279-339), but the CLI
    defaults (train_utils.py 22-32) are Euler, diffusion_form "sigma", norm 1.0, last step
    "Mean", size 0.04. Grid linspace(t0, t1, num_steps) with t0 = 0 (check_interval puts
    sample_eps there for SBDM, and sample_eps is 0 for velocity/Linear, so SBDM's (1 - t) / t is
    infinite at the first step), t1 = 1 - last_step_size = 0.96; num_steps - 1 Euler-Maruyama steps (integrators.py 23, 29-37,
    64-75: mean = x + drift dt, x = mean + sqrt(2 diffusion) sqrt(dt) randn), then the last step
    x + sde_drift(x, t1) * last_step_size (transport.py 260-263). sde_drift = v + diffusion *
    score (239-241), score = (t v - x) / (1 - t) (path.py 70-84 with alpha/d_alpha = t,
    var = 1 - t); diffusion "sigma" = norm (1 - t), "SBDM" = norm (1 - t) / t (path.py 45-68).
  * guidance: sample.py --cfg-scale 4.0 (:128), sample_ddp.py 1.0 (:216, cfg only if > 1,
    :120); batch z = cat([z, z]), y = cat([y, 1000...]) (sample.py 96-98), model_fn =
    forward_with_cfg; after sampling the null half is dropped and the latents decoded as
    vae.decode(samples / 0.18215) (sample.py 104-105; --vae mse in sample.py :125, ema in
    sample_ddp.py :210).
  * learn_sigma: SiT's default is True (models.py:157) and train.py builds SiT with it
    (train.py 150-153), so train.py checkpoints have an 8-channel final layer; sample.py builds
    learn_sigma = (image_size == 256) for the downloaded SiT-XL-2-256 (sample.py:32) but
    learn_sigma = False with --ckpt (sample.py:34, sample_ddp.py:68), which cannot load such a
    checkpoint (final_layer shape mismatch) -- an upstream quirk.

Also printed (a check, not an output): diffusers' own single-file converter
(loaders/single_file_utils.py convert_ldm_vae_checkpoint) applied to vae_tiny_ldm.safetensors,
loaded into the equivalent diffusers AutoencoderKL (block_out_channels [32, 32],
layers_per_block 1, norm_num_groups 32), reproduces vae_tiny_ldm_io to ~3e-6 (asserted < 1e-4).
"""
import argparse
import contextlib
import copy
import importlib
import importlib.machinery
import io
import json
import os
import re
import struct
import sys
import types

import torch
import torch.nn as nn

DIFFUSERS_COMMIT = "58eb52c0803ea9af3abec60841c2a093bdf1f951"
DIT_COMMIT = "ed81ce2229091fd4ecc9a223645f95cf379d582b"
SIT_COMMIT = "947f95bd3a510e9af441d38c1e9f72e0eee873c5"
LDM_COMMIT = "21f890f9da3cfbeaba8e2ac3c425ee9e998d5229"
TIMM_COMMIT = "ce4d3485b690837ba4e1cb4e0e6c4ed415e36cea"  # v0.6.12, what the stubs mirror

GENERATOR = "tests/reference/latent_models.py"
NOISE_SEED = 1234

VAE_TINY = dict(
    in_channels=3, out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
    block_out_channels=[8, 16, 16], layers_per_block=2, latent_channels=4, norm_num_groups=4,
    sample_size=32, scaling_factor=0.18215, act_fn="silu",
)
VAE_TINY_SD3 = dict(
    in_channels=3, out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[8, 16], layers_per_block=1, latent_channels=16, norm_num_groups=4,
    sample_size=32, scaling_factor=1.5305, shift_factor=0.0609, act_fn="silu",
    use_quant_conv=False, use_post_quant_conv=False,
)
LDM_TINY_DDCONFIG = dict(
    double_z=True, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1],
    num_res_blocks=1, attn_resolutions=[], dropout=0.0,
)
LDM_TINY_EMBED_DIM = 4
DIT_TINY = dict(
    input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=2, num_heads=4,
    mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10, learn_sigma=True,
)
# stabilityai/sd-vae-ft-ema (and -mse) config.json
SD_VAE_DIFFUSERS = dict(
    in_channels=3, out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
    norm_num_groups=32, sample_size=256, act_fn="silu",
)
# configs/stable-diffusion/v1-inference.yaml first_stage_config
SD_VAE_LDM_DDCONFIG = dict(
    double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
    ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0,
)


# ------------------------------------------------------------------------------------------------
# safetensors, written from the format's specification

_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64", torch.int32: "I32"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor), written in this order (header and data)."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors:
        t = t.detach().contiguous().cpu()
        a = t.numpy()
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def write_key_list(path, header_lines, state_dict):
    with open(path, "w") as f:
        for line in header_lines:
            f.write("# " + line + "\n")
        for name, t in state_dict.items():
            f.write(" ".join([name] + [str(d) for d in t.shape]) + "\n")


# ------------------------------------------------------------------------------------------------
# Stubs

class _StubModule(types.ModuleType):
    """A module whose unknown attributes are made on first use: classes (usable as exception
    types and base classes), or the values in `overrides`."""

    def __init__(self, name, overrides=None):
        super().__init__(name)
        self.__path__ = []
        self._overrides = overrides or {}

    def __getattr__(self, name):
        if name in self.__dict__.get("_overrides", {}):
            value = self._overrides[name]
        elif name.startswith("__"):
            raise AttributeError(name)
        else:
            value = type(name, (Exception,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _StubFinder:
    """Makes every module named `prefix` or `prefix.*` a _StubModule."""

    def __init__(self, prefixes, overrides):
        self.prefixes, self.overrides = tuple(prefixes), overrides

    def find_spec(self, name, path=None, target=None):
        if any(name == p or name.startswith(p + ".") for p in self.prefixes):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name, self.overrides)

    def exec_module(self, module):
        pass


class _Placeholder(types.SimpleNamespace):
    """Stands for a torch sub-namespace torch 1.13 lacks: capitalised names are classes,
    anything else a no-op function."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (object,), {}) if name[:1].isupper() else (lambda *a, **k: None)
        setattr(self, name, value)
        return value


def _identity_decorator(fn=None, *args, **kwargs):
    return fn if callable(fn) else (lambda f: f)


_HUB_OVERRIDES = dict(
        HF_HOME="/nonexistent/hf_home", HF_HUB_OFFLINE=True, HF_HUB_DISABLE_TELEMETRY=True,
        REGEX_COMMIT_HASH=re.compile(r"^[0-9a-f]{40}$"), validate_hf_hub_args=lambda f: f,
        is_jinja_available=lambda: False, __version__="0.0.0",
)


def install_diffusers_stubs():
    sys.meta_path.insert(0, _StubFinder(
        ["huggingface_hub", "PIL", "tqdm", "safetensors", "torch.distributed._functional_collectives",
         "diffusers.models.transformers"], _HUB_OVERRIDES))

    # packaging: the real one if installed, else the copy vendored in pip or setuptools.
    try:
        importlib.import_module("packaging.version")
    except ImportError:
        for base in ("pip._vendor.packaging", "setuptools._vendor.packaging",
                     "pkg_resources._vendor.packaging"):
            try:
                pkg = importlib.import_module(base)
            except ImportError:
                continue
            sys.modules["packaging"] = pkg
            for sub in ("version", "requirements", "specifiers", "markers", "utils", "tags"):
                with contextlib.suppress(ImportError):
                    sys.modules["packaging." + sub] = importlib.import_module(base + "." + sub)
            break
        else:
            sys.exit("needs the `packaging` module (or pip / setuptools, which vendor it)")

    dvc = types.ModuleType("diffusers.dependency_versions_check")
    dvc.dep_version_check = lambda *a, **k: None
    sys.modules[dvc.__name__] = dvc

    # Attributes of torch >= 2 that diffusers' import-time code names (only the missing ones).
    for name in ["float8_e4m3fn", "float8_e5m2", "uint1", "uint2", "uint3", "uint4", "uint5",
                 "uint6", "uint7", "uint16", "uint32", "uint64"]:
        if not hasattr(torch, name):
            setattr(torch, name, "unsupported dtype torch." + name)
    for name in ["xpu", "mps"]:
        if not hasattr(torch, name):
            setattr(torch, name, _Placeholder(is_available=lambda: False))
    if not hasattr(torch, "compiler"):
        torch.compiler = types.SimpleNamespace(
            disable=_identity_decorator, is_compiling=lambda: False,
            cudagraph_mark_step_begin=lambda: None)
    if not hasattr(torch.distributed, "device_mesh"):
        torch.distributed.device_mesh = _Placeholder()


def install_model_stubs():
    """After diffusers is imported (its import_utils probes for timm / einops)."""
    sys.meta_path.insert(0, _StubFinder(["einops", "taming"], {}))
    # pytorch_lightning for ldm/models/autoencoder.py: a LightningModule is an nn.Module here.
    pl = types.ModuleType("pytorch_lightning")
    pl.LightningModule = nn.Module
    sys.modules["pytorch_lightning"] = pl

    # timm, as DiT's / SiT's models.py import it
    vt = types.ModuleType("timm.models.vision_transformer")
    vt.PatchEmbed, vt.Attention, vt.Mlp = TimmPatchEmbed, TimmAttention, TimmMlp
    sys.modules["timm"] = types.ModuleType("timm")
    sys.modules["timm.models"] = types.ModuleType("timm.models")
    sys.modules["timm.models.vision_transformer"] = vt


def _to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


class TimmPatchEmbed(nn.Module):
    """timm v0.6.12 timm/models/layers/patch_embed.py PatchEmbed (norm_layer None, flatten)."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None,
                 flatten=True, bias=True):
        super().__init__()
        img_size, patch_size = _to_2tuple(img_size), _to_2tuple(patch_size)
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = (img_size[0] // patch_size[0], img_size[1] // patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x):
        assert x.shape[2] == self.img_size[0] and x.shape[3] == self.img_size[1]
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # BCHW -> BNC
        return self.norm(x)


class TimmAttention(nn.Module):
    """timm v0.6.12 timm/models/vision_transformer.py Attention."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class TimmMlp(nn.Module):
    """timm v0.6.12 timm/models/layers/mlp.py Mlp (bias True)."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU,
                 bias=True, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


# ------------------------------------------------------------------------------------------------
# Loading the reference code

def _need(path, what):
    if not os.path.exists(path):
        sys.exit("%s: not found (%s; see tests/training/fixtures/latent/README.md)" % (path, what))


def load_models_py(src, name, what):
    path = os.path.join(src or "", "models.py")
    _need(path, what)
    module = types.ModuleType(name)
    module.__file__ = path
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), module.__dict__)
    return module


def load_diffusers(src):
    root = os.path.join(src or "", "src")
    _need(os.path.join(root, "diffusers", "models", "autoencoders", "autoencoder_kl.py"),
          "--diffusers / DIFFUSERS_SRC: a huggingface/diffusers checkout")
    sys.path.insert(0, root)
    import diffusers
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.attention_processor import AttnProcessor
    return diffusers, AutoencoderKL, AttnProcessor


def load_ldm(src):
    _need(os.path.join(src or "", "ldm", "models", "autoencoder.py"),
          "--ldm / LDM_SRC: a CompVis/stable-diffusion checkout")
    sys.path.insert(0, src)
    with contextlib.redirect_stdout(io.StringIO()):
        from ldm.models.autoencoder import AutoencoderKL as LdmAutoencoderKL
    return LdmAutoencoderKL


def make_ldm_vae(cls, ddconfig, embed_dim):
    with contextlib.redirect_stdout(io.StringIO()):  # ldm prints the z shape and attention kinds
        return cls(ddconfig=dict(ddconfig), lossconfig={"target": "torch.nn.Identity"},
                   embed_dim=embed_dim)


# ------------------------------------------------------------------------------------------------

def randomize_(module, seed, keep=("pos_embed",)):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in keep:
                continue
            if p.dim() >= 2:
                std = min(0.2, max(0.02, (p[0].numel()) ** -0.5))
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return module


def _stats(name, t):
    t = t.float()
    print("  %-10s %-16s mean %+.4f std %.4f max|.| %.4f" % (
        name, list(t.shape), t.mean().item(), t.std().item(), t.abs().max().item()))


def vae_io(encode, decode, image_hw, latent_shape, seed):
    """encode(image) -> posterior with .mean/.logvar/.std; decode(z) -> image."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((2, 3) + image_hw, generator=g) * 2 - 1
    latent = torch.randn(latent_shape, generator=g)
    noise = torch.randn(latent_shape, generator=torch.Generator().manual_seed(NOISE_SEED))
    with torch.no_grad():
        posterior = encode(image)
        decoded = decode(latent)
    return image, posterior, noise, latent, decoded


def make_diffusers_vae(out, name, AutoencoderKL, AttnProcessor, config, size, seed, meta):
    vae = AutoencoderKL(**config)
    vae.set_attn_processor(AttnProcessor())
    randomize_(vae, seed)
    vae.eval()
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    vae.save_config(folder)
    write_safetensors(os.path.join(folder, "diffusion_pytorch_model.safetensors"),
                      list(vae.state_dict().items()), {"format": "pt"})

    f = 2 ** (len(config["block_out_channels"]) - 1)
    image, post, noise, latent, decoded = vae_io(
        lambda x: vae.encode(x).latent_dist, lambda z: vae.decode(z).sample, (size, size),
        (2, config["latent_channels"], size // f, size // f), seed + 1)
    sample = post.sample(generator=torch.Generator().manual_seed(NOISE_SEED))
    assert torch.equal(sample, post.mean + torch.exp(0.5 * post.logvar) * noise)
    tensors = [("image", image), ("mean", post.mean), ("logvar", post.logvar), ("noise", noise),
               ("sample", sample), ("latent", latent), ("decoded", decoded)]
    print(name)
    for n, t in tensors:
        _stats(n, t)
    meta = dict(meta, model="diffusers AutoencoderKL", config=json.dumps(json.loads(vae.to_json_string()), sort_keys=True),
                weights=name + "/diffusion_pytorch_model.safetensors", weight_seed=str(seed),
                noise_seed=str(NOISE_SEED),
                sample="mean + exp(0.5 * logvar) * noise (diffusers DiagonalGaussianDistribution.sample)",
                decoded="vae.decode(latent).sample, no scaling_factor / shift_factor applied")
    write_safetensors(os.path.join(out, name + "_io.safetensors"), tensors, meta)
    return vae


def make_ldm_vae_fixture(out, LdmAutoencoderKL, seed, meta):
    vae = randomize_(make_ldm_vae(LdmAutoencoderKL, LDM_TINY_DDCONFIG, LDM_TINY_EMBED_DIM), seed)
    vae.eval()
    g = torch.Generator().manual_seed(seed + 100)
    extra = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 4, 3, 3, generator=g) * 0.1,
        "model.diffusion_model.input_blocks.0.0.bias": torch.randn(4, generator=g) * 0.1,
        "model_ema.decay": torch.tensor(0.9999, dtype=torch.float32),
        "model_ema.num_updates": torch.tensor(1000, dtype=torch.int32),
        "cond_stage_model.transformer.text_model.embeddings.position_ids":
            torch.arange(8, dtype=torch.int64).unsqueeze(0),
        "alphas_cumprod": torch.cumprod(1 - torch.linspace(0.00085, 0.012, 10), 0),
    }
    full = {"first_stage_model." + k: v for k, v in vae.state_dict().items()}
    full.update(extra)
    write_safetensors(os.path.join(out, "vae_tiny_ldm.safetensors"),
                      [(k, full[k]) for k in sorted(full)], {"format": "pt"})

    image, post, noise, latent, decoded = vae_io(vae.encode, vae.decode, (16, 16), (2, 4, 8, 8),
                                                 seed + 1)
    sample = post.mean + post.std * noise
    assert torch.equal(sample, post.mean + torch.exp(0.5 * post.logvar) * noise)
    tensors = [("image", image), ("mean", post.mean), ("logvar", post.logvar), ("noise", noise),
               ("sample", sample), ("latent", latent), ("decoded", decoded)]
    print("vae_tiny_ldm")
    for n, t in tensors:
        _stats(n, t)
    meta = dict(meta, model="CompVis ldm AutoencoderKL (ldm/models/autoencoder.py)",
                ddconfig=json.dumps(LDM_TINY_DDCONFIG), embed_dim=str(LDM_TINY_EMBED_DIM),
                weights="vae_tiny_ldm.safetensors (keys first_stage_model.*)",
                weight_seed=str(seed), noise_seed=str(NOISE_SEED),
                sample="mean + exp(0.5 * logvar) * noise (posterior.mean + posterior.std * noise)",
                decoded="decoder(post_quant_conv(latent)), no scale factor applied")
    write_safetensors(os.path.join(out, "vae_tiny_ldm_io.safetensors"), tensors, meta)
    return full, dict(tensors)


def check_ldm_conversion(AutoencoderKL, AttnProcessor, full, io_tensors):
    """Not an output: diffusers' own single-file converter (loaders/single_file_utils.py
    convert_ldm_vae_checkpoint) maps vae_tiny_ldm onto the equivalent diffusers AutoencoderKL,
    which must reproduce the ldm outputs up to float rounding."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    c = LDM_TINY_DDCONFIG
    config = dict(in_channels=c["in_channels"], out_channels=c["out_ch"],
                  down_block_types=["DownEncoderBlock2D"] * len(c["ch_mult"]),
                  up_block_types=["UpDecoderBlock2D"] * len(c["ch_mult"]),
                  block_out_channels=[c["ch"] * m for m in c["ch_mult"]],
                  layers_per_block=c["num_res_blocks"], latent_channels=LDM_TINY_EMBED_DIM,
                  norm_num_groups=32, sample_size=c["resolution"])
    vae = AutoencoderKL(**config)
    vae.set_attn_processor(AttnProcessor())
    vae.load_state_dict(convert_ldm_vae_checkpoint(full, config))
    vae.eval()
    with torch.no_grad():
        post = vae.encode(io_tensors["image"]).latent_dist
        decoded = vae.decode(io_tensors["latent"]).sample
    diffs = [(post.mean - io_tensors["mean"]).abs().max().item(),
             (post.logvar - io_tensors["logvar"]).abs().max().item(),
             (decoded - io_tensors["decoded"]).abs().max().item()]
    print("check: diffusers convert_ldm_vae_checkpoint(vae_tiny_ldm) vs ldm: max |diff| mean %.2e "
          "logvar %.2e decoded %.2e" % tuple(diffs))
    assert max(diffs) < 1e-4


def make_dit_like(out, name, models, cls_name, seed, t, cfg_t, meta, ema_ckpt):
    model = randomize_(getattr(models, cls_name)(**DIT_TINY), seed).eval()
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, name + ".pt"))

    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor(t, dtype=torch.float32)
    y = torch.tensor([0, 5, 10], dtype=torch.int64)
    cfg_x = torch.cat([x[:2], x[:2]])
    cfg_t = torch.tensor(cfg_t, dtype=torch.float32)
    cfg_y = torch.tensor([3, 7, 10, 10], dtype=torch.int64)
    with torch.no_grad():
        out_ = model(x, t, y)
        cfg_out = model.forward_with_cfg(cfg_x, cfg_t, cfg_y, cfg_scale=4.0)
    tensors = [("x", x), ("t", t), ("y", y), ("out", out_)]

    if ema_ckpt:
        ema = randomize_(copy.deepcopy(model), seed + 2).eval()
        sd_ema = ema.state_dict()
        trained = copy.deepcopy(model).train()
        opt = torch.optim.AdamW(trained.parameters(), lr=1e-4, weight_decay=0)
        gg = torch.Generator().manual_seed(seed + 3)
        for p in trained.parameters():
            if p.requires_grad and p.dim() == 1:
                p.grad = torch.randn(p.shape, generator=gg)
        opt.step()
        torch.save({"model": sd, "ema": sd_ema, "opt": opt.state_dict()},
                   os.path.join(out, name + "_ema_ckpt.pt"))
        with torch.no_grad():
            tensors.append(("ema_out", ema(x, t, y)))
    tensors += [("cfg_x", cfg_x), ("cfg_t", cfg_t), ("cfg_y", cfg_y), ("cfg_out", cfg_out)]
    print(name)
    for n, v in tensors:
        _stats(n, v)
    meta = dict(meta, model=cls_name, config=json.dumps(DIT_TINY), weights=name + ".pt",
                weight_seed=str(seed), cfg_scale="4.0",
                cfg="forward_with_cfg: guidance on output channels 0..2 only")
    write_safetensors(os.path.join(out, name + "_io.safetensors"), tensors, meta)


def make_key_lists(out, dit, sit, AutoencoderKL, LdmAutoencoderKL):
    for fname, models, fn, size, commit in [
            ("dit_xl2_256_keys.txt", dit, "DiT_XL_2", 32, "facebookresearch/DiT " + DIT_COMMIT),
            ("dit_xl2_512_keys.txt", dit, "DiT_XL_2", 64, "facebookresearch/DiT " + DIT_COMMIT),
            ("sit_xl2_256_keys.txt", sit, "SiT_XL_2", 32, "willisma/SiT " + SIT_COMMIT)]:
        m = getattr(models, fn)(input_size=size, num_classes=1000, learn_sigma=True)
        write_key_list(os.path.join(out, fname), [
            "%s models.py %s(input_size=%d, num_classes=1000, learn_sigma=True).state_dict()" % (
                commit, fn, size),
            "name dim0 dim1 ... (made by %s; timm 0.6.12 PatchEmbed/Attention/Mlp)" % GENERATOR],
            m.state_dict())
        del m
    m = AutoencoderKL(**SD_VAE_DIFFUSERS)
    write_key_list(os.path.join(out, "sd_vae_diffusers_keys.txt"), [
        "huggingface/diffusers %s AutoencoderKL(**stabilityai/sd-vae-ft-ema config.json).state_dict()"
        % DIFFUSERS_COMMIT, "config: " + json.dumps(SD_VAE_DIFFUSERS),
        "name dim0 dim1 ... (made by %s)" % GENERATOR], m.state_dict())
    del m
    m = make_ldm_vae(LdmAutoencoderKL, SD_VAE_LDM_DDCONFIG, 4)
    write_key_list(os.path.join(out, "sd_vae_ldm_keys.txt"), [
        "CompVis/stable-diffusion %s ldm.models.autoencoder.AutoencoderKL(ddconfig, embed_dim=4)"
        ".state_dict() with the prefix first_stage_model. (as in a single-file SD v1 checkpoint)"
        % LDM_COMMIT, "ddconfig (configs/stable-diffusion/v1-inference.yaml): "
        + json.dumps(SD_VAE_LDM_DDCONFIG), "name dim0 dim1 ... (made by %s)" % GENERATOR],
        {"first_stage_model." + k: v for k, v in m.state_dict().items()})
    del m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffusers", default=os.environ.get("DIFFUSERS_SRC"),
                    help="huggingface/diffusers checkout at %s (holds src/diffusers)" % DIFFUSERS_COMMIT[:7])
    ap.add_argument("--dit", default=os.environ.get("DIT_SRC"),
                    help="facebookresearch/DiT checkout at %s" % DIT_COMMIT[:7])
    ap.add_argument("--sit", default=os.environ.get("SIT_SRC"),
                    help="willisma/SiT checkout at %s" % SIT_COMMIT[:7])
    ap.add_argument("--ldm", default=os.environ.get("LDM_SRC"),
                    help="CompVis/stable-diffusion checkout at %s (holds ldm/)" % LDM_COMMIT[:7])
    ap.add_argument("--out", default=os.path.join("tests", "training", "fixtures", "latent"))
    ap.add_argument("--no-key-lists", action="store_true", help="skip the XL / SD key lists")
    a = ap.parse_args()

    torch.set_num_threads(1)  # summation order independent of the machine's core count
    install_diffusers_stubs()
    diffusers, AutoencoderKL, AttnProcessor = load_diffusers(a.diffusers)
    install_model_stubs()
    LdmAutoencoderKL = load_ldm(a.ldm)
    dit = load_models_py(a.dit, "dit_models", "--dit / DIT_SRC: a facebookresearch/DiT checkout")
    sit = load_models_py(a.sit, "sit_models", "--sit / SIT_SRC: a willisma/SiT checkout")
    os.makedirs(a.out, exist_ok=True)

    meta = {"generator": GENERATOR, "torch": torch.__version__}
    dmeta = dict(meta, source="huggingface/diffusers " + DIFFUSERS_COMMIT,
                 diffusers_version=diffusers.__version__)
    make_diffusers_vae(a.out, "vae_tiny", AutoencoderKL, AttnProcessor, VAE_TINY, 32, 10, dmeta)
    make_diffusers_vae(a.out, "vae_tiny_sd3", AutoencoderKL, AttnProcessor, VAE_TINY_SD3, 16, 20, dmeta)
    full, ldm_io = make_ldm_vae_fixture(a.out, LdmAutoencoderKL, 30,
                                        dict(meta, source="CompVis/stable-diffusion " + LDM_COMMIT))
    check_ldm_conversion(AutoencoderKL, AttnProcessor, full, ldm_io)
    make_dit_like(a.out, "dit_tiny", dit, "DiT", 40, [0.0, 17.5, 999.0], [17.5, 600.0, 17.5, 600.0],
                  dict(meta, source="facebookresearch/DiT " + DIT_COMMIT,
                       timm_stub="timm v0.6.12 " + TIMM_COMMIT), ema_ckpt=True)
    make_dit_like(a.out, "sit_tiny", sit, "SiT", 50, [0.0, 0.3, 0.95], [0.3, 0.7, 0.3, 0.7],
                  dict(meta, source="willisma/SiT " + SIT_COMMIT,
                       timm_stub="timm v0.6.12 " + TIMM_COMMIT,
                       forward="learn_sigma: output chunk(2, dim=1)[0], in_channels channels"),
                  ema_ckpt=False)
    if not a.no_key_lists:
        make_key_lists(a.out, dit, sit, AutoencoderKL, LdmAutoencoderKL)


if __name__ == "__main__":
    main()
