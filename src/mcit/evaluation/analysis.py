"""Per-stage analyses a method may produce beside the accuracy matrix (e.g. ModalPrompt's
task × prototype similarity and prompt-selection matrices), and where they are written.

Each analysis is one labelled matrix, saved as `RUN/analysis/stage_<t>/<name>.json` with the
schema below; the report renders every such file as a heatmap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mcit.files import write_json_atomic


@dataclass
class StageAnalysis:
    """What a method reports after a stage: named matrices, and scalars for results.json."""

    matrices: dict[str, dict] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)


def analysis_matrix(
    title: str,
    row_label: str,
    col_label: str,
    rows: list[str],
    cols: list[str],
    values: list[list[float | None]],
    fmt: str = ".2f",
) -> dict:
    """One analysis in the saved schema; NaN becomes null (JSON has no NaN)."""
    if len(values) != len(rows) or any(len(v) != len(cols) for v in values):
        raise ValueError(f"analysis '{title}': values are not {len(rows)} × {len(cols)}")
    clean = [[None if v is None or math.isnan(v) else float(v) for v in row] for row in values]
    return {
        "title": title,
        "row_label": row_label,
        "col_label": col_label,
        "rows": list(rows),
        "cols": list(cols),
        "values": clean,
        "fmt": fmt,
    }


def write_stage_analysis(run_dir: Path, stage: int, analysis: StageAnalysis) -> None:
    """`RUN/analysis/stage_<stage>/<name>.json` for each matrix (atomic writes)."""
    for name, matrix in analysis.matrices.items():
        write_json_atomic(run_dir / "analysis" / f"stage_{stage}" / f"{name}.json", matrix)
