#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Threads benchmark (docs/benchmarks.md, "Threads"): wall time of `diffuse sample` (the README's
# default command: 40 images, 20 steps) and training images/s of a short `diffuse train`, for
#   --threads 1, --threads 2, --threads 0 (automatic, the default) with the launcher's OpenMP waits
#   (passive after a 1000-spin wait, GOMP_SPINCOUNT=1000), and --threads 2 with fully passive waits
#   (GOMP_SPINCOUNT=0, the tool's default until 2026-12-07) and with libgomp's own spinning waits
#   (GOMP_SPINCOUNT=300000, what the tool did before it set OMP_WAIT_POLICY=PASSIVE),
# each on an idle machine and next to one competing busy process (a shell busy loop on one CPU).
# Contenders alternate within each round; the table gives the median of the rounds.
#   scripts/bench_threads.sh [path/to/diffuse] [rounds]
set -eu
D=$(realpath "${1:-build/examples/cli/diffuse}")
ROUNDS=${2:-3}
W=$(mktemp -d)
BUSY=""
cleanup() { [ -n "$BUSY" ] && kill "$BUSY" 2> /dev/null; rm -rf "$W"; }
trap cleanup EXIT
cd "$W"
cat > train.json <<'J'
{"preset": "tiny", "patch": 4, "limit": 2048, "batch_size": 64, "steps": 40, "minutes": 0,
 "sample_every": 0, "sample_steps": 1, "checkpoint_every": 0, "keep_checkpoints": 1, "log_every": 10,
 "warmup": 0}
J
contenders=("1|" "2|" "0|" "2|GOMP_SPINCOUNT=0" "2|GOMP_SPINCOUNT=300000")
label() { case "$1" in "1|") echo "--threads 1";; "2|") echo "--threads 2";; "0|") echo "default (auto)";;
  "2|GOMP_SPINCOUNT=0") echo "--threads 2, fully passive waits (GOMP_SPINCOUNT=0)";;
  *) echo "--threads 2, spinning waits (GOMP_SPINCOUNT=300000)";; esac; }
run() {  # run <contender> <what>: prints one number (sample: wall seconds; train: images/s)
  local threads=${1%%|*} env=${1#*|} t0 t1
  if [ "$2" = sample ]; then
    t0=$(date +%s.%N)
    env $env "$D" --threads "$threads" --no-progress sample -o s.png > /dev/null 2> log.txt
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
  else
    rm -rf run
    env $env "$D" --threads "$threads" --no-progress train --config train.json --out run > /dev/null 2> log.txt
    grep -o "[0-9.]* images/s in training steps alone" log.txt | cut -d' ' -f1
  fi
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
"$D" --threads 1 sample -n 1 --steps 1 -o warm.png > /dev/null 2>&1  # page in LibTorch and the model
for load in idle busy; do
  if [ "$load" = busy ]; then
    sh -c 'while :; do :; done' &
    BUSY=$!
    sleep 1
  fi
  for what in sample train; do
    : > "res_${load}_${what}.txt"
    for round in $(seq 1 "$ROUNDS"); do
      for c in "${contenders[@]}"; do
        echo "$c $(run "$c" "$what")" >> "res_${load}_${what}.txt"
      done
    done
  done
  if [ -n "$BUSY" ]; then kill "$BUSY"; wait "$BUSY" 2> /dev/null || true; BUSY=""; fi
done
threads_auto() { "$D" -v --no-progress sample -n 1 --steps 1 -o a.png 2>&1 | grep -o "^debug: [0-9]* intra-op" | grep -o "[0-9]*"; }
echo "| threads | sample, idle (s) | sample, busy (s) | train, idle (img/s) | train, busy (img/s) |"
echo "|---|---|---|---|---|"
for c in "${contenders[@]}"; do
  row="| $(label "$c") |"
  for f in idle_sample busy_sample idle_train busy_train; do
    row="$row $(grep -F "$c " "res_$f.txt" | cut -d' ' -f2 | median) |"
  done
  echo "$row"
done
echo
echo "rounds: $ROUNDS; automatic thread count on this machine now (idle): $(threads_auto)"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
