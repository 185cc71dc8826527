"""Experience replay on sequential LoRA: a fixed-size buffer of earlier tasks' training samples,
mixed into every training batch. NOT rehearsal-free (it keeps old data): a reference for what
storing samples buys, reported as such (`rehearsal_free = False` in results.json).

The buffer holds at most `buffer_size` samples, shared equally among the tasks seen so far
(the first tasks take the remainder): when a task ends its share is drawn at random from its
training samples and every older task's share is cut to the new quota. Because each share is
stored in random order, cutting it keeps a uniform random subset. From the second task on,
`round(replay_ratio × n)` samples of each batch of n (the batch as drawn, `train.batch_size`
but for a last short one) are drawn from the buffer, uniformly
(so balanced over tasks), in place of as many current-task samples: the batch size, and so
the compute budget, stays that of the other methods.

Specification: docs/methods/replay.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from mcit.config import NON_NEGATIVE, Bounds, setting
from mcit.data.sample import Sample, Task
from mcit.methods.base import register_method
from mcit.methods.finetune_lora import FinetuneLora, LoraArgs


@dataclass
class ReplayArgs(LoraArgs):
    buffer_size: int = setting(
        400, help="samples kept over all tasks together", bounds=NON_NEGATIVE
    )
    replay_ratio: float = setting(
        0.25,
        help="share of each training batch drawn from the buffer",
        bounds=Bounds(low=0, high=1, high_open=True),
    )


def balanced_quotas(total: int, n_tasks: int) -> list[int]:
    """`total` slots shared equally among `n_tasks`, the first tasks taking the remainder."""
    return [total // n_tasks + (1 if i < total % n_tasks else 0) for i in range(n_tasks)]


def _process_rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


@register_method
class Replay(FinetuneLora):
    name = "replay"
    rehearsal_free = False
    args_class = ReplayArgs
    args: ReplayArgs

    def attach(self) -> None:
        super().attach()
        self.buffer: list[list[Sample]] = []  # one share per finished stage, in random order
        self._generator = torch.Generator()

    def begin_task(self, task_id: int, task: Task) -> None:
        # Seeded by the stage's seed (a resumed run draws the same batches) and by the process,
        # so that DDP ranks replay different samples.
        super().begin_task(task_id, task)
        self._generator = torch.Generator().manual_seed(torch.initial_seed() + _process_rank())

    def end_task(self, task_id: int, task: Task, train_samples: list[Sample]) -> None:
        super().end_task(task_id, task, train_samples)
        quotas = balanced_quotas(self.args.buffer_size, len(self.buffer) + 1)
        # The same draw on every process: seeded by the stage's seed only.
        generator = torch.Generator().manual_seed(torch.initial_seed())
        order = torch.randperm(len(train_samples), generator=generator)[: quotas[-1]].tolist()
        self.buffer.append([train_samples[i] for i in order])
        self.buffer = [share[:quota] for share, quota in zip(self.buffer, quotas, strict=True)]

    def batch_samples(self, samples: list[Sample]) -> list[Sample]:
        stored = [sample for share in self.buffer for sample in share]
        k = round(self.args.replay_ratio * len(samples))
        if not stored or k == 0:
            return samples
        if k <= len(stored):
            picks = torch.randperm(len(stored), generator=self._generator)[:k]
        else:  # a buffer smaller than the replayed part of a batch: draw with replacement
            picks = torch.randint(len(stored), (k,), generator=self._generator)
        return samples[: len(samples) - k] + [stored[i] for i in picks.tolist()]

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()
        state["replay_buffer"] = [
            [dataclasses.asdict(sample) for sample in share] for share in self.buffer
        ]
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.buffer = [
            [
                Sample(**{**record, "turns": [tuple(turn) for turn in record["turns"]]})
                for record in share
            ]
            for share in state.get("replay_buffer", [])
        ]
