#!/usr/bin/env bash
# Experiment 3 of docs/experiments.md (not a CI test): an epsilon-prediction DiT (discrete DDPM
# schedule, uniform t) against a flow-matching DiT (flow schedule, velocity target, logit-normal
# noise levels) of the same size, trained for the same wall-clock on this machine's 2 cores: the two
# runs train at the same time with one thread each (equal compute), same seed, same config
# otherwise (`diffuse train` defaults: tiny DiT, patch 4, batch 64, lr 3e-4, EMA 0.9999). Then FD /
# precision / recall of EMA samples against the test split at 5/10/20/50 steps with DPM-Solver++ 2M
# and Euler, unguided and with CFG 2, each schedule on its default spacing (linspace / flow_match).
# Usage: bash scripts/experiment_flow.sh [output dir (default ./experiments_out/flow)] [minutes (default 15)] [samples per setting (default 1000)]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT="${1:-$PWD/experiments_out/flow}"
MIN="${2:-15}"
N="${3:-1000}"
diffuse_install_deps
diffuse_configure
cmake --build "$DIFFUSE_BUILD_DIR" -j "$(diffuse_jobs)" --target diffuse_cli diffuse_launcher
BIN="$DIFFUSE_BUILD_DIR/examples/cli/diffuse"
mkdir -p "$OUT"
common=(--set "minutes=$MIN" --set seed=0 --set sample_every=0 --set log_every=100)
echo "== training: epsilon vs flow matching ($MIN min each, concurrently, one thread each)"
"$BIN" --threads 1 --no-progress train --out "$OUT/eps" --set objective=denoising "${common[@]}" \
  > "$OUT/eps.log" 2>&1 &
"$BIN" --threads 1 --no-progress train --out "$OUT/flow" --set objective=flow_matching "${common[@]}" \
  > "$OUT/flow.log" 2>&1 &
wait
echo "== evaluation: FD / precision / recall vs NFE"
for m in eps flow; do
  "$BIN" --threads "$(diffuse_jobs)" --no-progress eval --model "$OUT/$m/model.pt" \
    -s dpm_solver_pp,euler --steps 5,10,20,50 --cfg 1,2 -n "$N" -o "$OUT/eval_$m" --resume \
    > "$OUT/eval_$m.log" 2>&1
done
for m in eps flow; do
  echo "-- $m"
  grep -E 'finished|time budget|steps' "$OUT/$m.log" | tail -2 || true
  cat "$OUT/eval_$m"/*.md 2>/dev/null || tail -20 "$OUT/eval_$m.log"
done
