#!/usr/bin/env bash
# Create .venv and install samgeo-pipeline with its test and workflow extras.
# torch is installed first and pinned: a plain `pip install torch` would pull a multi-GB CUDA build
# on machines without a local CPU wheel. Set TORCH_SPEC to choose another (e.g. a CUDA build on a GPU worker).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[test,flows]"
echo "installed: $(.venv/bin/samgeo-pipeline --help >/dev/null && echo samgeo-pipeline) in .venv"
