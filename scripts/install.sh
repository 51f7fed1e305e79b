#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine (apt + pip) and builds the kernels.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
need=()
for tool in cmake g++ make git; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
# arm64: the cross compiler and qemu-user (artifacts and NEON kernels are checked under qemu)
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing apt packages: ${need[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
"$PY" -m pip install -q --disable-pip-version-check -r requirements.txt
# --no-build-isolation: the build needs no torch, and an isolated build env must never fetch it.
"$PY" -m pip install -q --disable-pip-version-check --no-build-isolation -e .
bash scripts/fetch_aarch64_runtime.sh >/dev/null
"$PY" -c "import engine._kernels as k; print('engine kernels:', k.available_isas(), 'best:', k.best_isa())"
