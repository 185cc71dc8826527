"""A method on the micro backbone and micro coin-mini, outside the runner, for tests of one
method's own behaviour (losses, gradients, state) in seconds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conftest import micro_overrides

from mcit.config import RunConfig, load_config
from mcit.data.collate import Batch, Collator
from mcit.data.sample import Task, stream_modalities
from mcit.methods.base import ContinualMethod, build_method
from mcit.models.backbone import load_backbone
from mcit.runner import load_stream, make_accelerator
from mcit.train.trainer import RunLogger, StageStats, Trainer


@dataclass
class MicroSetup:
    method: ContinualMethod
    tasks: list[Task]
    collate: Collator
    config: RunConfig

    def batch(self, task: int = 0, n: int = 4) -> Batch:
        return self.collate(self.tasks[task].train[:n]).to(self.method.backbone.device)

    def train(self, stage: int, steps: int = 2) -> StageStats:
        """`steps` optimizer steps on task `stage` with the run's trainer (lr from the config)."""
        config = self.config
        config.train.max_steps_per_task = steps
        trainer = Trainer(
            make_accelerator(config), config.train, RunLogger(Path("."), False), progress=False
        )
        return trainer.train_stage(
            self.method, stage, self.tasks[stage].train, self.collate, seed=stage
        )


def micro_method(benchmark: Path, out: Path, method: str, args: dict) -> MicroSetup:
    config = load_config(None, micro_overrides(benchmark, out, method, **{"method.args": args}))
    tasks = load_stream(config)
    backbone = load_backbone(config.model.backbone, stream_modalities(tasks))
    built = build_method(method, backbone, config.method.args)
    return MicroSetup(built, tasks, Collator(backbone), config)


def micro_stream(benchmark: Path, out: Path, method: str) -> tuple[RunConfig, list[Task]]:
    """The micro run config of `method` and its loaded stream (for module-scoped fixtures)."""
    config = load_config(None, micro_overrides(benchmark, out, method))
    return config, load_stream(config)


def stub_task(name: str) -> Task:
    """A task with no samples: enough for begin_task/end_task of state created untrained."""
    return Task(name, "exact", [], [])


def learn_untrained(method: ContinualMethod, n: int) -> None:
    """n more tasks' state, created and frozen as a stream would, untrained (seeded per task)."""
    from accelerate.utils import set_seed

    for t in range(method.num_tasks, method.num_tasks + n):
        set_seed(t)
        method.begin_task(t, stub_task(f"task{t}"))
        method.end_task(t, stub_task(f"task{t}"), [])
