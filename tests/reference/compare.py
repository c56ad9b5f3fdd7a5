# SPDX-License-Identifier: Apache-2.0
"""Compares the numbers a generator printed with the numbers in a test file, in order.

    python3 tests/reference/compare.py GENERATED TEST_FILE [--from TEXT] [--to TEXT]

GENERATED is a generator's output (or '-' for stdin); TEST_FILE the test source (or .inc) holding
the same table. --from / --to cut TEST_FILE to the text between the first line containing TEXT
and the next line containing the --to TEXT (inclusive). Comment lines (starting with //) and text
after a // are ignored on both sides. Numbers are read as decimal literals (and 0x... hex integers)
that are not part of an identifier; both sides must hold the same count. Prints the count, the
number of exact matches and the largest absolute and relative deviations; exits 1 when the counts
differ or a relative deviation exceeds --rtol (default 0: report only).
"""
import argparse
import re
import sys

NUM = re.compile(r"(?<![\w.])(0x[0-9a-fA-F]+|[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)(?:[uU]?[lL]{0,2}|[fF])(?![\w.])")


def numbers(text):
    out = []
    for line in text.splitlines():
        line = line.split("//", 1)[0]
        for m in NUM.finditer(line):
            s = m.group(1)
            out.append(int(s, 16) if s.startswith("0x") else float(s))
    return out


def cut(text, start, end):
    if not start:
        return text
    lines = text.splitlines()
    i = next(k for k, l in enumerate(lines) if start in l)
    j = next(k for k in range(i, len(lines)) if end and end in lines[k]) if end else len(lines) - 1
    return "\n".join(lines[i:j + 1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("generated")
    ap.add_argument("test_file")
    ap.add_argument("--from", dest="start")
    ap.add_argument("--to", dest="end")
    ap.add_argument("--rtol", type=float, default=0.0)
    ap.add_argument("--show", type=int, default=3, help="list this many of the largest deviations")
    a = ap.parse_args()
    gen = sys.stdin.read() if a.generated == "-" else open(a.generated).read()
    ref = cut(open(a.test_file).read(), a.start, a.end)
    g, t = numbers(gen), numbers(ref)
    if len(g) != len(t):
        print("count differs: generated %d numbers, test %d" % (len(g), len(t)))
        return 1
    exact, max_abs, devs = 0, 0.0, []
    for k, (x, y) in enumerate(zip(g, t)):
        if x == y:
            exact += 1
            continue
        d = abs(x - y)
        max_abs = max(max_abs, d)
        devs.append((d / abs(y) if y else d, k, x, y))
    devs.sort(reverse=True)
    max_rel = devs[0][0] if devs else 0.0
    print("%d numbers, %d exact; max |diff| %.3g, max relative %.3g" % (len(t), exact, max_abs, max_rel))
    for rel, k, x, y in devs[:a.show]:
        print("  number %d: generated %r, test %r (relative %.3g)" % (k, x, y, rel))
    return 1 if a.rtol and max_rel > a.rtol else 0


if __name__ == "__main__":
    sys.exit(main())
