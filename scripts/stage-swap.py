"""Where a pool method's forgetting comes from: score one task of a finished run with the
pool's keys taken from one stage and its prompts from another.

A prompt-pool method (Fwd-Prompt, L2P) can lose an old task in two ways after learning a new
one: its samples select other prompts (the keys moved), or the prompts they select changed.
Keys of stage a with prompts of stage b tells the two apart: with the keys of the later stage
and the prompts of the earlier one the task comes back if the prompts moved; with the prompts
of the later stage and the keys of the earlier one it stays lost.

    .venv/bin/python scripts/stage-swap.py RUN TASK A,B [A,B ...]
    # e.g. RUN=runs/compare-coin-mini/fwd-prompt TASK=textvqa 2,2 2,3 3,2 3,3

Every other tensor of the method state (the bases, ranks) comes with the prompts (stage B).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mcit.data.collate import Collator
from mcit.evaluation.evaluator import evaluate_task
from mcit.predict import load_trained
from mcit.runner import load_stream, make_accelerator
from mcit.train.checkpoint import load_stage

KEYS = ("image_keys", "text_keys", "keys")  # Fwd-Prompt's two, L2P's one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder of a pool method")
    parser.add_argument("task", help="the task to score, by name")
    parser.add_argument("pairs", nargs="+", help="A,B: keys of stage A, prompts of stage B")
    args = parser.parse_args()
    # Restored (and verified) as `mcit predict` restores it; a pool's tensors keep their shape
    # from stage to stage, so any stage's state loads into it.
    config, method, _, _ = load_trained(args.run)
    task = next((t for t in load_stream(config) if t.name == args.task), None)
    if task is None:
        parser.error(f"task {args.task!r} is not in the run's stream")
    collate, accelerator = Collator(method.backbone), make_accelerator(config)
    for pair in args.pairs:
        keys_stage, prompts_stage = (int(x) for x in pair.split(","))
        keys, _ = load_stage(args.run / f"stage_{keys_stage}")
        state, _ = load_stage(args.run / f"stage_{prompts_stage}")
        names = [k for k in KEYS if k in state]
        if not names:
            parser.error(f"{args.run}: no pool keys in the method state ({sorted(state)})")
        method.load_method_state({**state, **{k: keys[k] for k in names}})
        with torch.no_grad():
            result = evaluate_task(method, task, collate, config.eval, accelerator, False)
        print(
            f"{args.task}: keys of stage {keys_stage}, prompts of stage {prompts_stage}: "
            f"{result.score:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
