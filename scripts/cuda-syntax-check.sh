#!/usr/bin/env bash
# Compile-checks (g++ -fsyntax-only, -Werror) the code that is built only against a CUDA LibTorch
# (DIFFUSE_CUDA: include/diffuse/cuda_graph.h and src/cuda_graph.cpp, the NCCL path of
# training/distributed.h, the autocast trainer, bench/gpu.cpp, tests/gpu/*.cpp) on a machine whose
# LibTorch is CPU-only: with
# DIFFUSE_WITH_CUDA and USE_C10D_NCCL defined, against this LibTorch's CUDA / c10d headers and the
# CUDA toolkit's headers (nothing is linked or run; scripts/gpu-check does that on a GPU machine).
# It keeps the CUDA-only code from breaking unseen when the CPU code changes. Needs a configured
# build folder (for the generated include/ folder): run after scripts/test.sh.
#
# Usage: scripts/cuda-syntax-check.sh    Environment: DIFFUSE_BUILD_DIR, CUDA_HOME (/usr/local/cuda)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${DIFFUSE_BUILD_DIR:-$root/build}"
cuda="${CUDA_HOME:-/usr/local/cuda}"
torch_inc="$(dirname "$(dirname "$(find /usr/include /usr/local/include /usr/lib -path '*ATen/ATen.h' -print -quit 2>/dev/null)")")"

if [ ! -f "$cuda/include/cuda_runtime_api.h" ]; then
  echo "cuda-syntax-check: no CUDA toolkit headers at $cuda/include; skipped" >&2
  exit 0
fi
if [ ! -f "$torch_inc/c10/cuda/CUDAStream.h" ] || [ ! -f "$torch_inc/ATen/cuda/CUDAGraph.h" ]; then
  echo "cuda-syntax-check: this LibTorch ($torch_inc) has no CUDA headers; skipped" >&2
  exit 0
fi
if [ ! -d "$build/generated/diffuse" ]; then
  echo "cuda-syntax-check: $build is not a configured build folder (run scripts/test.sh first)" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/diffuse_cuda_check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# A CPU-only LibTorch ships the c10/cuda headers but not the CMake-generated macros header.
mkdir -p "$work/stub/c10/cuda/impl"
if [ ! -f "$torch_inc/c10/cuda/impl/cuda_cmake_macros.h" ]; then
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$work/stub/c10/cuda/impl/cuda_cmake_macros.h"
fi

flags=(-std=c++17 -fsyntax-only -Wall -Wextra -Wno-unused-parameter -Werror
  -DDIFFUSE_WITH_CUDA -DUSE_C10D_NCCL -DUSE_C10D_GLOO -DUSE_DISTRIBUTED
  -DSPDLOG_FMT_EXTERNAL -DSPDLOG_COMPILED_LIB -DSPDLOG_SHARED_LIB -DFMT_SHARED -DDIFFUSE_ASSET_DIR=\"x\"
  -I"$work/stub" -I"$root/include" -I"$build/generated" -I"$root/tests"
  -isystem "$cuda/include" -isystem "$torch_inc/torch/csrc/api/include" -isystem /usr/include/eigen3)

cat > "$work/library.cpp" <<CPP
#include <diffuse/cuda_graph.h>
#include <diffuse/training/dit.h>
#include <diffuse/training/distributed.h>
#if !DIFFUSE_HAS_NCCL
#error "the NCCL path of distributed.h was not compiled"
#endif
void use(diffuse::CudaGraphSampler& g, const diffuse::Tensor& n) { (void)g.run(n, 3); }
void use2(diffuse::DistributedContext& c, std::vector<diffuse::Tensor>& v) {
  c.all_reduce_mean(v);
  c.broadcast(v);
  c.barrier();
  (void)c.all_gather(v.front());
}
template class diffuse::Trainer<diffuse::DiT>;
#define main bench_main
#include "$root/bench/gpu.cpp"
CPP
# One g++ per file, as many at once as there are cores (each is a single-threaded compile).
check_one() {
  local f="$1"
  if g++ "${flags[@]}" "$f"; then
    echo "cuda-syntax-check: ok   ${f#"$root"/}"
  else
    echo "cuda-syntax-check: FAIL ${f#"$root"/}" >&2
    return 1
  fi
}
jobs="${DIFFUSE_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}"
status=0
pids=()
for f in "$work/library.cpp" "$root/src/cuda_graph.cpp" "$root"/tests/gpu/*.cpp; do
  check_one "$f" &
  pids+=("$!")
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
