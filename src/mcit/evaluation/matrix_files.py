"""Accuracy matrices from files — a CSV matrix or a run's `results.json` — and `metrics.json`.

Both inputs become one `AccuracyMatrix`; its `metrics()` is the object of `mcit metrics --json`
(`mcit.evaluation.continual.compute_metrics`). Every problem is a `MatrixError` that names the
file and, where there is one, the line or stage and the column.

CSV format (scores 0-100)::

    stage,A,B,C
    zero-shot,12,25,12      <- optional: b_i, the untrained model's scores (for FWT)
    A,90,30,
    B,95,80,20
    C,75,50,60

The first cell of a stage row names the task trained at that stage, in the header's order; an
empty cell is a task not evaluated (allowed only above the diagonal, i.e. for tasks not learned
yet, whose scores forward transfer needs).
"""

from __future__ import annotations

import csv
import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit.errors import MatrixError
from mcit.evaluation.continual import (
    ContinualMetrics,
    compute_continual,
    compute_single_stage,
    score_ceiling,
    validate_matrix,
)
from mcit.evaluation.run_results import RunResults
from mcit.files import read_json, write_json_atomic

__all__ = [
    "ZERO_SHOT_ROW",
    "AccuracyMatrix",
    "load_accuracy_matrix",
    "matrix_from_results",
    "read_matrix_csv",
    "read_results_json",
    "read_single_task_file",
    "with_single_task_file",
    "write_run_metrics",
    "write_single_task_file",
    "zero_shot_scores",
]

ZERO_SHOT_ROW = "zero-shot"
"""First cell of the optional CSV row holding the zero-shot scores b_i."""


@dataclass
class AccuracyMatrix:
    """An accuracy matrix and what its metrics need to know about the run behind it.

    `matrix` holds one row per *finished* stage (fewer rows than tasks: a run in progress,
    whose metrics cover the stages so far); `single_stage` marks a run that learns every task
    in one stage (multi-task) or none (zero-shot): one row over all tasks.
    """

    source: str
    tasks: list[str]
    matrix: list[list[float | None]]
    stage_names: list[str]
    zero_shot: list[float | None] | None = None
    single_stage: bool = False
    method: str | None = None
    # The highest valid score of each task (1000 for CIDEr, else 100), from the run's
    # task_metrics; None (a CSV matrix, an older results.json): 100 for every task.
    ceilings: list[float] | None = None
    # Whether the run's method trains (results.json's 'trains'); None: not recorded (a CSV, an
    # older results.json), for the caller to resolve from the method registry.
    trains: bool | None = None
    # s_i: each task's score learned alone from the base (the run folder's single-task.json,
    # written by `mcit compare --single-task`); None where there is none.
    single_task: list[float | None] | None = None

    @property
    def stages_done(self) -> int:
        return len(self.matrix)

    @property
    def complete(self) -> bool:
        return self.single_stage or len(self.matrix) == len(self.tasks)

    def continual_metrics(self) -> ContinualMetrics:
        """The continual metrics (docs/metrics-and-reports.md); of the finished stages only for a
        partial run."""
        if self.single_stage:
            return compute_single_stage(
                self.tasks, self.matrix[0], self.stage_names[0], self.ceilings
            )
        n = len(self.matrix)
        zero_shot = self.zero_shot[:n] if self.zero_shot is not None else None
        ceilings = self.ceilings[:n] if self.ceilings is not None else None
        single = self.single_task[:n] if self.single_task is not None else None
        return compute_continual(
            self.tasks[:n], [row[:n] for row in self.matrix], zero_shot, ceilings, single
        )

    def metrics(self) -> dict:
        """The JSON object of `mcit metrics --json` (and of a run's metrics.json)."""
        return self.continual_metrics().to_dict()

    def with_zero_shot(
        self, zero_shot: list[float | None], zero_shot_run: AccuracyMatrix | None = None
    ) -> AccuracyMatrix:
        """This matrix with FWT's b_i. A matrix that does not know its tasks' metrics (a CSV)
        takes their score ranges from the zero-shot run, whose CIDEr scores may pass 100."""
        ceilings = self.ceilings
        if ceilings is None and zero_shot_run is not None and zero_shot_run.ceilings is not None:
            by_task = dict(zip(zero_shot_run.tasks, zero_shot_run.ceilings, strict=True))
            ceilings = [by_task.get(t, 100.0) for t in self.tasks]
        return dataclasses.replace(self, zero_shot=list(zero_shot), ceilings=ceilings)


def _relocated(exc: MatrixError, where: str) -> MatrixError:
    return MatrixError(f"{where}: {exc.problem}", exc.stage, exc.column)


# ------------------------------------------------------------------------------------- CSV
def read_matrix_csv(path: str | Path) -> tuple[list[str], list[list[float | None]]]:
    """``(tasks, matrix)`` of a CSV accuracy matrix (see the module docstring)."""
    m = read_matrix_csv_full(path)
    return m.tasks, m.matrix


def read_matrix_csv_full(path: str | Path) -> AccuracyMatrix:
    """Read a CSV accuracy matrix, with its optional zero-shot row.

    Blank lines are skipped and cells stripped. Errors name the file, the line and the column.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    lines = [
        (no, [c.strip() for c in row])
        for no, row in enumerate(csv.reader(text.splitlines()), start=1)
        if any(c.strip() for c in row)
    ]
    if not lines:
        raise MatrixError(f"{path}: empty file; expected a header 'stage,<task 1>,...'")
    header_no, header = lines[0]
    if header[0].lower() != "stage":
        raise MatrixError(
            f"{path}, line {header_no}, column 1: header starts with {header[0]!r}, "
            "expected 'stage'"
        )
    tasks = header[1:]
    if not tasks:
        raise MatrixError(f"{path}, line {header_no}: the header names no task")
    for k, name in enumerate(tasks):
        if not name:
            raise MatrixError(f"{path}, line {header_no}, column {k + 2}: empty task name")
        if name.lower() == ZERO_SHOT_ROW:
            raise MatrixError(
                f"{path}, line {header_no}, column {k + 2}: {ZERO_SHOT_ROW!r} is reserved for "
                "the zero-shot row and cannot name a task"
            )
        if name in tasks[:k]:
            raise MatrixError(
                f"{path}, line {header_no}, column {k + 2}: task {name!r} appears twice"
            )

    def col(i: int) -> str:  # i: 0-based task index
        return f"column {i + 2} ({tasks[i]!r})"

    def parse_cells(no: int, cells: list[str], what: str) -> list[float | None]:
        if len(cells) != len(tasks) + 1:
            raise MatrixError(
                f"{path}, line {no}: {len(cells)} cells, expected {len(tasks) + 1} "
                f"({what} and one per task: {', '.join(tasks)})"
            )
        row: list[float | None] = []
        for i, cell in enumerate(cells[1:]):
            if cell == "":
                row.append(None)
                continue
            try:
                row.append(float(cell))
            except ValueError:
                raise MatrixError(
                    f"{path}, line {no}, {col(i)}: {cell!r} is not a number"
                ) from None
        return row

    zero_shot: list[float | None] | None = None
    rows = []
    for no, cells in lines[1:]:
        if cells[0].lower() != ZERO_SHOT_ROW:
            rows.append((no, cells))
            continue
        if zero_shot is not None:
            raise MatrixError(f"{path}, line {no}: a second {ZERO_SHOT_ROW!r} row")
        zero_shot = parse_cells(no, cells, ZERO_SHOT_ROW)
        for i, v in enumerate(zero_shot):
            if v is not None and not 0.0 <= v <= 100.0:
                raise MatrixError(f"{path}, line {no}, {col(i)}: {v!r} is outside 0-100")

    if len(rows) > len(tasks):
        no = rows[len(tasks)][0]
        raise MatrixError(
            f"{path}, line {no}: more stage rows than tasks ({len(tasks)} in the header)"
        )
    matrix: list[list[float | None]] = []
    line_of_stage: list[int] = []
    for t, (no, cells) in enumerate(rows):
        row = parse_cells(no, cells, "stage")
        if cells[0] != tasks[t]:
            later = ""
            if cells[0] in tasks and tasks.index(cells[0]) > t:
                later = (
                    f" ({cells[0]!r} is task {tasks.index(cells[0]) + 1} of the header: at "
                    f"stage {t + 1} it is not learned yet, its column is above the diagonal)"
                )
            raise MatrixError(
                f"{path}, line {no}, column 1 (stage): {cells[0]!r}, expected {tasks[t]!r}; "
                f"stage rows must follow the header's task order{later}"
            )
        matrix.append(row)
        line_of_stage.append(no)
    if len(matrix) < len(tasks):
        missing = ", ".join(f"{k + 1} ({tasks[k]!r})" for k in range(len(matrix), len(tasks)))
        raise MatrixError(
            f"{path}: {len(matrix)} stage rows after the header, expected {len(tasks)}; "
            f"missing stage {missing}"
        )
    try:
        validate_matrix(tasks, matrix)
    except MatrixError as exc:
        where = f"{path}"
        if exc.stage is not None and exc.stage <= len(line_of_stage):
            where += f", line {line_of_stage[exc.stage - 1]}"
        if exc.column is not None:
            where += f", {col(tasks.index(exc.column))}"
        raise _relocated(exc, where) from None
    return AccuracyMatrix(str(path), tasks, matrix, list(tasks), zero_shot=zero_shot)


# ------------------------------------------------------------------------------ results.json
def matrix_from_results(results: RunResults | Any, source: str = "results.json") -> AccuracyMatrix:
    """The accuracy matrix of a run's results (`mcit.runner.run` writes them; a parsed
    results.json is read through `RunResults.from_dict` first).

    A continual run trains task t at stage t (``stages[t].tasks == [tasks[t]]``); a
    single-stage run (multi-task, zero-shot) has one stage listing every task. Any other plan,
    or a stage that trains a task whose column is not yet due, is an error naming the stage.
    """
    if not isinstance(results, RunResults):
        results = RunResults.from_dict(results, source)
    tasks, matrix = results.tasks, results.matrix
    if not matrix:
        raise MatrixError(f"{source}: no finished stage yet (the 'matrix' is empty)")
    trained = [stage.tasks for stage in results.stages]
    names = [stage.name for stage in results.stages]
    single = len(tasks) > 1 and len(trained) == 1 and sorted(trained[0]) == sorted(tasks)
    method, trains = results.method, results.trains
    ceilings = _task_ceilings(results.task_metrics, tasks, source)
    try:
        if single:
            out = AccuracyMatrix(
                source, list(tasks), [matrix[0]], names, None, True, method, ceilings, trains
            )
            out.continual_metrics()  # validates the row
            return out
        for t, stage_tasks in enumerate(trained):
            if t < len(tasks) and stage_tasks == [tasks[t]]:
                continue
            due = [x for x in stage_tasks if x in tasks and tasks.index(x) > t]
            detail = (
                f"; {due[0]!r} is task {tasks.index(due[0]) + 1}: at stage {t + 1} its column "
                "is above the diagonal (not learned yet)"
                if due
                else ""
            )
            expected = [tasks[t]] if t < len(tasks) else "no stage (more stages than tasks)"
            raise MatrixError(
                f"stages[{t}] (stage {t + 1}) trains {stage_tasks}, expected {expected} "
                f"(one task per stage in the order of 'tasks', or one stage over every task)"
                f"{detail}",
                stage=t + 1,
            )
        validate_matrix(tasks, matrix, partial=True, ceilings=ceilings)
    except MatrixError as exc:
        raise _relocated(exc, source) from None
    return AccuracyMatrix(
        source,
        list(tasks),
        [list(r) for r in matrix],
        names,
        method=method,
        ceilings=ceilings,
        trains=trains,
    )


def _task_ceilings(
    metrics: dict[str, str] | None, tasks: list[str], source: str
) -> list[float] | None:
    """Each task's highest valid score from results.json's 'task_metrics' (a run of mcit before
    that field has none: every task is then scored 0-100)."""
    if metrics is None:
        return None
    missing = [t for t in tasks if t not in metrics]
    if missing:
        raise MatrixError(f"{source}, field 'task_metrics': no metric for task {missing[0]!r}")
    return [score_ceiling(metrics[t]) for t in tasks]


def read_results_json(path: str | Path) -> AccuracyMatrix:
    """The accuracy matrix of a run's `results.json` (or of the run directory holding it), with
    the single-task scores of the folder's `single-task.json` when it has one."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    return with_single_task_file(
        matrix_from_results(read_json(path, MatrixError), str(path)), path.parent
    )


# ------------------------------------------------------------------------- single-task.json
SINGLE_TASK_FILE = "single-task.json"
SINGLE_TASK_VERSION = 1


def write_single_task_file(
    run_dir: Path, scores: dict[str, float], references: dict[str, str]
) -> Path:
    """`run_dir/single-task.json`: each task's score learned alone from the base (s_i of the
    alone gap) and the reference run folder it comes from."""
    path = run_dir / SINGLE_TASK_FILE
    write_json_atomic(
        path, {"version": SINGLE_TASK_VERSION, "scores": scores, "references": references}
    )
    return path


def read_single_task_file(path: Path, tasks: list[str]) -> list[float | None]:
    """s_i for `tasks` from a single-task.json (None for a task it lacks); MatrixError names
    the file and field."""
    data = read_json(path, MatrixError)
    if not isinstance(data, dict) or data.get("version") != SINGLE_TASK_VERSION:
        raise MatrixError(f"{path}: not a single-task.json of version {SINGLE_TASK_VERSION}")
    scores = data.get("scores")
    if not isinstance(scores, dict):
        raise MatrixError(f"{path}, field 'scores': expected an object task → score")
    for task, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MatrixError(f"{path}, field 'scores.{task}': {value!r} is not a number")
    return [None if scores.get(t) is None else float(scores[t]) for t in tasks]


def with_single_task_file(matrix: AccuracyMatrix, run_dir: Path) -> AccuracyMatrix:
    """`matrix` with the single-task scores of `run_dir/single-task.json`, if there is one
    (a single-stage run has no alone gap: it is left as it is)."""
    path = run_dir / SINGLE_TASK_FILE
    if matrix.single_stage or not path.is_file():
        return matrix
    out = dataclasses.replace(matrix, single_task=read_single_task_file(path, matrix.tasks))
    try:
        out.continual_metrics()  # the matrix was checked already: this checks the scores' ranges
    except MatrixError as exc:
        raise _relocated(exc, str(path)) from None
    return out


def load_accuracy_matrix(path: str | Path) -> AccuracyMatrix:
    """A CSV matrix (``*.csv``) or a run's results.json (a ``.json`` file or a run directory)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_matrix_csv_full(path)
    if path.suffix.lower() == ".json" or path.is_dir():
        return read_results_json(path)
    raise MatrixError(f"{path}: expected a .csv accuracy matrix, a results.json or a run folder")


def zero_shot_scores(zero_shot_run: AccuracyMatrix, tasks: list[str]) -> list[float | None]:
    """b_i for `tasks` from the run of a method that does not train (FWT's reference,
    docs/metrics-and-reports.md), matched by name. A matrix that does not say whether its method
    trains (`trains` None) is taken at its word."""
    if zero_shot_run.trains:
        raise MatrixError(
            f"{zero_shot_run.source}: a {zero_shot_run.method!r} run, not a zero-shot run; "
            "FWT's b_i is the score of the untrained model"
        )
    by_task = dict(zip(zero_shot_run.tasks, zero_shot_run.matrix[-1], strict=True))
    if not any(by_task.get(t) is not None for t in tasks):
        raise MatrixError(
            f"{zero_shot_run.source}: no zero-shot score for any of the tasks {', '.join(tasks)}"
        )
    return [by_task.get(t) for t in tasks]


# ------------------------------------------------------------------------------ metrics.json
def write_run_metrics(run_dir: Path, results: RunResults | dict) -> dict | None:
    """Write `run_dir/metrics.json` (the `mcit metrics --json` object of the stages so far).

    The run has produced the matrix itself, so a matrix the metrics reject (e.g. a score out of
    its metric's range) must not stop it: warn, leave metrics.json out, and return None.
    """

    path = run_dir / "metrics.json"
    try:
        matrix = matrix_from_results(results, str(run_dir / "results.json"))
        try:
            matrix = with_single_task_file(matrix, run_dir)
        except MatrixError as exc:  # only the alone gap depends on it: the rest still counts
            warnings.warn(f"{path}: written without the alone gap: {exc}", stacklevel=2)
        metrics = matrix.metrics()
    except MatrixError as exc:
        path.unlink(missing_ok=True)  # an older stage's metrics would pass for this one's
        warnings.warn(f"{path} not written: {exc}", stacklevel=2)
        return None
    write_json_atomic(path, metrics)
    return metrics
