#!/usr/bin/env bash
# Compile cost of the public headers, as ratios to a translation unit that includes only
# <torch/torch.h> (issue 14's targets: <diffuse/all.h> <= 1.3x, <diffuse/training.h> <= 1.5x and
# <= 1.2 GB peak compiler memory), and how many files a one-file edit recompiles.
#
# Usage: scripts/compile_cost.sh [rounds]      (default 3; each round compiles every TU once)
# Environment: DIFFUSE_BUILD_DIR (default ./build): a configured build folder (scripts/test.sh or
# cmake -S . -B build ...); its compile_commands.json gives the exact compiler flags.
#
# Each TU is compiled with the flags of examples/train_quickstart (g++, -O3 as in Release, no
# ccache), to an object file that is thrown away. The rounds alternate the TUs (A B C D, A B C D,
# ...) so that a machine shared with other work slows them alike; the table gives each TU's
# median user CPU time, its ratio to the <torch/torch.h> TU's median, and its largest peak RSS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${DIFFUSE_BUILD_DIR:-$root/build}"
rounds="${1:-3}"
[ -f "$build/compile_commands.json" ] || { echo "compile_cost: no $build/compile_commands.json (configure first)" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/diffuse_compile_cost.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The flags of examples/train_quickstart (a program that links diffuse::training): every include
# folder and definition a user of diffuse::training gets.
/usr/bin/python3 - "$build/compile_commands.json" "$work/flags" <<'PY'
import json, shlex, sys
cmds = json.load(open(sys.argv[1]))
entry = next(c for c in cmds if c["file"].endswith("examples/train_quickstart/main.cpp"))
args = shlex.split(entry["command"])
out, skip = [], False
for a in args[1:]:
    if skip: skip = False; continue
    if a in ("-o", "-c", "-MF", "-MT"): skip = True; continue
    if a in ("-MD", "-Werror") or a == entry["file"] or a.endswith("ccache"): continue
    out.append(a)
if out and out[0].endswith(("c++", "g++", "clang++")): out = out[1:]
open(sys.argv[2], "w").write("\n".join(out))
PY
mapfile -t flags < "$work/flags"
cxx="$(command -v g++)"

printf '#include <torch/torch.h>\nint main() { return 0; }\n' > "$work/torch.cpp"
printf '#include <diffuse/all.h>\nint main() { return 0; }\n' > "$work/all.cpp"
printf '#include <diffuse/training.h>\nint main() { return 0; }\n' > "$work/training.cpp"
cp "$root/examples/train_quickstart/main.cpp" "$work/train_quickstart.cpp"
tus=(torch all training train_quickstart)
labels=("#include <torch/torch.h>" "#include <diffuse/all.h>" "#include <diffuse/training.h>" "examples/train_quickstart/main.cpp")

echo "compile_cost: $rounds round(s), $(nproc) CPUs, $("$cxx" --version | head -1), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= rounds; ++r)); do
  for tu in "${tus[@]}"; do
    /usr/bin/time -f "%U %M" -o "$work/$tu.$r.time" "$cxx" "${flags[@]}" -c "$work/$tu.cpp" -o "$work/$tu.o"
    echo "  round $r $tu: $(cat "$work/$tu.$r.time") (user s, peak KiB)" >&2
  done
done

/usr/bin/python3 - "$work" "$rounds" "${tus[@]}" -- "${labels[@]}" <<'PY'
import statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
rest = sys.argv[3:]
sep = rest.index("--")
tus, labels = rest[:sep], rest[sep + 1:]
res = {}
for tu in tus:
    rows = [open(f"{work}/{tu}.{r}.time").read().split() for r in range(1, rounds + 1)]
    res[tu] = (statistics.median(float(u) for u, _ in rows), max(int(m) for _, m in rows))
base = res[tus[0]][0]
print("| translation unit | user CPU (median) | ratio to <torch/torch.h> | peak memory |")
print("|---|---|---|---|")
for tu, label in zip(tus, labels):
    t, m = res[tu]
    print(f"| `{label}` | {t:.1f} s | {t / base:.2f}x | {m / 1048576:.2f} GB |")
PY

# One-file edits: the object files whose recorded dependencies (ninja's deps log, written by the
# last build from the compiler's depfiles) include the edited file, i.e. what ninja recompiles
# after that edit. Nothing is touched or rebuilt.
if command -v ninja > /dev/null && [ -f "$build/.ninja_deps" ]; then
  echo
  echo "| edited file | files recompiled |"
  echo "|---|---|"
  ninja -C "$build" -t deps > "$work/deps" 2> /dev/null
  /usr/bin/python3 - "$work/deps" "$build" "$root" samplers/euler.cpp samplers/dpm_solver_pp.cpp \
      schedules/spacing/karras.cpp samplers/corrections/time_shift.cpp training/trainer.cpp \
      src/sample.cpp include/diffuse/samplers/euler.h include/diffuse/sampler.h <<'PY'
import os, re, sys
deps_file, build, root = sys.argv[1:4]
objects, current = {}, None
for line in open(deps_file):
    if line and not line[0].isspace() and ": #deps" in line:
        current = line.split(": #deps")[0]
        objects[current] = set()
    elif line.strip() and current is not None:
        objects[current].add(os.path.normpath(os.path.join(build, line.strip())))
for rel in sys.argv[4:]:
    path = os.path.normpath(os.path.join(root, rel))
    if not os.path.exists(path):
        continue
    hits = sorted(o for o, d in objects.items() if path in d)
    short = [re.sub(r"^(.*/)?CMakeFiles/[^/]+\.dir/", "", h).removesuffix(".o") for h in hits]
    shown = ", ".join(short[:3]) + (", ..." if len(short) > 3 else "")
    print(f"| `{rel}` | {len(hits)} ({shown}) |")
PY
fi
