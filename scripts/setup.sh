#!/usr/bin/env bash
# Create .venv and install mcit with its pinned dependencies. torch is installed first, on its
# own, so pip takes the local CPU wheel (2.13.0+cpu) and never resolves a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import torch, mcit; assert torch.__version__.startswith('2.13.0'), torch.__version__"
