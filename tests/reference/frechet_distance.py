# SPDX-License-Identifier: Apache-2.0
"""Golden values of tests/training/evaluation_test.cpp FrechetDistance.MatchesPytorchFidFormulaOnAFixedPair.

    /usr/bin/python3 tests/reference/frechet_distance.py --pytorch-fid PATH

PATH: a checkout of mseitzer/pytorch-fid at b9c1811 (or $PYTORCH_FID_SRC). Its
src/pytorch_fid/fid_score.py calculate_frechet_distance is taken from the file as is (only that
function, so torchvision, PIL and the Inception weights are not needed) and run with numpy and
scipy.linalg on the statistics calculate_activation_statistics computes (np.mean over axis 0,
np.cov(rowvar=False)) of the fixed pair a_ij = sin(0.7 i + 1.3 j) + 0.1 j,
b_ij = cos(0.3 i (j + 1)) + 0.05 i [j == 2], i < 50, j < 5. Prints FD(a, b) and FD(b, a).
"""
import argparse
import ast
import os
import sys

import numpy as np
from scipy import linalg

PYTORCH_FID_COMMIT = "b9c18118d082cbd263c1b8963fc4221dc1cbb659"


def load(src):
    path = os.path.join(src or "", "src", "pytorch_fid", "fid_score.py")
    if not os.path.isfile(path):
        sys.exit("%s: not found (see tests/reference/README.md)" % path)
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "calculate_frechet_distance"]
    ns = {"np": np, "linalg": linalg}
    exec(compile(ast.Module(body=fn, type_ignores=[]), path, "exec"), ns)
    return ns["calculate_frechet_distance"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pytorch-fid", default=os.environ.get("PYTORCH_FID_SRC"),
                    help="mseitzer/pytorch-fid checkout at %s" % PYTORCH_FID_COMMIT[:7])
    a = ap.parse_args()
    fd = load(a.pytorch_fid)
    i = np.arange(50, dtype=np.float64)[:, None]
    j = np.arange(5, dtype=np.float64)[None, :]
    x = np.sin(0.7 * i + 1.3 * j) + 0.1 * j
    y = np.cos(0.3 * i * (j + 1)) + 0.05 * i * (j == 2)

    def stats(act):
        return np.mean(act, axis=0), np.cov(act, rowvar=False)

    print("numpy %s, scipy %s" % (np.__version__, __import__("scipy").__version__))
    print("FD(a, b) = %r" % float(fd(*stats(x), *stats(y))))
    print("FD(b, a) = %r" % float(fd(*stats(y), *stats(x))))


if __name__ == "__main__":
    main()
