#!/usr/bin/env bash
# The test command (README; .ci/run calls it): install/build, then the whole suite.
# Benchmarks run once, untimed (--benchmark-disable in pyproject.toml); extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m pytest "$@"
