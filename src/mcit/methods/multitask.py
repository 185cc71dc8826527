"""Multi-task (joint) training: one LoRA tuned on the union of all tasks — the upper reference.

It is not continual: one stage sees every task's training data, shuffled together, and the
evaluator then tests every task once. Same adapter and budget per task as `finetune-lora`.

Specification: docs/methods/multitask.md.
"""

from __future__ import annotations

from mcit.data.sample import Task
from mcit.methods.base import register_method
from mcit.methods.finetune_lora import FinetuneLora


@register_method
class Multitask(FinetuneLora):
    name = "multitask"

    def stage_plan(self, tasks: list[Task]) -> list[list[Task]]:
        return [list(tasks)]
