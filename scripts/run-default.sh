#!/usr/bin/env bash
# Set up (if needed) and run the default continual run: the embedded tiny LLaVA (pre-trained
# by mcit on first use, then cached) through the eight coin-mini tasks with ModalPrompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mcit run --config configs/coin-mini/modalprompt.yaml "$@"
