#!/usr/bin/env bash
# Installs the Debian packages, builds the `diffuse` command-line tool and runs it. With no
# arguments: `diffuse sample`, 40 Fashion-MNIST images from the shipped model written to
# diffuse_samples.png (+ diffuse_samples.json, the settings that regenerate it) in the current
# directory. With arguments: `diffuse <arguments>` (e.g. `bash scripts/demo.sh sample --help`).
# Environment: DIFFUSE_BUILD_DIR (default ./build), DIFFUSE_JOBS (default nproc),
# DIFFUSE_SKIP_DEPS=1 (do not run apt-get).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

diffuse_install_deps
diffuse_configure -DDIFFUSE_BUILD_EXAMPLES=ON
cmake --build "$DIFFUSE_BUILD_DIR" -j "$(diffuse_jobs)" --target diffuse_launcher
cli="$DIFFUSE_BUILD_DIR/examples/cli/diffuse"
if [ ! -x "$cli" ]; then
  echo "diffuse: the diffuse binary was not found at $cli" >&2
  exit 1
fi
if [ "$#" -eq 0 ]; then
  exec "$cli" sample
fi
exec "$cli" "$@"
