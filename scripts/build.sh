#!/usr/bin/env bash
# Installs what the build needs (scripts/setup.sh), configures build/ on first use and builds
# everything there. Quiet: the compiler's output goes to build/build.log and is shown on failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${ZEROPLAN_BUILD_DIR:-$root/build}

"$root/scripts/setup.sh"
mkdir -p "$build"
if [[ ! -f "$build/build.ninja" ]]; then
  echo "zeroplan: configuring $build" >&2
  if ! cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DZEROPLAN_WERROR=ON \
      >"$build/configure.log" 2>&1; then
    tail -n 40 "$build/configure.log" >&2
    echo "zeroplan: configuring failed; the whole log is $build/configure.log" >&2
    exit 1
  fi
  grep -h '^-- zeroplan:' "$build/configure.log" >&2 || true
fi
if ! ninja -C "$build" -n 2>/dev/null | grep -q 'no work to do'; then
  echo "zeroplan: building (the first build takes a few minutes)" >&2
fi
if ! ninja -C "$build" >"$build/build.log" 2>&1; then
  grep -E -A12 'error|FAILED' "$build/build.log" | head -n 60 >&2
  echo "zeroplan: the build failed; the whole log is $build/build.log" >&2
  exit 1
fi
