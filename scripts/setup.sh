#!/usr/bin/env bash
# Installs every Debian package that zeroplan's build, tests and tools use.
# Idempotent and quiet: packages already present are skipped, so a second run
# takes well under a second.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git clang-format
  # core
  libyaml-cpp-dev nlohmann-json3-dev libboost-graph-dev libcli11-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # exec: libtorch with c10d's Gloo; OpenBLAS so libtorch's matrix products
  # do not fall back to the reference BLAS
  libtorch-dev libgloo-dev libopenblas0-pthread
  # tools/export_model.py and its test run on Debian's torch
  python3 python3-torch
  # gui and its headless screenshot test
  libimgui-dev libglfw3-dev xvfb xauth libgl1-mesa-dri
  # the viewer's screenshots: stb_image_write (and stb_image in the test)
  libstb-dev
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$status" == ii* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${#missing[@]} package(s): ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the index only when an install fails on a stale or empty one.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# libtorch picks its BLAS through Debian's alternatives; make sure OpenBLAS
# wins over the reference implementation.
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
for alt in "libblas.so.3-$arch" "liblapack.so.3-$arch"; do
  best=$(update-alternatives --list "$alt" 2>/dev/null | grep -m1 openblas-pthread || true)
  current=$(readlink -f "/etc/alternatives/$alt" 2>/dev/null || true)
  if [[ -n "$best" && "$current" != "$(readlink -f "$best")" && $(id -u) -eq 0 ]]; then
    update-alternatives --quiet --set "$alt" "$best"
  fi
done
