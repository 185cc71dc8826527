"""`mcit bench`: every method's cost, measured side by side in one process.

Phases, all on identical batches and the same backbone:
1. parameters — trainable and total, in each method's training state at stage `stage` of a
   stream (per-task state created by replaying `begin_task`/`end_task`, `mcit.bench.replay`);
2. training — one optimizer step as the trainer takes it (loss, backward, the method's
   `before_optimizer_step`, clipping, AdamW) on a fixed collated batch;
3. inference — greedy generation of exactly `new_tokens` tokens (EOS suppressed until then,
   `Backbone.exact_new_tokens`) at batch 1 and a larger batch, after `stage` tasks;
4. scaling — inference latency at batch 1 with T = 1 … 64 learned tasks (`mcit.bench.scaling`);
5. the LLaVA-1.5-7B parameter accounting (`mcit.bench.params`), without weights.

Timed calls exclude collation (tokenising, decoding images): every method gets the same
collated tensors. Caches that would make a repeated input cheaper than a new one — the guidance
encoders' feature caches — are emptied before every timed call. Methods are interleaved in
rounds and compared with the base model and MoELoRA pair by pair (`mcit.bench.timing`).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from mcit.bench.calls import TrainStep, inference_call, probe_generation
from mcit.bench.lineup import (
    MethodSpec,
    build_on,
    default_method_configs,
    reference_methods,
    resolve_methods,
)
from mcit.bench.params import count_method, paper_accounting
from mcit.bench.replay import TaskReplay
from mcit.bench.scaling import measure_scaling
from mcit.bench.schema import SCHEMA
from mcit.bench.timing import (
    MB,
    Call,
    Clock,
    Measurements,
    MemoryProbe,
    interleaved_rounds,
    paired_ratio,
    summarize,
)
from mcit.config import RunConfig
from mcit.data.collate import Collator
from mcit.data.sample import Sample, Task
from mcit.errors import ConfigError
from mcit.methods.base import ContinualMethod
from mcit.models.backbone import load_backbone
from mcit.runner import load_stream, make_accelerator, manifest

DEFAULT_TASKS = [1, 2, 4, 8, 16, 32, 64]
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class BenchSettings:
    methods: list[str] | None = None  # registry names or run-config YAMLs; None = every method
    tasks: list[int] = field(default_factory=lambda: list(DEFAULT_TASKS))  # scaling; [] = none
    scaling_methods: list[str] | None = None  # labels measured in the scaling; None = all
    rounds: int = 10
    warmup: int = 2
    stage: int = 8  # parameters/training at task `stage`, inference after `stage` tasks
    train_batch: int | None = None  # default: the config's train.batch_size
    infer_batch: int = 16  # the larger inference batch (batch 1 is always measured)
    new_tokens: int | None = None  # default: the config's eval.max_new_tokens
    task: str | None = None  # whose samples form the batches; default: the stream's first
    # Folder of <method>.yaml giving each method's args; "none": the methods' defaults;
    # None: `default_method_configs` (the shipped coin-mini configs for the tiny backbone).
    method_configs: str | None = None
    dtype: str = "auto"  # auto: bfloat16 on a GPU, float32 on a CPU
    paper: bool = True  # add the LLaVA-1.5-7B accounting

    def check(self) -> None:
        problems = {
            "--rounds": self.rounds >= 1,
            "--warmup": self.warmup >= 0,
            "--stage": self.stage >= 1,
            "--infer-batch": self.infer_batch >= 1,
            "--train-batch": self.train_batch is None or self.train_batch >= 1,
            "--new-tokens": self.new_tokens is None or self.new_tokens >= 1,
            "--tasks": all(t >= 1 for t in self.tasks),
        }
        for flag, ok in problems.items():
            if not ok:
                raise ConfigError(f"{flag}: must be at least {0 if flag == '--warmup' else 1}")
        if self.dtype not in DTYPE_CHOICES:
            raise ConfigError(f"--dtype: '{self.dtype}' is not one of {list(DTYPE_CHOICES)}")


# ---------------------------------------------------------------------------- batches
def prompt_length(collate: Collator, sample: Sample) -> int:
    return len(collate.encode(sample, with_answer=False)[0])


def pick_samples(task: Task, collate: Collator, n: int) -> list[Sample]:
    """`n` distinct samples of `task` sharing one prompt length (the most common one) where the
    task has that many, else the `n` nearest to it in length (then the batch is left-padded)."""
    pool = list({s.id: s for s in [*task.test, *task.train]}.values())
    if len(pool) < n:
        raise ConfigError(
            f"task {task.name} has {len(pool)} samples; the bench batch needs {n} "
            f"(lower --infer-batch or raise data.test_per_task)"
        )
    lengths = [prompt_length(collate, s) for s in pool]
    counts = {length: lengths.count(length) for length in lengths}
    mode = min(counts, key=lambda length: (-counts[length], length))
    order = sorted(range(len(pool)), key=lambda i: (abs(lengths[i] - mode), i))
    return [pool[i] for i in order[:n]]


def pick_task(tasks: list[Task], name: str | None) -> Task:
    if name is None:
        return tasks[0]
    for task in tasks:
        if task.name == name:
            return task
    raise ConfigError(
        f"--task: no task '{name}' in the stream ({', '.join(t.name for t in tasks)})"
    )


def train_samples(task: Task, n: int) -> list[Sample]:
    if len(task.train) < n:
        raise ConfigError(
            f"task {task.name} has {len(task.train)} training samples; --train-batch is {n}"
        )
    return task.train[:n]


# ---------------------------------------------------------------------------- summaries
def ratios_against(
    measured: dict[str, Measurements], label: str, references: tuple[str, ...]
) -> dict[str, Any]:
    """`label` against each reference measured in the same rounds, pair by pair."""
    out: dict[str, Any] = {}
    for ref in references:
        if ref == label or ref not in measured:
            continue
        out[ref] = paired_ratio(measured[label].seconds, measured[ref].seconds).to_dict()
    return out


def alone_estimate_mb(parameters: dict, optimizer_bytes: int, rise_mb: float | None) -> float:
    """What training the method alone would hold: its tensors (backbone included) and frozen
    helpers, AdamW's state, and the step's measured rise (activations and gradients; a lower
    bound on a CPU, whose allocator reuses freed pages)."""
    held = parameters["bytes"] + parameters["helpers_bytes"] + optimizer_bytes
    return round(held / MB + (rise_mb or 0.0), 3)


# ---------------------------------------------------------------------------- the bench
def _device_and_dtype(config: RunConfig, settings: BenchSettings) -> tuple[torch.device, str]:
    device = make_accelerator(config).device
    dtype = settings.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    return device, dtype


def _environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run_bench(config: RunConfig, settings: BenchSettings, progress: bool = True) -> dict[str, Any]:
    """Measure every method; returns the bench dict (schema: docs/bench.md)."""
    settings.check()
    say = tqdm.write if progress else (lambda *_: None)
    started = time.time()
    folder: str | Path | None = settings.method_configs
    if folder is None:
        folder = default_method_configs(config.model.backbone.name)
    elif folder == "none":
        folder = None
    specs = resolve_methods(settings.methods, folder)
    labels = [s.label for s in specs]
    scaling_labels = labels if settings.scaling_methods is None else list(settings.scaling_methods)
    unknown = sorted(set(scaling_labels) - set(labels))
    if unknown:
        raise ConfigError(f"--scaling-methods: {unknown} are not among the bench's methods")
    references = reference_methods()
    reference_labels = references.labels()
    if references.base is not None and references.base not in scaling_labels:
        scaling_labels.insert(0, references.base)

    device, dtype = _device_and_dtype(config, settings)
    config.model.backbone.dtype = dtype
    train_batch_size = settings.train_batch or config.train.batch_size
    new_tokens = settings.new_tokens or config.eval.max_new_tokens
    clock, memory = Clock(device), MemoryProbe(device)

    set_seed(config.seed)
    tasks = load_stream(config)
    task = pick_task(tasks, settings.task)
    base = load_backbone(config.model.backbone).to(device)
    collate = Collator(base)
    infer_sizes = sorted({1, settings.infer_batch})
    picked = pick_samples(task, collate, max(infer_sizes))
    infer_batches = {b: collate(picked[:b], with_answer=False).to(device) for b in infer_sizes}
    train_batch = collate(train_samples(task, train_batch_size)).to(device)
    base_parameters = sum(p.numel() for p in base.parameters())
    say(
        f"[mcit bench] {len(specs)} methods on {config.model.backbone.name} ({dtype}, {device}); "
        f"task {task.name}; stage {settings.stage}; {settings.rounds} rounds after "
        f"{settings.warmup} warm-up"
    )

    # 1. parameters, in the training state of stage `stage`
    methods: dict[str, ContinualMethod] = {}
    replays: dict[str, TaskReplay] = {}
    results: dict[str, dict[str, Any]] = {}
    for spec in specs:
        set_seed(config.seed)
        method = build_on(base, spec, device)
        replay = TaskReplay(method)
        stages = replay.advance(settings.stage, leave_last_open=True)
        methods[spec.label], replays[spec.label] = method, replay
        results[spec.label] = {
            "method": spec.name,
            "args": dataclasses.asdict(method.args),
            "args_source": spec.args_source,
            "trains": method.trains,
            "rehearsal_free": method.rehearsal_free,
            "stages_replayed": stages,
            "parameters": count_method(method, base_parameters).to_dict(),
        }

    # 2. training
    steps = {
        label: TrainStep(method, train_batch, config.train)
        for label, method in methods.items()
        if method.trains
    }
    trained = interleaved_rounds(
        {label: Call(run=step, setup=step.setup) for label, step in steps.items()},
        settings.rounds,
        settings.warmup,
        clock,
        memory,
        progress=progress,
        desc="bench train",
    )
    for label in labels:
        if label not in trained:
            results[label]["train"] = None
            continue
        seconds = trained[label].seconds
        train_memory = trained[label].memory(memory)
        optimizer_bytes = steps[label].state_bytes()
        results[label]["train"] = {
            "batch": train_batch_size,
            "step_seconds": summarize(seconds).to_dict(),
            "samples_per_second": summarize([train_batch_size / s for s in seconds]).to_dict(),
            "memory": {
                **train_memory,
                "alone_estimate_mb": alone_estimate_mb(
                    results[label]["parameters"], optimizer_bytes, train_memory["rise_mb"]
                ),
            },
            "optimizer_state_bytes": optimizer_bytes,
            "vs": ratios_against(trained, label, reference_labels),
        }
    del steps
    for label, replay in replays.items():
        replay.close()  # the stage is learned: inference after `stage` tasks
        methods[label].eval()

    # 3. inference
    for label in labels:
        results[label]["inference"] = []
    for b, batch in infer_batches.items():
        width = int(batch.input_ids.shape[1])
        padding = int((batch.attention_mask == 0).sum())
        probes = {label: probe_generation(m, batch, new_tokens) for label, m in methods.items()}
        measured = interleaved_rounds(
            {label: inference_call(m, batch, new_tokens) for label, m in methods.items()},
            settings.rounds,
            settings.warmup,
            clock,
            memory,
            progress=progress,
            desc=f"bench infer b{b}",
        )
        for label in labels:
            seconds = measured[label].seconds
            results[label]["inference"].append(
                {
                    "batch": b,
                    "new_tokens": new_tokens,
                    "prompt_tokens": width,
                    "padding_tokens": padding,
                    **probes[label],
                    "seconds_per_call": summarize(seconds).to_dict(),
                    "latency_per_sample_s": summarize([s / b for s in seconds]).to_dict(),
                    "tokens_per_second": summarize([b * new_tokens / s for s in seconds]).to_dict(),
                    "memory": measured[label].memory(memory),
                    "vs": ratios_against(measured, label, reference_labels),
                }
            )
    methods.clear()
    replays.clear()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 4. scaling
    scaling = None
    if settings.tasks:
        by_label: dict[str, MethodSpec] = {s.label: s for s in specs}
        scaling = measure_scaling(
            base,
            [by_label[label] for label in scaling_labels],
            sorted(set(settings.tasks)),
            infer_batches[1],
            new_tokens,
            device,
            settings.rounds,
            settings.warmup,
            clock,
            memory,
            seed=config.seed,
            progress=progress,
            base=references.base,
        )

    # 5. the papers' configuration
    paper = None
    if settings.paper:
        say("[mcit bench] LLaVA-1.5-7B parameter accounting (meta device)")
        paper = paper_accounting()

    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "settings": {
            "benchmark": config.data.benchmark,
            "task": task.name,
            "stage": settings.stage,
            "rounds": settings.rounds,
            "warmup": settings.warmup,
            "train_batch": train_batch_size,
            "infer_batches": infer_sizes,
            "new_tokens": new_tokens,
            "tasks": sorted(set(settings.tasks)),
            "dtype": dtype,
            "timer": clock.name,
            "memory": memory.name,
            "memory_per_call": memory.resettable,
            "references": {"base": references.base, "baseline": references.baseline},
            "method_configs": str(folder) if folder is not None else None,
        },
        "environment": _environment(device),
        "manifest": manifest(config, make_accelerator(config), tasks),
        "backbone": {
            "name": config.model.backbone.name,
            "path": config.model.backbone.path,
            "parameters": base_parameters,
            "hidden_size": base.hidden_size,
            "image_tokens": base.num_image_tokens,
        },
        "methods": results,
        "scaling": scaling,
        "paper_accounting": paper,
    }
