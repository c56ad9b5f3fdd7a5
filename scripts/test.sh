#!/usr/bin/env bash
# Installs the Debian packages, builds everything with warnings as errors and runs every test
# (unit tests, the header-only smoke test, the examples' build and the package consumer tests).
# Environment: DIFFUSE_BUILD_DIR (default ./build), DIFFUSE_JOBS (default nproc),
# DIFFUSE_SKIP_DEPS=1 (do not run apt-get).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

diffuse_install_deps
diffuse_configure -DDIFFUSE_WARNINGS_AS_ERRORS=ON -DDIFFUSE_BUILD_TESTS=ON -DDIFFUSE_BUILD_EXAMPLES=ON \
  -DDIFFUSE_INSTALL=ON
cmake --build "$DIFFUSE_BUILD_DIR" -j "$(diffuse_jobs)"
ctest --test-dir "$DIFFUSE_BUILD_DIR" --output-on-failure -j "$(diffuse_jobs)"
