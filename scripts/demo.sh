#!/usr/bin/env bash
# The main job (README): install/build, then optimize a bundled ResNet-50 and compare it with
# the dense model in PyTorch eager and ONNX Runtime, side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m engine demo "$@"
