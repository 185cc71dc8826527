#!/usr/bin/env bash
# The whole efficiency bench on a CUDA machine: every registered method side by side, bf16,
# CUDA-event timing, peak GPU memory, and the scaling over T = 1 … 64 learned tasks.
#
# Needs a Python environment with mcit installed over a CUDA build of torch 2.13.0
# (scripts/setup.sh installs the CPU wheel: on a GPU machine install torch first from the CUDA
# index, then `pip install -e .`). The tiny backbone is pre-trained on first use (CPU, cached).
#
#   bash scripts/bench-gpu.sh [OUT.json] [mcit bench options] [key=value overrides]
#   bash scripts/bench-gpu.sh runs/bench/llava.json model.backbone.name=hf \
#       model.backbone.path=/models/llava-1.5-7b-hf \
#       model.backbone.clip_path=/models/clip-vit-large-patch14-336 data.benchmark=/data/coin
#
# Writes OUT.json (schema: docs/bench.md), OUT.md with the tables, plots/bench-scaling.png
# beside it, and OUT.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bench/gpu.json}
[ $# -gt 0 ] && shift
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
"$PY" - <<'PYCHECK'
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"bench-gpu.sh: no CUDA device visible to torch {torch.__version__}; "
             "run `mcit bench` for the CPU bench")
print(f"bench-gpu.sh: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
PYCHECK
mkdir -p "$(dirname "$OUT")"
"$PY" -m mcit bench \
    --tasks 1,2,4,8,16,32,64 --rounds 20 --warmup 3 --infer-batch 16 --dtype bfloat16 \
    --json "$OUT" --markdown "${OUT%.json}.md" "$@" 2>&1 | tee "${OUT%.json}.log"
