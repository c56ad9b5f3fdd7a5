#!/usr/bin/env bash
# The training experiments of docs/experiments.md (not a CI test): tiny DiTs on Fashion-MNIST on
# this machine's 2 CPU cores. Two pairs of runs; the two runs of a pair train at the same time with
# one thread each, so they share the machine equally and "equal wall-clock" means equal compute.
#   pair 1 (patch 4, tiny DiT, epsilon prediction): standard objective vs input perturbation (DDPM-IP,
#          gamma = 0.1), 20 minutes each;
#   pair 2 (patch 4, mini DiT, v prediction): plain DiT vs MaskDiT (mask ratio 0.5, 2-block decoder
#          of width 64) for 18 minutes + 2 minutes of unmasking fine-tune (mask ratio 0), 20 minutes
#          each in all.
# Each run ends with FD / precision / recall of 1000 EMA samples against the test split.
# Usage: bash scripts/experiments.sh [output dir (default ./experiments_out)] [minutes (default 20)] [pairs (default "1 2")]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT="${1:-$PWD/experiments_out}"
MIN="${2:-20}"
PAIRS="${3:-1 2}"
diffuse_install_deps
diffuse_configure
cmake --build "$DIFFUSE_BUILD_DIR" -j "$(diffuse_jobs)" --target diffuse_example_train_dit
BIN="$DIFFUSE_BUILD_DIR/examples/train_dit/diffuse_example_train_dit"
mkdir -p "$OUT"
common=(--threads 1 --seed 0 --no-progress --log-every 100 --sample-every 0 --checkpoint-every 2000)
unmask=$(python3 -c "print(round($MIN * 0.1, 3))")
masked=$(python3 -c "print(round($MIN - $MIN * 0.1, 3))")

if [[ " $PAIRS " == *" 1 "* ]]; then
echo "== pair 1: standard vs input perturbation ($MIN min each, concurrently)"
"$BIN" "${common[@]}" --eval 1000 --preset tiny --patch 4 --minutes "$MIN" --objective denoising \
  --out "$OUT/standard" > "$OUT/standard.log" 2>&1 &
"$BIN" "${common[@]}" --eval 1000 --preset tiny --patch 4 --minutes "$MIN" --objective ddpm_ip \
  --out "$OUT/ip" > "$OUT/ip.log" 2>&1 &
wait
fi

if [[ " $PAIRS " == *" 2 "* ]]; then
echo "== pair 2: plain DiT vs MaskDiT ($MIN min each, concurrently)"
"$BIN" "${common[@]}" --eval 1000 --preset mini --patch 4 --minutes "$MIN" --objective denoising:prediction_type=v_prediction \
  --out "$OUT/unmasked" > "$OUT/unmasked.log" 2>&1 &
(
  "$BIN" "${common[@]}" --preset mini --patch 4 --decoder-width 64 --minutes "$masked" \
    --objective maskdit:mask_ratio=0.5 --out "$OUT/masked" > "$OUT/masked.log" 2>&1
  last=$(ls "$OUT/masked/checkpoints"/ckpt_*.pt | sort | tail -1)
  "$BIN" "${common[@]}" --eval 1000 --preset mini --patch 4 --decoder-width 64 --minutes "$unmask" --warmup 0 --lr 1.5e-4 \
    --objective maskdit:mask_ratio=0 --init-from "$last" --out "$OUT/masked_unmask" > "$OUT/masked_unmask.log" 2>&1
) &
wait
fi
echo "== results"
for r in standard ip unmasked masked_unmask; do
  echo "-- $r"; grep -E 'time budget|finished after|eval on' "$OUT/$r.log" || true
done
