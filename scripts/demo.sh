#!/usr/bin/env bash
# Installs the Debian packages, builds the demo and runs it: diffuse_demo samples a Gaussian
# mixture with every registered sampler (examples/gmm_demo). Arguments go to diffuse_demo.
# Environment: DIFFUSE_BUILD_DIR (default ./build), DIFFUSE_JOBS (default nproc),
# DIFFUSE_SKIP_DEPS=1 (do not run apt-get).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

diffuse_install_deps
diffuse_configure -DDIFFUSE_BUILD_EXAMPLES=ON
cmake --build "$DIFFUSE_BUILD_DIR" -j "$(diffuse_jobs)" --target diffuse_demo
demo="$(find "$DIFFUSE_BUILD_DIR" -type f -name diffuse_demo -perm -u+x | head -n 1)"
if [ -z "$demo" ]; then
  echo "diffuse: the diffuse_demo binary was not found under $DIFFUSE_BUILD_DIR" >&2
  exit 1
fi
"$demo" "$@"
