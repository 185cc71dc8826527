"""Inference cost against the number of learned tasks T (the claim that prompt selection keeps it flat).

For each T (ascending) every method is brought to T learned tasks by replaying its stage plan
without training (`mcit.bench.replay`; a method whose finished stages are not the first stages
of the plan for T — a joint method — is built afresh), then all methods are timed at batch 1,
interleaved with the base model, in the same rounds.

Growth is read two ways against a reference T (8 when measured, else the smallest): the raw
ratio of median latencies, and the ratio of the pair-by-pair "× base" medians, which cancels a
change of machine speed between the blocks of rounds of different T (the blocks cannot be
interleaved: a method holds one T at a time).
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import set_seed

from mcit.bench.calls import inference_call, probe_generation
from mcit.bench.lineup import MethodSpec, build_on
from mcit.bench.replay import TaskReplay
from mcit.bench.timing import Clock, MemoryProbe, interleaved_rounds, paired_ratio, summarize
from mcit.data.collate import Batch
from mcit.methods.base import ContinualMethod
from mcit.models.backbone import Backbone
from mcit.runner import count_parameters

REFERENCE_TASKS = 8


def reference_tasks(tasks: list[int]) -> int:
    return REFERENCE_TASKS if REFERENCE_TASKS in tasks else min(tasks)


def growth(entries: list[dict[str, Any]], reference: int) -> dict[str, Any]:
    """Per T: median latency over that at the reference T, raw and relative to the base."""
    ref = next(e for e in entries if e["tasks"] == reference)
    out: dict[str, Any] = {"reference_tasks": reference, "raw": [], "base_normalised": []}
    for e in entries:
        out["raw"].append(e["latency_s"]["median"] / ref["latency_s"]["median"])
        if e.get("vs_base") and ref.get("vs_base"):
            out["base_normalised"].append(
                e["vs_base"]["time"]["median"] / ref["vs_base"]["time"]["median"]
            )
        else:
            out["base_normalised"].append(None)
    return out


def measure_scaling(
    backbone: Backbone,
    specs: list[MethodSpec],
    tasks: list[int],
    batch: Batch,
    new_tokens: int,
    device: torch.device,
    rounds: int,
    warmup: int,
    clock: Clock,
    memory: MemoryProbe,
    seed: int = 0,
    progress: bool = False,
    base: str | None = None,
) -> dict[str, Any]:
    """Latency at batch 1 for each T in `tasks`, every method in `specs`; each also relative
    to the method labelled `base` (the base model) measured in the same rounds."""
    held: dict[str, tuple[ContinualMethod, TaskReplay]] = {}
    entries: dict[str, list[dict[str, Any]]] = {spec.label: [] for spec in specs}
    for n_tasks in sorted(tasks):
        for spec in specs:
            method, replay = held.get(spec.label, (None, None))
            if replay is None or not replay.can_reach(n_tasks):
                held.pop(spec.label, None)
                set_seed(seed)
                method = build_on(backbone, spec, device)
                replay = TaskReplay(method)
            stages = replay.advance(n_tasks)
            method.eval()
            held[spec.label] = (method, replay)
            _, total = count_parameters(method)
            entries[spec.label].append(
                {
                    "tasks": n_tasks,
                    "stages": stages,
                    "parameters": total,
                    **probe_generation(method, batch, new_tokens),
                }
            )
        measured = interleaved_rounds(
            {
                label: inference_call(method, batch, new_tokens)
                for label, (method, _) in held.items()
            },
            rounds,
            warmup,
            clock,
            memory,
            progress=progress,
            desc=f"bench scaling T={n_tasks}",
        )
        for label, m in measured.items():
            entry = entries[label][-1]
            entry["latency_s"] = summarize(m.seconds).to_dict()
            entry["vs_base"] = (
                paired_ratio(m.seconds, measured[base].seconds).to_dict()
                if base in measured and label != base
                else None
            )
    reference = reference_tasks(tasks)
    return {
        "batch": int(batch.input_ids.shape[0]),
        "new_tokens": new_tokens,
        "tasks": sorted(tasks),
        "reference_tasks": reference,
        "methods": entries,
        "growth": {label: growth(e, reference) for label, e in entries.items()},
    }
