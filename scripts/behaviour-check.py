"""Behaviour check for refactors: a micro run of every registered method, dumped so that two
code versions can be compared bit for bit.

    python scripts/behaviour-check.py run OUT      # OUT/dump.json: per method, the accuracy
                                                   # matrix, every prediction file's text and
                                                   # every stage's method.safetensors sha256
    python scripts/behaviour-check.py compare A/dump.json B/dump.json

Run `run` once per version (e.g. PYTHONPATH=<a worktree of the old commit>/src for the old one),
then `compare`: it lists every method whose matrix, predictions or weights differ, and exits 1
if any does. Methods present in only one dump are listed, not compared. One thread, micro
backbone (`micro` recipe), micro coin-mini (scienceqa, gqa, grounding; 16 train / 6 test),
batch 4, 3 steps per task, seed 0: about two minutes on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path


def run(out: Path) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MCIT_CACHE"] = str(out / "cache")
    import torch

    torch.set_num_threads(1)
    from mcit.config import load_config
    from mcit.data.synthetic.coin_mini import generate_coin_mini
    from mcit.methods.base import method_names
    from mcit.pretrain.recipes import DEFAULT_RECIPE, RECIPES
    from mcit.pretrain.shipped import ensure_tiny_backbone
    from mcit.runner import run as run_method

    default = asdict(RECIPES[DEFAULT_RECIPE])
    micro = {k: v for k, v in asdict(RECIPES["micro"]).items() if v != default[k]}
    ensure_tiny_backbone(RECIPES["micro"], progress=False)
    order = ["scienceqa", "gqa", "grounding"]
    bench = generate_coin_mini(
        out / "bench", seed=0, order=order, train_size=16, test_size=6, progress=False
    )
    dump = {}
    for name in method_names():
        overrides = [
            f"data.benchmark={bench}",
            f"output_dir={out / 'runs'}",
            f"method.name={name}",
            f"name=micro-{name}",
            "train.batch_size=4",
            "train.max_steps_per_task=3",
            "train.lr=0.001",
            "eval.batch_size=4",
            "eval.max_new_tokens=24",
            f"model.backbone.tiny={micro}",
        ]
        results = run_method(load_config(None, overrides), progress=False)
        matrix = results.matrix if hasattr(results, "matrix") else results["matrix"]
        run_dir = out / "runs" / f"micro-{name}"
        dump[name] = {
            "matrix": matrix,
            "predictions": {
                str(p.relative_to(run_dir)): p.read_text()
                for p in sorted((run_dir / "predictions").rglob("*.jsonl"))
            },
            "weights": {
                str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(run_dir.glob("stage_*/method.safetensors"))
            },
        }
        print(name, matrix[-1], flush=True)
    (out / "dump.json").write_text(json.dumps(dump, indent=1))
    print(f"wrote {out / 'dump.json'}")


def compare(a_path: Path, b_path: Path) -> int:
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    differ = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {a_path if name in a else b_path}")
            continue
        parts = [k for k in ("matrix", "predictions", "weights") if a[name][k] != b[name][k]]
        files = len(a[name]["predictions"]), len(a[name]["weights"])
        print(f"{name}: {'DIFFERS in ' + ', '.join(parts) if parts else 'identical'} "
              f"({files[0]} prediction files, {files[1]} weight files)")  # fmt: skip
        differ += bool(parts)
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
