"""Continual-learning metrics from an accuracy matrix (docs/metrics-and-reports.md, "Continual metrics").

The accuracy matrix ``a[t][i]`` is the score (0-100; CIDEr ×100, as CoIN reports it, can reach
1000: see `score_ceiling`) on task i after training stage t. In the
docs stages and tasks are numbered 1..T; in code the lists are 0-based, so
``matrix[t - 1][i - 1]`` holds ``a[t][i]``. Every row has one entry per task; entries on and
below the diagonal (t ≥ i) must be evaluated, entries above it (tasks not yet trained, only
needed for forward transfer) may be None.

Formulas (1-based, T tasks):

- DirectT_i = a[i][i]; ContinualT_i ("final") = a[T][i].
- CAA_i = mean_{j=i+1..T} a[j][i] (undefined for i = T).
- BWT_t = mean_{i<t} (a[t][i] − a[i][i]) for t ≥ 2; negative means forgetting. The
  ModalPrompt paper prints −BWT ("lower is better").
- MA_t = mean_{i≤t} a[t][i]; final MA = MA_T (MCITlib's MFN); mean MA = mean_t MA_t (MAA).
- forgetting (Chaudhry et al. 2018, at the last stage) =
  mean_{i<T} (max_{l=i..T−1} a[l][i] − a[T][i]).
- FWT = mean_{i≥2} (a[i−1][i] − b_i), b_i the zero-shot score of task i (undefined when any
  needed entry is missing).
- Alone gap_i = a[i][i] − s_i, s_i the score of task i learned alone from the base model by the
  same method and budget (a single-task reference run); mean alone gap = mean_{i≥2} gap_i.
  Negative means the earlier tasks made learning task i worse: negative forward transfer in
  the sense of the Fwd-Prompt paper. Task 1 is learned from the base in both runs, so it is
  left out of the mean.

A run that learns every task in one stage (joint multi-task training) or none (zero-shot) has
one row over all T tasks. [spec] Reading the definitions with "task i learned at stage 1" for
every i gives DirectT_i = ContinualT_i = a[1][i] and MA_1 = mean_i a[1][i] (= final MA = mean
MA); CAA, BWT, forgetting and FWT need a later or an earlier stage and are undefined.
`compute_single_stage` returns that object, so reference runs sit in the same tables.

`compute_metrics` returns the JSON-able dict; `compute_continual` the dataclasses behind it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from mcit.errors import MatrixError

__all__ = [
    "ContinualMetrics",
    "MatrixError",
    "StageMetrics",
    "Summary",
    "TaskMetrics",
    "compute_continual",
    "compute_metrics",
    "compute_single_stage",
    "scale_note",
    "score_ceiling",
    "validate_matrix",
]

Matrix = Sequence[Sequence[float | None]]
Ceilings = Sequence[float] | None  # the highest valid score of each column; None: 100 for all

# Scores are 0-100, except CIDEr-D ×100: per-caption CIDEr-D lies in [0, 10], so a captioning
# task can score up to 1000 (good captioners pass 100). The matrix itself cannot tell a CIDEr
# column from a typo, so callers that know the tasks' metrics pass their ceilings.
_CEILINGS = {"cider": 1000.0}


def score_ceiling(metric: str | None) -> float:
    """The highest valid task score under `metric` (100 unless the metric is CIDEr)."""
    return _CEILINGS.get(metric or "", 100.0)


def scale_note(ceilings: Ceilings) -> str:
    """How tables and axes name the score range of a matrix with these ceilings."""
    return "0-100; CIDEr ×100 up to 1000" if ceilings and max(ceilings) > 100.0 else "0-100"


def _ceiling(ceilings: Ceilings, i: int) -> float:
    return 100.0 if ceilings is None else float(ceilings[i])


def _check_score(v: float, ceiling: float) -> str | None:
    """Why `v` is not a valid score under `ceiling`, or None."""
    if not math.isfinite(v) or not 0.0 <= v <= ceiling:
        return f"{v!r} is outside 0-{ceiling:g}"
    return None


@dataclass
class TaskMetrics:
    """Per-task metrics: DirectT_i, ContinualT_i and CAA_i (None for the last task)."""

    task: str
    direct: float
    final: float
    caa: float | None
    alone_gap: float | None = None  # DirectT_i − s_i, with a single-task reference


@dataclass
class StageMetrics:
    """Per-stage metrics: MA_t and BWT_t (None at stage 1). `stage` is 1-based."""

    stage: int
    task: str
    ma: float
    bwt: float | None


@dataclass
class Summary:
    """Stream-level metrics; None where undefined (one task; FWT without zero-shot scores)."""

    final_ma: float
    mean_ma: float
    final_bwt: float | None
    mean_bwt: float | None
    mean_caa: float | None
    forgetting: float | None
    fwt: float | None
    mean_alone_gap: float | None = None  # mean over tasks 2..T of DirectT_i − s_i


@dataclass
class ContinualMetrics:
    """All metrics of one stream; `to_dict` gives the JSON object of `compute_metrics`."""

    tasks: list[str]
    per_task: list[TaskMetrics]
    per_stage: list[StageMetrics]
    summary: Summary

    def to_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "per_task": [asdict(x) for x in self.per_task],
            "per_stage": [asdict(x) for x in self.per_stage],
            "summary": asdict(self.summary),
        }


def _where(tasks: Sequence[str], t: int, i: int | None = None) -> str:
    """'stage 2 (task 'B')[, column 'A']' for 0-based row t and column i."""
    s = f"row for stage {t + 1} (task {tasks[t]!r})" if t < len(tasks) else f"row {t + 1}"
    if i is not None:
        s += f", column {tasks[i]!r}"
    return s


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_tasks(tasks: Sequence[str]) -> None:
    if isinstance(tasks, str) or len(tasks) == 0:
        raise MatrixError("the task list is empty (or a string, not a list of names)")
    seen: set[str] = set()
    for k, name in enumerate(tasks):
        if not isinstance(name, str) or not name.strip():
            raise MatrixError(f"task {k + 1} has no name ({name!r})")
        if name in seen:
            raise MatrixError(f"task {name!r} appears twice in the task list")
        seen.add(name)


def validate_matrix(
    tasks: Sequence[str], matrix: Matrix, partial: bool = False, ceilings: Ceilings = None
) -> None:
    """Check an accuracy matrix against the definition of ``a[t][i]``.

    One row per stage (in task order) and one entry per task in every row; entries are numbers
    in 0..100 (0..ceilings[i] where given: `score_ceiling` of each task's metric) or None;
    every entry with t ≥ i (lower triangle and diagonal) must be a number, entries above the
    diagonal may be None. Raises `MatrixError` naming the stage (number and its task) and the
    column (task). `partial=True` accepts fewer rows than tasks (a run that has not finished
    every stage yet).
    """
    _check_tasks(tasks)
    n_tasks = len(tasks)
    if isinstance(matrix, str | bytes) or not isinstance(matrix, Sequence):
        raise MatrixError(f"the matrix must be a list of rows, got {type(matrix).__name__}")
    for t, row in enumerate(matrix):
        if t >= n_tasks:
            raise MatrixError(
                f"{_where(tasks, t)}: the matrix has {len(matrix)} rows, "
                f"expected {n_tasks} (one per stage: {', '.join(tasks)})",
                stage=t + 1,
            )
        if isinstance(row, str | bytes) or not isinstance(row, Sequence):
            raise MatrixError(f"{_where(tasks, t)}: not a list of scores", stage=t + 1)
        if len(row) != n_tasks:
            raise MatrixError(
                f"{_where(tasks, t)}: {len(row)} entries, expected {n_tasks} "
                f"(one per task: {', '.join(tasks)}; None where not evaluated)",
                stage=t + 1,
            )
        for i, v in enumerate(row):
            if v is None:
                if i <= t:
                    raise MatrixError(
                        f"{_where(tasks, t, i)}: missing score; task {tasks[i]!r} was trained "
                        f"at stage {i + 1} and must be evaluated after every stage from then on",
                        stage=t + 1,
                        column=tasks[i],
                    )
                continue
            if not _is_number(v):
                raise MatrixError(
                    f"{_where(tasks, t, i)}: {v!r} is not a number", stage=t + 1, column=tasks[i]
                )
            problem = _check_score(v, _ceiling(ceilings, i))
            if problem:
                raise MatrixError(f"{_where(tasks, t, i)}: {problem}", stage=t + 1, column=tasks[i])
    if len(matrix) < n_tasks and not partial:
        missing = ", ".join(f"{k + 1} ({tasks[k]!r})" for k in range(len(matrix), n_tasks))
        raise MatrixError(
            f"the matrix has {len(matrix)} rows, expected {n_tasks}: no row for stage {missing}",
            stage=len(matrix) + 1,
        )


def _validate_zero_shot(
    tasks: Sequence[str],
    zero_shot: Sequence[float | None],
    ceilings: Ceilings,
    kind: str = "zero-shot score",
) -> None:
    """Reference scores, one per task (None where not evaluated), each in its task's range."""
    if len(zero_shot) != len(tasks):
        raise MatrixError(
            f"{kind}s: {len(zero_shot)} entries, expected {len(tasks)} "
            f"(one per task: {', '.join(tasks)}; None where not evaluated)"
        )
    for i, v in enumerate(zero_shot):
        if v is None:
            continue
        if not _is_number(v):
            raise MatrixError(f"{kind} of {tasks[i]!r}: {v!r} is not a number")
        problem = _check_score(v, _ceiling(ceilings, i))
        if problem:
            raise MatrixError(f"{kind} of {tasks[i]!r}: {problem}")


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def compute_continual(
    tasks: Sequence[str],
    matrix: Matrix,
    zero_shot: Sequence[float | None] | None = None,
    ceilings: Ceilings = None,
    single_task: Sequence[float | None] | None = None,
) -> ContinualMetrics:
    """All continual metrics of one stream, unrounded (see the module docstring).

    `zero_shot[i]` is the score of task i+1 before any training (b_i), needed only for FWT;
    `single_task[i]` its score learned alone from the base (s_i), needed only for the alone
    gap. Validates the matrix first (`validate_matrix`; `ceilings` as there).
    """
    validate_matrix(tasks, matrix, ceilings=ceilings)
    if zero_shot is not None:
        _validate_zero_shot(tasks, zero_shot, ceilings)
    if single_task is not None:
        _validate_zero_shot(tasks, single_task, ceilings, "single-task score")
    n = len(tasks)
    a = [[None if v is None else float(v) for v in row] for row in matrix]

    def at(t: int, i: int) -> float:  # 0-based, lower triangle: always present
        v = a[t][i]
        assert v is not None
        return v

    per_task = [
        TaskMetrics(
            task=tasks[i],
            direct=at(i, i),
            final=at(n - 1, i),
            caa=_mean([at(j, i) for j in range(i + 1, n)]),
            alone_gap=(
                at(i, i) - float(single_task[i])  # type: ignore[arg-type]
                if single_task is not None and single_task[i] is not None
                else None
            ),
        )
        for i in range(n)
    ]
    per_stage = []
    for t in range(n):
        ma = _mean([at(t, i) for i in range(t + 1)])
        assert ma is not None
        bwt = _mean([at(t, i) - at(i, i) for i in range(t)])
        per_stage.append(StageMetrics(stage=t + 1, task=tasks[t], ma=ma, bwt=bwt))

    mean_ma = _mean([s.ma for s in per_stage])
    assert mean_ma is not None
    forgetting = _mean(
        [max(at(lv, i) for lv in range(i, n - 1)) - at(n - 1, i) for i in range(n - 1)]
    )
    fwt: float | None = None
    if zero_shot is not None and n >= 2:
        pairs = [(a[i - 1][i], zero_shot[i]) for i in range(1, n)]
        if all(x is not None and b is not None for x, b in pairs):
            fwt = _mean([float(x) - float(b) for x, b in pairs])  # type: ignore[arg-type]
    summary = Summary(
        final_ma=per_stage[-1].ma,
        mean_ma=mean_ma,
        final_bwt=per_stage[-1].bwt,
        mean_bwt=_mean([s.bwt for s in per_stage if s.bwt is not None]),
        mean_caa=_mean([x.caa for x in per_task if x.caa is not None]),
        forgetting=forgetting,
        fwt=fwt,
        mean_alone_gap=_mean([x.alone_gap for x in per_task[1:] if x.alone_gap is not None]),
    )
    return ContinualMetrics(list(tasks), per_task, per_stage, summary)


def compute_metrics(
    tasks: Sequence[str],
    matrix: Matrix,
    zero_shot: Sequence[float | None] | None = None,
    ceilings: Ceilings = None,
    single_task: Sequence[float | None] | None = None,
) -> dict:
    """The JSON object of all continual metrics (docs/metrics-and-reports.md, "Continual metrics")::

        {"tasks": [...],
         "per_task":  [{"task", "direct", "final", "caa", "alone_gap"}, ...],
         "per_stage": [{"stage", "task", "ma", "bwt"}, ...],
         "summary":   {"final_ma", "mean_ma", "final_bwt", "mean_bwt", "mean_caa",
                       "forgetting", "fwt", "mean_alone_gap"}}

    Floats unrounded, None (JSON null) where undefined. Raises `MatrixError` on a bad matrix.
    """
    return compute_continual(tasks, matrix, zero_shot, ceilings, single_task).to_dict()


def compute_single_stage(
    tasks: Sequence[str],
    row: Sequence[float | None],
    stage_name: str = "joint",
    ceilings: Ceilings = None,
) -> ContinualMetrics:
    """Metrics of a run with one stage that covers every task (multi-task or zero-shot).

    Every task counts as learned at stage 1 (module docstring): direct = final = a[1][i],
    MA_1 = final MA = mean MA = mean_i a[1][i]; everything needing another stage is None.
    `stage_name` labels the one entry of ``per_stage`` (e.g. "scienceqa+gqa", "no training").
    """
    _check_tasks(tasks)
    tasks = list(tasks)
    if len(row) != len(tasks):
        raise MatrixError(
            f"row for stage 1 ({stage_name}): {len(row)} entries, expected {len(tasks)} "
            f"(one per task: {', '.join(tasks)})",
            stage=1,
        )
    scores: list[float] = []
    for i, v in enumerate(row):
        where = f"row for stage 1 ({stage_name}), column {tasks[i]!r}"
        if v is None:
            raise MatrixError(
                f"{where}: missing score; a single-stage run learns (or, zero-shot, is "
                "evaluated on) every task at stage 1",
                stage=1,
                column=tasks[i],
            )
        if not _is_number(v):
            raise MatrixError(f"{where}: {v!r} is not a number", stage=1, column=tasks[i])
        problem = _check_score(v, _ceiling(ceilings, i))
        if problem:
            raise MatrixError(f"{where}: {problem}", stage=1, column=tasks[i])
        scores.append(float(v))
    ma = _mean(scores)
    assert ma is not None
    return ContinualMetrics(
        tasks=tasks,
        per_task=[
            TaskMetrics(task=t, direct=v, final=v, caa=None)
            for t, v in zip(tasks, scores, strict=True)
        ],
        per_stage=[StageMetrics(stage=1, task=stage_name, ma=ma, bwt=None)],
        summary=Summary(
            final_ma=ma,
            mean_ma=ma,
            final_bwt=None,
            mean_bwt=None,
            mean_caa=None,
            forgetting=None,
            fwt=None,
        ),
    )
