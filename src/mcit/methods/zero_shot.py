"""Zero-shot: the base model, untuned, on every task (the reference for forward transfer).

Specification: docs/methods/zero-shot.md.
"""

from __future__ import annotations

from mcit.data.sample import Task
from mcit.methods.base import ContinualMethod, register_method


@register_method
class ZeroShot(ContinualMethod):
    name = "zero-shot"
    trains = False

    def stage_plan(self, tasks: list[Task]) -> list[list[Task]]:
        # One stage that learns nothing; the evaluator then tests every task once.
        return [list(tasks)]
