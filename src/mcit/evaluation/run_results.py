"""A run's `results.json`, typed: `RunResults` with one `StageRecord` per finished stage.

The runner fills a `RunResults` and writes it with `to_dict`; everything that reads a run
(resume, `mcit metrics`, reports) goes through `RunResults.from_dict`, which checks the
structure and names the first field a file gets wrong. Keys this mcit does not know (a file
from a newer mcit) are kept in `extra` and written back unchanged.

Fields added after version 1 files were first written default so that older files still read:
`task_metrics` (absent: every task scored 0-100), `task_modalities` (absent: no per-modality
table) and `trains` (absent: unknown, resolved from the method registry by the layer that may
import it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mcit.errors import MatrixError

RESULTS_VERSION = 1

Row = list[float | None]


@dataclass
class StageRecord:
    """One finished stage: what it trained, how long it took, what the method held."""

    stage: int  # 1-based
    name: str  # the stage's task (a joint union's name), or "no training"
    tasks: list[str]
    train_steps: int = 0
    train_samples_seen: int = 0
    train_seconds: float = 0.0
    final_loss: float | None = None
    eval_seconds: float = 0.0
    trainable_parameters: int = 0
    total_parameters: int = 0
    # The method's scalar analyses of the stage (e.g. prompt-selection accuracy), if any.
    analysis: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del out["extra"]
        if self.analysis is None:
            del out["analysis"]
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any], t: int, source: str) -> StageRecord:
        names = data.get("tasks")
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise MatrixError(
                f"{source}, stages[{t}] (stage {t + 1}), field 'tasks': expected a list of names"
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["stage"] = data.get("stage", t + 1)
        values["name"] = str(data.get("name", f"stage {t + 1}"))
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


@dataclass
class RunResults:
    """Everything `results.json` holds, in the order it is written."""

    tasks: list[str]
    version: int = RESULTS_VERSION
    run: str = ""
    benchmark: str = ""
    method: str | None = None
    method_args: dict[str, Any] = field(default_factory=dict)
    # From the method's class: whether it keeps old samples, and whether it trains at all (the
    # base model's run, whose scores are FWT's b_i, does not). None: not recorded (older file).
    rehearsal_free: bool = True
    trains: bool | None = None
    stages: list[StageRecord] = field(default_factory=list)
    matrix: list[Row] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    task_metrics: dict[str, str] | None = None  # task → metric name (sets its score range)
    task_modalities: dict[str, str] | None = None  # task → image | audio | video | text
    seconds_this_process: float | None = None
    complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    # Written only when set, so that a file reads back as it was written.
    _OPTIONAL = ("method", "trains", "task_metrics", "task_modalities", "seconds_this_process")
    _ORDER = (
        "version",
        "run",
        "benchmark",
        "method",
        "method_args",
        "rehearsal_free",
        "trains",
        "tasks",
        "stages",
        "matrix",
        "manifest",
        "task_metrics",
        "task_modalities",
        "seconds_this_process",
        "complete",
    )

    @property
    def stages_done(self) -> int:
        return len(self.matrix)

    def add_stage(self, stage: StageRecord, row: Row) -> None:
        self.stages.append(stage)
        self.matrix.append(row)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self._ORDER:
            value = getattr(self, key)
            if key in self._OPTIONAL and value is None:
                continue
            if key == "complete" and not value:
                continue
            out[key] = [s.to_dict() for s in value] if key == "stages" else value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, source: str = "results.json") -> RunResults:
        """The typed results of a parsed results.json; MatrixError names the file and field."""
        if not isinstance(data, dict):
            raise MatrixError(f"{source}: expected a JSON object (an mcit run's results.json)")
        for key in ("tasks", "matrix", "stages"):
            if key not in data:
                raise MatrixError(
                    f"{source}: no {key!r} field; expected an mcit run's results.json"
                )
        tasks, matrix, stages = data["tasks"], data["matrix"], data["stages"]
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise MatrixError(f"{source}, field 'tasks': expected a list of task names")
        if not isinstance(matrix, list):
            raise MatrixError(f"{source}, field 'matrix': expected a list of rows")
        if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
            raise MatrixError(f"{source}, field 'stages': expected a list of objects")
        if len(stages) != len(matrix):
            raise MatrixError(
                f"{source}: {len(stages)} entries in 'stages' but {len(matrix)} rows in 'matrix'"
            )
        metrics = data.get("task_metrics")
        if metrics is not None and (
            not isinstance(metrics, dict) or not all(isinstance(v, str) for v in metrics.values())
        ):
            raise MatrixError(
                f"{source}, field 'task_metrics': expected an object task → metric name"
            )
        modalities = data.get("task_modalities")
        if modalities is not None and (
            not isinstance(modalities, dict)
            or not all(isinstance(v, str) for v in modalities.values())
        ):
            raise MatrixError(
                f"{source}, field 'task_modalities': expected an object task → modality"
            )
        for key, kind in (("manifest", dict), ("method_args", dict)):
            if key in data and not isinstance(data[key], kind):
                raise MatrixError(f"{source}, field {key!r}: expected an object")
        trains = data.get("trains")
        if trains is not None and not isinstance(trains, bool):
            raise MatrixError(f"{source}, field 'trains': expected true or false")
        method = data.get("method")
        known = set(cls._ORDER)
        return cls(
            tasks=list(tasks),
            version=data.get("version", RESULTS_VERSION),
            run=data.get("run", ""),
            benchmark=data.get("benchmark", ""),
            method=method if isinstance(method, str) else None,
            method_args=data.get("method_args", {}),
            rehearsal_free=bool(data.get("rehearsal_free", True)),
            trains=trains,
            stages=[StageRecord.from_dict(s, t, source) for t, s in enumerate(stages)],
            matrix=[row if not isinstance(row, list) else list(row) for row in matrix],
            manifest=data.get("manifest", {}),
            task_metrics=metrics,
            task_modalities=modalities,
            seconds_this_process=data.get("seconds_this_process"),
            complete=bool(data.get("complete", False)),
            extra={k: v for k, v in data.items() if k not in known},
        )
