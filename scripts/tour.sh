#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs the README's five-minute tour as written (default thread count, so the times are what a user
# gets), prints each command's wall time and the thread count the tool chose, and copies what the
# README shows into docs/tour/: samples.png, steps6_*.png, train_loss.png, ays10.json and the eval
# plots. Run it on an idle machine; it takes about 10 minutes on 2 cores.
#   scripts/tour.sh [path/to/diffuse]
set -eu
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
D=$(realpath "${1:-$ROOT/build/examples/cli/diffuse}")
TOUR="$ROOT/docs/tour"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
diffuse() { "$D" --no-progress "$@"; }
timed() {  # timed <label> <diffuse arguments...>
  local label=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  diffuse -v "$@" > out.txt 2> log.txt
  t1=$(date +%s.%N)
  printf '%-28s %6.1f s  threads %s\n' "$label" "$(echo "$t1 - $t0" | bc)" \
    "$(grep -o '^debug: [0-9]* intra-op' log.txt | grep -o '[0-9]*' | head -1)"
}
"$D" --threads 1 sample -n 1 --steps 1 -o warm.png > /dev/null 2>&1  # page in LibTorch and the model
timed "sample" sample
cp diffuse_samples.png "$TOUR/samples.png"
for s in ddim euler_a dpmpp_2m heun; do
  timed "sample --steps 6 $s" sample -n 10 --steps 6 --sampler "$s" -o "steps6_$s.png"
  cp "steps6_$s.png" "$TOUR/"
done
timed "corrections ddim" sample --sampler ddim --steps 10 -c cads -c time_shift:window=5,cutoff=300
timed "corrections euler" sample --sampler euler --schedule karras -c epsilon_scaling:b=1.005
timed "train (3-minute budget)" train --config "$TOUR/train.json" --out tour_run
grep -o "after [0-9]* steps this run.*images/s in training steps alone" log.txt || true
cp tour_run/loss.png "$TOUR/train_loss.png"
timed "ays --steps 10" ays --steps 10 --out ays10.json
grep -io "KLUB [0-9.]* -> [0-9.]*" log.txt | tail -1 || true
cp ays10.json "$TOUR/ays10.json"
timed "eval (9 settings)" eval --sampler ddim,dpmpp_2m,euler --steps 5,10,20 --out eval
cat eval/*.md 2> /dev/null | head -20 || true
for f in eval/*fd_vs_steps*.png; do [ -f "$f" ] && cp "$f" "$TOUR/eval_fd_vs_steps.png"; done
for f in eval/*exposure_bias*.png; do [ -f "$f" ] && cp "$f" "$TOUR/eval_exposure_bias.png"; done
echo "load average after the tour: $(cut -d' ' -f1-3 /proc/loadavg)"
