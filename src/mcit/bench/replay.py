"""A method's per-task state for T learned tasks, created without training.

`begin_task` / `end_task` are replayed over the method's own stage plan for T placeholder tasks
(names only, no data), as `mcit predict` and a resumed run rebuild a run's stages: prompts,
experts and LoRA blocks exist as they would after T tasks, holding their initial values. Cost
depends on their shapes and number, not on their values, so timing and parameter counts are
those of a trained method.
"""

from __future__ import annotations

from mcit.data.sample import Task, joint_task, named_stage
from mcit.methods.base import ContinualMethod


def placeholder_tasks(n: int) -> list[Task]:
    """`task1` … `taskN`, without data (a method's `begin_task` must not need it)."""
    return [Task(f"task{i + 1}", "mixed", [], []) for i in range(n)]


def _names(plan: list[list[Task]]) -> list[list[str]]:
    return [[t.name for t in stage] for stage in plan]


class TaskReplay:
    """Advances one method through placeholder stages; `open_stage` is the stage begun but not
    yet ended (the method is then in its training state for that stage)."""

    def __init__(self, method: ContinualMethod):
        self.method = method
        self.plan: list[list[str]] = []  # stages begun so far, by task names
        self.open_stage: int | None = None

    @property
    def stages_begun(self) -> int:
        return len(self.plan)

    def can_reach(self, n_tasks: int) -> bool:
        """Whether the stages begun so far are the first stages of the plan for `n_tasks` tasks
        (false for joint methods, whose single stage changes with the number of tasks)."""
        plan = _names(self.method.stage_plan(placeholder_tasks(n_tasks)))
        return plan[: len(self.plan)] == self.plan

    def advance(self, n_tasks: int, leave_last_open: bool = False) -> int:
        """Begin and end every stage of the plan for `n_tasks` tasks not yet begun; with
        `leave_last_open`, the last stage is begun only. Returns the number of stages."""
        plan = self.method.stage_plan(placeholder_tasks(n_tasks))
        if not self.can_reach(n_tasks):
            raise ValueError(
                f"{self.method.name}: the stages replayed so far are not the first stages of "
                f"its plan for {n_tasks} tasks; build the method afresh"
            )
        self.close()
        for s in range(len(self.plan), len(plan)):
            task = joint_task(plan[s])
            self.method.begin_task(s, task)
            self.plan.append([t.name for t in plan[s]])
            self.open_stage = s
            if not (leave_last_open and s == len(plan) - 1):
                self.close()
        return len(plan)

    def close(self) -> None:
        """End the open stage, if any (no training samples: what `end_task` computes from data,
        such as EWC's Fisher, is computed over none)."""
        if self.open_stage is None:
            return
        s = self.open_stage
        self.method.end_task(s, named_stage(self.plan[s]), [])
        self.open_stage = None
