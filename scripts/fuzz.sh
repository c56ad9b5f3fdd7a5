#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, Clang, -fsanitize=fuzzer,address,undefined) in their
# own build folder and runs each for a bounded time on a temporary copy of its seed corpus
# (tests/fuzz/corpus/<target>/ plus the seeds fuzz_make_corpus writes); the repository is never
# written to. Any crash, sanitizer report, uncaught non-diffuse::Error exception, timeout (> 30 s
# per input) or allocation over the limits below fails the script; the input is kept in
# $DIFFUSE_FUZZ_ARTIFACTS (default <build>/artifacts).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [target ...]
# The targets run DIFFUSE_JOBS at a time (default: the CPU count), each a single libFuzzer process
# for its full time, so two CPUs halve the wall time without shortening any target's run.
# Environment: DIFFUSE_FUZZ_BUILD_DIR (default ./build-fuzz; scripts/sanitize.sh with
# DIFFUSE_ASAN_WITH_FUZZ=1 builds its tests in the same folder and flags), DIFFUSE_JOBS, DIFFUSE_SKIP_DEPS=1,
# CXX (default clang++), DIFFUSE_FUZZ_SEED (libFuzzer's -seed, default 1: a CI failure replays
# with the same seed and corpus), DIFFUSE_FUZZ_LIBTORCH_ZIP=1 (fuzz_model_file also runs load_model() on
# the bytes: finds crashes inside LibTorch 1.13's TorchScript importer, so off in CI).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=("${DIFFUSE_FUZZ_TARGETS[@]}")
fi
build="${DIFFUSE_FUZZ_BUILD_DIR:-$DIFFUSE_ROOT/build-fuzz}"
artifacts="${DIFFUSE_FUZZ_ARTIFACTS:-$build/artifacts}"

DIFFUSE_DEB_PACKAGES+=(clang libclang-rt-14-dev)
diffuse_install_deps
# -O1 as in scripts/sanitize.sh, which shares this build folder in CI (same flags, no rebuild).
cmake -G Ninja -S "$DIFFUSE_ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DCMAKE_CXX_COMPILER="${CXX:-clang++}" -DDIFFUSE_FUZZ=ON -DDIFFUSE_BUILD_TESTS=OFF \
  -DDIFFUSE_BUILD_EXAMPLES=OFF -DDIFFUSE_BUILD_BENCH=OFF -DDIFFUSE_INSTALL=OFF
cmake --build "$build" -j "$(diffuse_jobs)" --target "${targets[@]}" fuzz_make_corpus

work="$(mktemp -d "${TMPDIR:-/tmp}/diffuse_fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$build/tests/fuzz/fuzz_make_corpus" "$work/generated"
mkdir -p "$artifacts"

# LibTorch is not instrumented. Its thread pools and registries are created on first use and live
# until exit, which LeakSanitizer would report on every input: leaks are not checked. See
# scripts/sanitize.sh for the other options.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1

# One target: copy its corpus, fuzz, write "<target>: ..." to $work/<target>.summary; exit status
# nonzero on a finding.
fuzz_one() {
  local t="$1" name="${1#fuzz_}" corpus log malloc_limit rc runs
  corpus="$work/$name"
  mkdir -p "$corpus"
  cp -r "$DIFFUSE_ROOT/tests/fuzz/corpus/$name/." "$corpus/" 2>/dev/null || true
  if [ -d "$work/generated/$name" ]; then cp -r "$work/generated/$name/." "$corpus/"; fi
  log="$work/$t.log"
  echo "== $t: ${seconds} s on $(ls "$corpus" | wc -l) seeds"
  # With DIFFUSE_FUZZ_LIBTORCH_ZIP=1, fuzz_model_file also feeds load_model() (LibTorch's zip
  # reader). Its unpickler reserves a string's announced length (up to 4 GiB, a uint32) before
  # checking the data holds it, a transient allocation we cannot prevent (docs/reliability.md);
  # it is never touched, so RSS stays low, and the malloc limit is raised above 4 GiB.
  malloc_limit=1024
  if [ "$t" = fuzz_model_file ]; then malloc_limit=4097; fi
  set +e
  "$build/tests/fuzz/$t" "$corpus" -max_total_time="$seconds" -seed="${DIFFUSE_FUZZ_SEED:-1}" -timeout=30 -rss_limit_mb=2560 \
    -malloc_limit_mb="$malloc_limit" -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$t-" > "$log" 2>&1
  rc=$?
  set -e
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
  if [ "$rc" -ne 0 ]; then
    echo "$t: FAILED (exit $rc) after $runs executions; input in $artifacts/" > "$work/$t.summary"
  else
    echo "$t: $runs executions in ${seconds} s, no finding" > "$work/$t.summary"
  fi
  return "$rc"
}

status=0
parallel="$(diffuse_jobs)"
pids=()
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  pids+=("$!")
  if [ "${#pids[@]}" -ge "$parallel" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for t in "${targets[@]}"; do
  if grep -q FAILED "$work/$t.summary" 2>/dev/null; then tail -n 60 "$work/$t.log"; fi
done
for t in "${targets[@]}"; do cat "$work/$t.summary" 2>/dev/null || echo "$t: no summary"; done
exit "$status"
