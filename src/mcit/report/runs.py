"""Run folders as the report sees them: results, continual metrics, manifest, analyses.

`load_runs` checks that the runs share one stream (the same tasks in the same order), gives
each a label (its method, or its run name when two runs share a method or the name marks an
ablation), and, when one of them is a zero-shot run, uses its scores as the b_i of every other
run's forward transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcit.errors import MatrixError, ReportError
from mcit.evaluation.continual import ContinualMetrics, scale_note
from mcit.evaluation.matrix_files import (
    AccuracyMatrix,
    matrix_from_results,
    with_single_task_file,
)
from mcit.files import read_json, yaml_problem
from mcit.methods.base import method_trains, registered_class
from mcit.report.analysis import Analysis, last_stage_analyses

__all__ = [
    "COMPARABLE_CONFIG_KEYS",
    "NOT_REHEARSAL_FREE_MARK",
    "RECONSTRUCTION_MARK",
    "RunRecord",
    "load_run",
    "load_runs",
    "score_scale",
    "setting_differences",
]

COMPARABLE_CONFIG_KEYS = (
    "seed",
    "data",
    "train.epochs",
    "train.max_steps_per_task",
    "train.batch_size",
    "train.grad_accum",
    "eval",
)
"""Config keys (dotted prefixes) that fix the stream, the seed and the budget: runs compared in
one report should agree on them (`mcit compare` forces them; `mcit report` warns)."""

NOT_REHEARSAL_FREE_MARK = "†"
RECONSTRUCTION_MARK = "‡"


@dataclass
class RunRecord:
    """One run folder, loaded. `metrics` covers the finished stages (a partial run's too)."""

    path: Path
    results: dict[str, Any]
    matrix: AccuracyMatrix
    metrics: ContinualMetrics
    config: dict[str, Any] | None
    analyses: list[Analysis] = field(default_factory=list)
    label: str = ""

    @property
    def method(self) -> str:
        return str(self.results.get("method", "?"))

    @property
    def run_name(self) -> str:
        return str(self.results.get("run") or self.path.name)

    @property
    def trains(self) -> bool:
        """Whether the run's method trains; a run that does not (the base model) gives FWT its
        b_i. Recorded by the runner; for older files, the registered method's class says."""
        recorded = self.results.get("trains")
        if isinstance(recorded, bool):
            return recorded
        return method_trains(self.results.get("method")) is not False

    @property
    def rehearsal_free(self) -> bool:
        # Recorded by the runner from `ContinualMethod.rehearsal_free`; older files lack it.
        return bool(self.results.get("rehearsal_free", True))

    @property
    def display(self) -> str:
        """The label in tables and legends, marked when the method keeps old samples."""
        marks = ("" if self.rehearsal_free else f" {NOT_REHEARSAL_FREE_MARK}") + (
            f" {RECONSTRUCTION_MARK}" if self.reconstruction else ""
        )
        return self.label + marks

    @property
    def reconstruction(self) -> str:
        """The registered method's note when it is rebuilt without its authors' code."""
        cls = registered_class(self.results.get("method"))
        return cls.reconstruction if cls is not None else ""

    @property
    def manifest(self) -> dict[str, Any]:
        m = self.results.get("manifest")
        if not isinstance(m, dict):
            return {}
        # Runs made before data.validation_per_task existed were all scored on the test set.
        return {"eval_split": "test", **m}

    @property
    def stages(self) -> list[dict[str, Any]]:
        return list(self.results.get("stages", []))


def load_run(path: str | Path) -> RunRecord:
    """A run folder (or its results.json); errors name the file."""
    path = Path(path)
    run_dir = path.parent if path.name == "results.json" else path
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise ReportError(f"{run_dir}: not a run folder (no results.json)")
    results = read_json(results_path, ReportError)
    try:
        matrix = with_single_task_file(matrix_from_results(results, str(results_path)), run_dir)
        metrics = matrix.continual_metrics()
    except MatrixError as exc:
        raise ReportError(str(exc)) from None
    config = None
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        try:
            config = yaml.safe_load(config_path.read_text()) or None
        except yaml.YAMLError as exc:
            raise ReportError(f"{config_path}: invalid YAML ({yaml_problem(exc)})") from None
    return RunRecord(run_dir, results, matrix, metrics, config, last_stage_analyses(run_dir))


def _names_a_variant(run: RunRecord) -> bool:
    """Whether the run's name says more than its method: `fwd-prompt-no-pretrained` or
    `coin-mini-modalprompt-k1` name an ablation, `coin-mini-ewc` or `my-run` do not."""
    _, found, tail = run.run_name.partition(run.method)
    return bool(found) and bool(tail)


def _labels(runs: list[RunRecord]) -> list[str]:
    """The method name; the run name where several runs share a method or the name marks an
    ablation (`modalprompt-L20`: an ablation alone in a report must not pass for its method);
    the run name and folder where even those coincide."""
    methods = [r.method for r in runs]
    labels = [
        r.method if methods.count(r.method) == 1 and not _names_a_variant(r) else r.run_name
        for r in runs
    ]
    return [
        label if labels.count(label) == 1 else f"{label} ({r.path})"
        for label, r in zip(labels, runs, strict=True)
    ]


def score_scale(runs: Sequence[RunRecord]) -> str:
    """The score range of these runs, as tables and axes name it ("0-100", or with CIDEr)."""
    return scale_note([c for r in runs for c in r.matrix.ceilings or [100.0]])


def load_runs(paths: list[str | Path]) -> list[RunRecord]:
    """Load runs of one stream for one report (see the module docstring)."""
    if not paths:
        raise ReportError("no run folder given")
    runs = [load_run(p) for p in paths]
    first = runs[0]
    for run in runs[1:]:
        if run.matrix.tasks != first.matrix.tasks:
            raise ReportError(
                f"{run.path}: its tasks {run.matrix.tasks} differ from those of {first.path} "
                f"({first.matrix.tasks}); a report compares runs of the same stream"
            )
    for run, label in zip(runs, _labels(runs), strict=True):
        run.label = label
    zero_shot = next((r for r in runs if not r.trains and r.matrix.single_stage), None)
    if zero_shot is not None:
        b = list(zero_shot.matrix.matrix[0])
        for run in runs:
            if not run.matrix.single_stage:
                run.matrix = run.matrix.with_zero_shot(b, zero_shot.matrix)
                run.metrics = run.matrix.continual_metrics()
    return runs


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def _comparable(config: dict[str, Any] | None) -> dict[str, Any]:
    flat = _flatten(config or {})
    return {
        f"config {k}": v
        for k, v in flat.items()
        if any(k == p or k.startswith(p + ".") for p in COMPARABLE_CONFIG_KEYS)
    }


def setting_differences(runs: list[RunRecord]) -> list[str]:
    """One line per manifest entry, benchmark or stream/seed/budget config key on which the
    runs disagree: ``key: label = value; label = value``. Empty when they all agree."""
    if len(runs) < 2:
        return []
    views = []
    for run in runs:
        view = {"benchmark": run.results.get("benchmark")}
        view.update({f"manifest {k}": v for k, v in _flatten(run.manifest).items()})
        view.update(_comparable(run.config))
        views.append(view)
    keys = sorted({k for v in views for k in v})
    lines = []
    for key in keys:
        values = [v.get(key, "(absent)") for v in views]
        if any(x != values[0] for x in values[1:]):
            shown = "; ".join(f"{r.label} = {x}" for r, x in zip(runs, values, strict=True))
            lines.append(f"{key}: {shown}")
    return lines
