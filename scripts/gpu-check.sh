#!/usr/bin/env bash
# The GPU check of the papers' setup, sized for a short slot of GPU time (about 8 minutes on one
# H100/H200, an estimate: not yet run on a GPU): ModalPrompt, MoELoRA and finetune-lora on
# LLaVA-1.5-7B-shaped random weights, under DDP and DeepSpeed ZeRO-2 (FSDP and ZeRO-3 are refused
# by mcit: docs/real-llava.md): a few training steps, save, resume, generate; peak GPU memory
# beside the papers' 14.1 GB (ModalPrompt) and 15.6 GB (MoELoRA). Writes one JSON
# (scripts/gpu-check.py says what is in it).
#
#   bash scripts/gpu-check.sh [OUT.json] [--cpu] [gpu-check.py options]
#
# On a GPU machine: install torch 2.13.0 from the CUDA index first, then `pip install -e '.[dev]'`
# (bench-gpu.sh says the same). --cpu: the same steps on the CPU at tiny scale (a dry run).
# Commit the JSON of a GPU run under docs/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/gpu-check/gpu-check.json
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then OUT=$1; shift; fi
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [[ " $* " != *" --cpu "* ]]; then
    "$PY" -c "import sys, torch; torch.cuda.is_available() or sys.exit(
        f'gpu-check.sh: no CUDA device visible to torch {torch.__version__}; --cpu for the dry run')"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" scripts/gpu-check.py "$OUT" "$@"
