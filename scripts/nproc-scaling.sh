#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Training and sampling images/s of `diffuse ... --nproc 1` vs `--nproc 2` (1 intra-op thread per
# process, the same global work), alternating in one run, with the CPU seconds of each command
# (ranks included) and a byte comparison of the two grids. Numbers: docs/distributed.md#processes.
#   scripts/nproc-scaling.sh [path/to/diffuse] [rounds]
set -eu
D=$(realpath "${1:-build/examples/cli/diffuse}")
ROUNDS=${2:-3}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
cat > tiny.json <<'J'
{"preset": "tiny", "patch": 4, "limit": 2048, "batch_size": 32, "steps": 30, "minutes": 0,
 "sample_every": 0, "sample_steps": 1, "checkpoint_every": 0, "keep_checkpoints": 1, "log_every": 10,
 "warmup": 0}
J
timed() {  # prints "wall cpu" of a command
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o cpu.txt "$@" > /dev/null 2> log.txt
  t1=$(date +%s.%N)
  read -r u s < cpu.txt
  echo "$(echo "$t1 - $t0" | bc) $(echo "$u + $s" | bc)"
}
for round in $(seq 1 "$ROUNDS"); do
  for np in 1 2; do
    rm -rf "run$np"
    read -r wall cpu < <(timed "$D" --threads 1 --no-progress train --config tiny.json --out "run$np" --nproc "$np")
    ips=$(grep -o "[0-9.]* images/s in training steps alone" log.txt | cut -d' ' -f1)
    echo "train  nproc=$np round=$round step_images_per_s=$ips wall_s=$wall cpu_s=$cpu"
  done
  for np in 1 2; do
    read -r wall cpu < <(timed "$D" --threads 1 --no-progress sample -n 80 --steps 20 --batch-size 20 --nproc "$np" -o "s$np.png")
    echo "sample nproc=$np round=$round images_per_s=$(echo "80 / $wall" | bc -l | cut -c1-6) wall_s=$wall cpu_s=$cpu"
  done
  cmp -s s1.png s2.png && echo "sample grids identical" || echo "sample grids DIFFER"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
