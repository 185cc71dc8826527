"""Method analyses as the report reads them: titled matrices a run saves beside its matrix.

A method may save matrices under ``RUN/analysis/stage_<t>/<name>.json`` (ModalPrompt: its
task × prototype similarity and its prompt-selection shares, paper Fig. 5-6)::

    {"title": str, "row_label": str, "col_label": str, "rows": [str], "cols": [str],
     "values": [[float | null]], "fmt": ".2f"}

`values` has one list per row and one entry per column (null: nothing to show); `fmt` is a
Python format spec for the numbers written in the cells (optional, default ".2f"). The report
renders the last stage's analyses of each run as titled heatmaps; this module reads and checks
the files (a malformed one is an error naming the file and the field).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit.errors import ReportError
from mcit.files import read_json

__all__ = ["ANALYSIS_DIR", "Analysis", "analysis_path", "last_stage_analyses", "read_analysis"]

ANALYSIS_DIR = "analysis"
_STAGE_DIR = re.compile(r"^stage_(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Analysis:
    """One titled matrix; `name` (the file stem) and `stage` come from where it is saved."""

    title: str
    row_label: str
    col_label: str
    rows: list[str]
    cols: list[str]
    values: list[list[float | None]]
    fmt: str = ".2f"
    name: str = ""
    stage: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "row_label": self.row_label,
            "col_label": self.col_label,
            "rows": list(self.rows),
            "cols": list(self.cols),
            "values": [list(r) for r in self.values],
            "fmt": self.fmt,
        }


def analysis_path(run_dir: str | Path, stage: int, name: str) -> Path:
    """``run_dir/analysis/stage_<stage>/<name>.json``; `stage` is 1-based."""
    if not isinstance(stage, int) or stage < 1:
        raise ValueError(f"analysis stage must be a 1-based stage number, got {stage!r}")
    if not _NAME.match(name):
        raise ValueError(f"analysis name {name!r}: use letters, digits, '_', '-', '.'")
    return Path(run_dir) / ANALYSIS_DIR / f"stage_{stage}" / f"{name}.json"


def _validate(data: Any, path: Path) -> Analysis:
    def bad(field_name: str, problem: str) -> ReportError:
        return ReportError(f"{path}, field '{field_name}': {problem}")

    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object with title, rows, cols, values")
    for key in ("title", "row_label", "col_label"):
        if not isinstance(data.get(key), str):
            raise bad(key, f"{data.get(key)!r} is not a string")
    if not data["title"].strip():
        raise bad("title", "empty")
    for key in ("rows", "cols"):
        names = data.get(key)
        if not isinstance(names, list) or not names:
            raise bad(key, f"{names!r} is not a non-empty list of labels")
        for k, label in enumerate(names):
            if not isinstance(label, str):
                raise bad(f"{key}[{k}]", f"{label!r} is not a string")
    fmt = data.get("fmt", ".2f")
    if not isinstance(fmt, str):
        raise bad("fmt", f"{fmt!r} is not a format spec")
    try:
        format(1.0, fmt)
    except ValueError:
        raise bad("fmt", f"{fmt!r} is not a valid format spec for a number (e.g. '.2f')") from None
    values = data.get("values")
    rows, cols = data["rows"], data["cols"]
    if not isinstance(values, list) or len(values) != len(rows):
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise bad("values", f"{n} rows, expected {len(rows)} (one per entry of 'rows')")
    matrix: list[list[float | None]] = []
    for r, row in enumerate(values):
        if not isinstance(row, list) or len(row) != len(cols):
            n = len(row) if isinstance(row, list) else type(row).__name__
            raise bad(f"values[{r}]", f"{n} entries, expected {len(cols)} (one per column)")
        out: list[float | None] = []
        for c, v in enumerate(row):
            if v is None:
                out.append(None)
            elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise bad(f"values[{r}][{c}]", f"{v!r} is not a finite number or null")
            else:
                out.append(float(v))
        matrix.append(out)
    return Analysis(
        data["title"], data["row_label"], data["col_label"], list(rows), list(cols), matrix, fmt
    )


def read_analysis(path: str | Path) -> Analysis:
    """Read and check one analysis file; errors name the file and the field."""
    path = Path(path)
    analysis = _validate(read_json(path, ReportError), path)
    analysis.name = path.stem
    match = _STAGE_DIR.match(path.parent.name)
    analysis.stage = int(match.group(1)) if match else 0
    return analysis


def last_stage_analyses(run_dir: str | Path) -> list[Analysis]:
    """The analyses of the last stage that saved any, sorted by name ([] when none)."""
    root = Path(run_dir) / ANALYSIS_DIR
    if not root.is_dir():
        return []
    stages = sorted(
        (int(m.group(1)), d)
        for d in root.iterdir()
        if d.is_dir() and (m := _STAGE_DIR.match(d.name)) and any(d.glob("*.json"))
    )
    if not stages:
        return []
    return [read_analysis(p) for p in sorted(stages[-1][1].glob("*.json"))]
