"""The one training loop, for every method (accelerate: DDP when launched with torchrun or
`accelerate launch`, DeepSpeed ZeRO-1/2 when launched with its config; `mcit.train.engines`).

Per stage: a fresh AdamW over what the method trains, warmup + schedule, gradient clipping,
a seeded data order sharded across processes, a progress bar, and a log line every
`log_every` steps (JSONL and TensorBoard). What differs between methods enters through the
method's `forward` (= its loss) and its `batch_samples`, `before_optimizer_step`,
`after_optimizer_step` and `end_epoch` hooks.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import get_scheduler

from mcit.config import TrainConfig
from mcit.data.collate import Collator
from mcit.data.sample import Sample
from mcit.errors import ConfigError
from mcit.methods.base import ContinualMethod
from mcit.train.engines import check_method_under_engine, configure_deepspeed, engine_name


@dataclass
class StageStats:
    steps: int
    samples_seen: int
    seconds: float
    final_loss: float


class RunLogger:
    """JSONL log lines (always) and TensorBoard scalars (main process only)."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "logs" / "train.jsonl"
        self.writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "events"))

    def log(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        self._append(record)
        for key, value in record.items():
            if isinstance(value, int | float) and key not in ("stage", "step"):
                self.writer.add_scalar(f"stage{record.get('stage', 0)}/{key}", value, step)

    def mark_attempt(self, finished_stages: int) -> None:
        """A line that starts each attempt of the run, so an interrupted attempt's lines stay
        told apart from the resumed one's."""
        if self.enabled:
            self._append(
                {
                    "event": "attempt",
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "pid": os.getpid(),
                    "finished_stages": finished_stages,
                }
            )

    def _append(self, record: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _index_stream(n: int, seed: int, rank: int, world: int) -> Iterator[int]:
    """Endless epochs of a seeded permutation; each process takes every `world`-th index."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(n, generator=generator).tolist()
        yield from order[rank::world]
        epoch += 1


def steps_for(n_samples: int, config: TrainConfig, world: int, n_tasks: int = 1) -> int:
    """Optimizer steps of a stage: `epochs` over its data, capped at `max_steps_per_task` for
    each task it holds (a joint stage over 8 tasks gets 8 tasks' budget)."""
    per_step = config.batch_size * config.grad_accum * world
    steps = max(1, math.ceil(n_samples * config.epochs / per_step))
    if config.max_steps_per_task is not None:
        steps = min(steps, config.max_steps_per_task * n_tasks)
    return steps


def parameter_groups(
    method: ContinualMethod, params: list[torch.nn.Parameter], config: TrainConfig
) -> list[dict]:
    """AdamW's parameter groups: the projector's parameters at `train.projector_lr` where it is
    set and the method trains them (LLaVA's and CoIN's `mm_projector_lr`), everything else at
    `train.lr`. The main group comes first, so the logged lr is its."""
    if config.projector_lr is None:
        return [{"params": params}]
    projector = {id(p) for p in method.backbone.projector.parameters()}
    if not any(id(p) in projector for p in params):
        warnings.warn(
            f"train.projector_lr is set but method '{method.name}' does not train the "
            "projector: the key has no effect",
            stacklevel=2,
        )
    groups = [
        {"params": [p for p in params if id(p) not in projector]},
        {"params": [p for p in params if id(p) in projector], "lr": config.projector_lr},
    ]
    return [group for group in groups if group["params"]]


HALF_DTYPES = (torch.bfloat16, torch.float16)


def check_trainable_precision(method: ContinualMethod) -> None:
    """Refuse weights that would train in half precision: AdamW updates them in place with no
    float32 copy, and every step smaller than the weight's rounding step (at lr 2e-5, most of
    them in bfloat16) is silently lost."""
    half = [n for n, p in method.named_parameters() if p.requires_grad and p.dtype in HALF_DTYPES]
    if half:
        raise ConfigError(
            f"method '{method.name}' would train {len(half)} tensor(s) in half precision (e.g. "
            f"{half[0]}), where most AdamW steps round away; load the model in float32 "
            "(model.backbone.dtype=float32) and let `accelerate launch` compute in bf16 "
            "(mixed_precision: bf16)"
        )


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scheduler,
    params: list[torch.nn.Parameter],
    max_grad_norm: float | None,
    clip_grad_norm=torch.nn.utils.clip_grad_norm_,
) -> None:
    """One update after the gradients are in: clip, step, advance the schedule, clear. The
    continual stages and the base's pre-training (`mcit.pretrain`) share it."""
    if max_grad_norm:
        clip_grad_norm(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


class Trainer:
    def __init__(
        self,
        accelerator: Accelerator,
        config: TrainConfig,
        logger: RunLogger,
        progress: bool = True,
    ):
        self.accelerator = accelerator
        self.config = config
        self.logger = logger
        self.progress = progress and accelerator.is_main_process

    def train_stage(
        self,
        method: ContinualMethod,
        stage: int,
        samples: list[Sample],
        collate: Collator,
        seed: int,
        n_tasks: int = 1,
    ) -> StageStats:
        cfg, acc = self.config, self.accelerator
        params = method.trainable_parameters()
        if not params:
            raise ValueError(f"method '{method.name}' has nothing to train at stage {stage + 1}")
        if len(samples) < acc.num_processes:
            # Each process draws from its own share of the data: an empty share never ends.
            raise ConfigError(
                f"stage {stage + 1}: {len(samples)} training sample(s) for "
                f"{acc.num_processes} process(es); every process needs at least one"
            )
        check_trainable_precision(method)
        steps = steps_for(len(samples), cfg, acc.num_processes, n_tasks)
        # One pass over the stage's data (every process drawing its share).
        per_step = cfg.batch_size * cfg.grad_accum * acc.num_processes
        steps_per_epoch = max(1, math.ceil(len(samples) / per_step))
        optimizer = torch.optim.AdamW(
            parameter_groups(method, params, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        scheduler = get_scheduler(
            cfg.scheduler,
            optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * steps),
            num_training_steps=steps,
        )
        # The engine is built per stage: which parameters train can change between stages.
        # Accelerate divides each micro-batch's loss by the accumulation (DeepSpeed does it in
        # its own backward, and steps the optimizer there at the accumulation boundary).
        engine = engine_name(acc)
        check_method_under_engine(acc, type(method))
        acc.gradient_accumulation_steps = cfg.grad_accum
        if engine == "deepspeed":
            configure_deepspeed(acc, cfg)
            model, optimizer, scheduler = acc.prepare(method, optimizer, scheduler)
        else:
            model = acc.prepare_model(method)
        indices = _index_stream(len(samples), seed, acc.process_index, acc.num_processes)
        method.train()
        started = time.time()
        smoothed = math.nan
        bar = tqdm(
            range(steps),
            desc=f"stage {stage + 1} train",
            disable=not self.progress,
            mininterval=1,
            leave=False,
        )
        for step in bar:
            parts: dict[str, float] = {}
            loss_value = 0.0
            for _ in range(cfg.grad_accum):
                drawn = [samples[next(indices)] for _ in range(cfg.batch_size)]
                batch = collate(method.batch_samples(drawn)).to(acc.device)
                # Counts micro-batches: DDP skips the gradient all-reduce and DeepSpeed its
                # optimizer step on all but the last of each step's `grad_accum`.
                with acc.accumulate(model):
                    out = model(batch)
                    acc.backward(out.loss)
                loss_value += out.loss.item() / cfg.grad_accum
                for key, value in out.parts.items():
                    parts[key] = parts.get(key, 0.0) + value / cfg.grad_accum
            method.before_optimizer_step()
            optimizer_step(optimizer, scheduler, params, cfg.max_grad_norm, acc.clip_grad_norm_)
            method.after_optimizer_step()
            if (step + 1) % steps_per_epoch == 0 or step == steps - 1:
                method.end_epoch()
            smoothed = loss_value if math.isnan(smoothed) else 0.9 * smoothed + 0.1 * loss_value
            bar.set_postfix(loss=f"{smoothed:.3f}")
            if step % cfg.log_every == 0 or step == steps - 1:
                self.logger.log(
                    {
                        "stage": stage + 1,
                        "step": step,
                        "lr": scheduler.get_last_lr()[0],
                        "loss": loss_value,
                        **parts,
                    },
                    step,
                )
        method.eval()
        acc.wait_for_everyone()
        # Drop accelerate's references (and a DeepSpeed engine's hooks) so the next stage can
        # wrap afresh.
        acc.free_memory()
        return StageStats(
            steps=steps,
            samples_seen=steps * cfg.batch_size * cfg.grad_accum * acc.num_processes,
            seconds=time.time() - started,
            final_loss=smoothed,
        )
