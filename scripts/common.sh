# Shared by scripts/test.sh, scripts/demo.sh and .ci/run (sourced, not run).
# Installs the Debian packages the build needs and configures the build directory.

DIFFUSE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIFFUSE_BUILD_DIR="${DIFFUSE_BUILD_DIR:-$DIFFUSE_ROOT/build}"

# Everything the library, tests, examples and benchmarks need (Debian 12 "bookworm" names).
# libopenblas0-openmp: LibTorch's BLAS, built against the same OpenMP runtime as LibTorch.
DIFFUSE_DEB_PACKAGES=(
  g++ cmake ninja-build
  libtorch-dev libopenblas0-openmp
  libgtest-dev libbenchmark-dev
  libcli11-dev libeigen3-dev libfmt-dev libspdlog-dev nlohmann-json3-dev
  zlib1g-dev libstb-dev
  libgloo-dev
  dataset-fashion-mnist
)

diffuse_install_deps() {
  if [ "${DIFFUSE_SKIP_DEPS:-0}" = "1" ]; then
    echo "diffuse: DIFFUSE_SKIP_DEPS=1, not installing packages"
    return 0
  fi
  if ! command -v dpkg-query > /dev/null; then
    echo "diffuse: not a Debian system; install LibTorch, CMake, Ninja and GoogleTest yourself" >&2
    return 0
  fi
  local missing=()
  local pkg
  for pkg in "${DIFFUSE_DEB_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "diffuse: all Debian packages are installed"
    return 0
  fi
  echo "diffuse: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}

# diffuse_configure [extra cmake args...]
diffuse_configure() {
  cmake -G Ninja -S "$DIFFUSE_ROOT" -B "$DIFFUSE_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@"
}

# The libFuzzer targets of tests/fuzz/ (scripts/fuzz.sh runs them; scripts/sanitize.sh builds
# them too when it shares the fuzzing build).
DIFFUSE_FUZZ_TARGETS=(fuzz_safetensors fuzz_model_file fuzz_config fuzz_images)

diffuse_jobs() {
  # GNU nproc honours OMP_NUM_THREADS / OMP_THREAD_LIMIT: ignore them here (fuzz.sh sets
  # OMP_NUM_THREADS=1 for its targets, which made it run them one at a time).
  echo "${DIFFUSE_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}"
}
