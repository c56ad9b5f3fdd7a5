# SPDX-License-Identifier: Apache-2.0
"""Reference parameter counts of tests/training/dit_test.cpp (DiT.ParameterCountsMatchTheReference).

    /usr/bin/python3 tests/reference/dit_params.py --dit PATH [--xl]

PATH: a checkout of facebookresearch/DiT at ed81ce2 (its models.py is used as is), or $DIT_SRC.
models.py imports PatchEmbed, Attention and Mlp from timm, which are replaced here by modules with
the parameters timm's have (timm.models.vision_transformer: PatchEmbed = Conv2d(in, d, p, stride p)
+ Identity norm; Attention = qkv Linear(d, 3d, bias) + proj Linear(d, d); Mlp = fc1 Linear(d, h) +
fc2 Linear(h, d)); only parameter shapes matter for the count. Prints
sum(p.numel() for p in model.parameters()) (what DiT's train.py logs, the frozen pos_embed
included) for DiT_S_2 and DiT_B_2 (input_size 32, in_channels 4, num_classes 1000,
class_dropout_prob 0.1, learn_sigma True), and with --xl DiT_XL_2 (675,129,632; needs ~3 GB).
"""
import argparse
import os
import sys
import types

import torch.nn as nn

DIT_COMMIT = "ed81ce2229091fd4ecc9a223645f95cf379d582b"


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim, bias=True):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, bias=bias)
        self.norm = nn.Identity()


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, **kwargs):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, act_layer=None, drop=0.0, **kwargs):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dit", default=os.environ.get("DIT_SRC"), help="facebookresearch/DiT checkout at ed81ce2")
    ap.add_argument("--xl", action="store_true", help="also DiT-XL/2")
    a = ap.parse_args()
    path = os.path.join(a.dit or "", "models.py")
    if not os.path.isfile(path):
        sys.exit("%s: not found (see tests/reference/README.md)" % path)
    vt = types.ModuleType("timm.models.vision_transformer")
    vt.PatchEmbed, vt.Attention, vt.Mlp = PatchEmbed, Attention, Mlp
    sys.modules["timm"] = types.ModuleType("timm")
    sys.modules["timm.models"] = types.ModuleType("timm.models")
    sys.modules["timm.models.vision_transformer"] = vt
    models = types.ModuleType("dit_models")
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), models.__dict__)
    for name in ["DiT_S_2", "DiT_B_2"] + (["DiT_XL_2"] if a.xl else []):
        m = getattr(models, name)(input_size=32, in_channels=4, num_classes=1000, learn_sigma=True)
        print("%s: %d parameters (pos_embed %d)" % (name, sum(p.numel() for p in m.parameters()),
                                                   m.pos_embed.numel()))
        del m


if __name__ == "__main__":
    main()
