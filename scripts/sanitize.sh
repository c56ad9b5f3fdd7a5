#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build (DIFFUSE_SANITIZE=address,undefined, Clang)
# of the test binaries that fit the CI budget, run under ctest. LibTorch, GoogleTest and the other
# Debian libraries are not instrumented; our libraries (libdiffuse, libdiffuse_training, rebuilt
# here with the sanitizers) and the tests are.
#
# Usage: scripts/sanitize.sh [test binary ...]   (default: the core, schedules and samplers tests)
# Environment: DIFFUSE_ASAN_BUILD_DIR (default ./build-asan), DIFFUSE_JOBS, DIFFUSE_SKIP_DEPS=1,
# CXX (default clang++), DIFFUSE_ASAN_WITH_FUZZ=1: build in scripts/fuzz.sh's folder and flags
# instead (-DDIFFUSE_FUZZ=ON: address + undefined as here, plus libFuzzer's coverage
# instrumentation), so that CI compiles the instrumented library once for both scripts.
#
# ASAN_OPTIONS (unless set by the caller):
#   detect_leaks=0       LibTorch keeps thread pools, allocator caches and operator registries
#                        alive until exit without freeing them; LeakSanitizer reports those as
#                        leaks of an uninstrumented library we cannot fix. Real leaks in our code
#                        are memory that stays reachable from our objects, which ASan does not
#                        see either way.
#   No container-overflow suppression is needed: libstdc++ annotates std::vector for ASan only when
#   built with _GLIBCXX_SANITIZE_VECTOR, so instrumented and uninstrumented code can share
#   containers. alloc_dealloc_mismatch stays on (no new/delete mismatch was reported in the core
#   and schedules tests).
# UBSAN_OPTIONS: print_stacktrace=1; -fno-sanitize-recover=undefined makes any report fatal.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

tests=("$@")
if [ "${#tests[@]}" -eq 0 ]; then
  tests=(diffuse_core_tests diffuse_schedules_tests diffuse_samplers_tests)
fi
if [ "${DIFFUSE_ASAN_WITH_FUZZ:-0}" = "1" ]; then
  build="${DIFFUSE_ASAN_BUILD_DIR:-${DIFFUSE_FUZZ_BUILD_DIR:-$DIFFUSE_ROOT/build-fuzz}}"
  instrument=(-DDIFFUSE_FUZZ=ON)
else
  build="${DIFFUSE_ASAN_BUILD_DIR:-$DIFFUSE_ROOT/build-asan}"
  instrument=(-DDIFFUSE_SANITIZE=address,undefined)
fi

DIFFUSE_DEB_PACKAGES+=(clang libclang-rt-14-dev)
diffuse_install_deps
# -O1, as the sanitizers' documentation advises: instrumented -O3 of the same sources took 30 %
# longer to compile (74 vs 53 s for the largest unity batch of the training library; the whole
# build 5:01 vs 4:28 on 2 cores) and ran the tests no faster (47 vs 51 s; docs/benchmarks.md,
# "CI time").
cmake -G Ninja -S "$DIFFUSE_ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DCMAKE_CXX_COMPILER="${CXX:-clang++}" "${instrument[@]}" \
  -DDIFFUSE_BUILD_TESTS=ON -DDIFFUSE_BUILD_EXAMPLES=OFF -DDIFFUSE_BUILD_BENCH=OFF -DDIFFUSE_INSTALL=OFF
targets=("${tests[@]}")
if [ "${DIFFUSE_ASAN_WITH_FUZZ:-0}" = "1" ]; then
  # One ninja run for the tests and the fuzz targets (scripts/fuzz.sh then finds them built): the
  # links and the last compiles of one overlap the compiles of the other.
  targets+=("${DIFFUSE_FUZZ_TARGETS[@]}" fuzz_make_corpus)
fi
cmake --build "$build" -j "$(diffuse_jobs)" --target "${targets[@]}"

# The statistical testbed tests (thousands of samples through the Gaussian-mixture ODE or a
# sampler, to measure a distribution error) take 25-110 s each under ASan, 80% of the sanitized
# run, and reach no code the other tests of the same samplers, corrections and ODE do not. They
# run in the normal build (scripts/test.sh); here they are skipped unless DIFFUSE_SANITIZE_ALL=1
# (or the caller sets GTEST_FILTER).
slow_under_asan="GaussianMixture.OdeInvariants:GaussianMixture.OdeMatchesSingleGaussianClosedForm"
slow_under_asan+=":EpsilonScaling.ReducesTheImperfectNetworksErrorOnTheGaussianMixture"
slow_under_asan+=":TimeShift.TestbedReducesTheFinalDistributionError"
slow_under_asan+=":AlignYourSteps.OptimisedScheduleOnTheGaussianMixture"
slow_under_asan+=":ExposureBias.ExactDenoiserHasNoVarianceGapImperfectOneHas"
slow_under_asan+=":DdpmSampler.SamplesGaussianDataWithTheExactDenoiser"
slow_under_asan+=":EpsilonScaling.ReducesTheImperfectFlowNetworksErrorOnTheFlowSchedule"
slow_under_asan+=":TimeShift.TestbedOnTheFlowSchedule"
slow_under_asan+=":AlignYourSteps.FlowScheduleOptimisesTheSameVeProblem"
slow_under_asan+=":BrownianTree.IncrementsHaveBrownianStatistics"
slow_under_asan+=":RestartSampler.KeepsTheMarginalsOnTheGaussianMixture"
slow_under_asan+=":Resampling.KeepsTheDistributionOnTheGaussianMixture"
if [ "${DIFFUSE_SANITIZE_ALL:-0}" != "1" ] && [ -z "${GTEST_FILTER:-}" ]; then
  export GTEST_FILTER="-$slow_under_asan"
  echo "sanitize: skipping the statistical testbed tests (DIFFUSE_SANITIZE_ALL=1 runs them): $slow_under_asan"
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
ctest --test-dir "$build" --output-on-failure -j "$(diffuse_jobs)" -R "$regex"
