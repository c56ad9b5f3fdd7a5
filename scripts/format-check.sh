#!/usr/bin/env bash
# Checks that every C++ source and header in the repository is formatted as clang-format writes it
# (.clang-format: Google style, 100 columns). Debian 12's clang-format 14 is the reference version:
# other versions may break some lines differently.
#
# Usage: scripts/format-check.sh         check; list the files that differ and exit 1
#        scripts/format-check.sh --fix   rewrite them in place
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

DIFFUSE_DEB_PACKAGES=(clang-format git)
diffuse_install_deps
cd "$DIFFUSE_ROOT"
mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' | grep -v '^tests/fuzz/corpus/')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i --style=file "${files[@]}"
  echo "format-check: formatted ${#files[@]} files"
  exit 0
fi
# A broken .clang-format must fail here, not pass as "no file differs".
clang-format --style=file --dump-config > /dev/null
# One clang-format process per 32 files, as many at once as there are cores; a file that differs
# makes clang-format print "<file>:<line>:<col>: error: code should be clang-formatted".
mapfile -t bad < <(printf '%s\0' "${files[@]}" |
  xargs -0 -n 32 -P "$(diffuse_jobs)" clang-format --style=file --dry-run --Werror 2>&1 |
  grep -o '^[^:]*:[0-9]*:[0-9]*: error: code should be clang-formatted' | cut -d: -f1 | sort -u || true)
if [ "${#bad[@]}" -ne 0 ]; then
  echo "format-check: ${#bad[@]} of ${#files[@]} files differ from clang-format (fix: scripts/format-check.sh --fix):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format-check: all ${#files[@]} C++ files are formatted"
