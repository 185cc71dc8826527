"""Scoring a predictions file from any source (`mcit score`).

One JSON object per line::

    {"id": "q1", "metric": "vqa", "prediction": "two", "references": ["2", "two", ...]}

`metric` is a scorer of `mcit.evaluation.scorers.SCORERS` (docs/metrics-and-reports.md, "Answer scoring");
it may be left out when the caller supplies a default (mcit's own
`predictions/stage_<t>/<task>.jsonl` files carry no metric). For `iou` each reference is one
box ``[x1, y1, x2, y2]`` in [0, 1], as a JSON list of four numbers or as text; for `cider` the
references are captions and CIDEr-D is computed over every `cider` line of the file.

A bad line is reported with its line number and field and left out; every other line is
still read and scored.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcit.errors import PredictionsFileError
from mcit.evaluation.scorers import SCORERS, box_iou, parse_box, score_predictions
from mcit.files import json_problem

__all__ = [
    "FileScores",
    "MetricScore",
    "PredictionLine",
    "PredictionsFileError",
    "read_predictions",
    "score_file",
    "score_lines",
]


@dataclass
class PredictionLine:
    line: int
    id: str | int
    metric: str
    prediction: str
    references: list[str]


@dataclass
class MetricScore:
    score: float  # 0-100 (CIDEr: CIDEr-D ×100, as CoIN reports it; it can exceed 100)
    n: int


@dataclass
class FileScores:
    """`overall` is the mean of the per-line scores (0-100); `per_line` keeps them in order."""

    overall: float
    n: int
    by_metric: dict[str, MetricScore]
    per_line: list[tuple[PredictionLine, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "overall": self.overall,
            "n": self.n,
            "by_metric": {m: {"score": s.score, "n": s.n} for m, s in self.by_metric.items()},
        }


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _box_reference(path: Path, no: int, k: int, ref: object) -> str:
    """One `iou` reference as text, checked: four numbers in [0, 1] with x1 < x2, y1 < y2."""
    where = f"references[{k}]"
    if isinstance(ref, list):
        if len(ref) != 4 or not all(_is_number(v) for v in ref):
            raise PredictionsFileError(
                path, no, where, f"{ref!r} is not a box [x1, y1, x2, y2] of four numbers"
            )
        box = tuple(float(v) for v in ref)
    elif isinstance(ref, str):
        parsed = parse_box(ref)
        if parsed is None:
            raise PredictionsFileError(
                path, no, where, f"{ref!r} holds no box [x1, y1, x2, y2] (four numbers)"
            )
        box = parsed
    else:
        raise PredictionsFileError(path, no, where, f"{ref!r} is not a box [x1, y1, x2, y2]")
    if not all(0.0 <= v <= 1.0 for v in box):
        raise PredictionsFileError(path, no, where, f"box {list(box)} is not normalised to [0, 1]")
    if box_iou(box, box) == 0.0:  # zero only for a degenerate box (x2 <= x1 or y2 <= y1)
        raise PredictionsFileError(path, no, where, f"box {list(box)} has no area")
    return "[" + ", ".join(repr(v) for v in box) + "]"


def _parse_line(path: Path, no: int, text: str, default_metric: str | None) -> PredictionLine:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PredictionsFileError(path, no, None, json_problem(exc, line=False)) from None
    if not isinstance(obj, dict):
        raise PredictionsFileError(path, no, None, "expected a JSON object")
    if "id" not in obj:
        raise PredictionsFileError(path, no, "id", "missing")
    sample_id = obj["id"]
    if isinstance(sample_id, bool) or not isinstance(sample_id, str | int):
        raise PredictionsFileError(path, no, "id", f"{sample_id!r} is not a string or an integer")
    metric = obj.get("metric", default_metric)
    if metric is None:
        raise PredictionsFileError(
            path, no, "metric", f"missing (one of {', '.join(SCORERS)}; or pass --metric)"
        )
    if metric not in SCORERS:
        raise PredictionsFileError(
            path, no, "metric", f"unknown metric {metric!r}; known: {', '.join(SCORERS)}"
        )
    if "prediction" not in obj:
        raise PredictionsFileError(path, no, "prediction", "missing")
    prediction = obj["prediction"]
    if not isinstance(prediction, str):
        raise PredictionsFileError(path, no, "prediction", f"{prediction!r} is not a string")
    refs = obj.get("references")
    if not isinstance(refs, list) or not refs:
        raise PredictionsFileError(
            path, no, "references", f"{refs!r} is not a non-empty list of reference answers"
        )
    if metric == "iou":
        references = [_box_reference(path, no, k, r) for k, r in enumerate(refs)]
    else:
        for k, r in enumerate(refs):
            if not isinstance(r, str):
                raise PredictionsFileError(path, no, f"references[{k}]", f"{r!r} is not a string")
        references = list(refs)
    return PredictionLine(no, sample_id, metric, prediction, references)


def read_predictions(
    path: str | Path, default_metric: str | None = None
) -> tuple[list[PredictionLine], list[PredictionsFileError]]:
    """Every good line of a predictions JSONL, and one error per bad line (in file order).

    Blank lines are skipped. An `id` seen before is an error naming both lines. Raises
    `PredictionsFileError` only when the file itself cannot be read.
    """
    path = Path(path)
    if default_metric is not None and default_metric not in SCORERS:
        raise PredictionsFileError(
            path, None, None, f"unknown --metric {default_metric!r}; known: {', '.join(SCORERS)}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PredictionsFileError(path, None, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PredictionsFileError(path, None, None, f"not UTF-8 text ({exc.reason})") from exc
    lines: list[PredictionLine] = []
    errors: list[PredictionsFileError] = []
    first_line_of: dict[str | int, int] = {}
    for no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = _parse_line(path, no, raw, default_metric)
        except PredictionsFileError as err:
            errors.append(err)
            continue
        if line.id in first_line_of:
            errors.append(
                PredictionsFileError(
                    path, no, "id", f"{line.id!r} already used on line {first_line_of[line.id]}"
                )
            )
            continue
        first_line_of[line.id] = no
        lines.append(line)
    return lines, errors


def score_lines(lines: Sequence[PredictionLine]) -> FileScores:
    """Per-line scores (0-100) with each line's metric; CIDEr-D over all `cider` lines.

    ``by_metric[M].score`` is the mean of M's lines (for `cider` the corpus CIDEr-D ×100) and
    ``overall`` the mean over every line.
    """
    groups: dict[str, list[PredictionLine]] = defaultdict(list)
    for line in lines:
        groups[line.metric].append(line)
    score_of: dict[int, float] = {}
    by_metric: dict[str, MetricScore] = {}
    for metric in SCORERS:  # registry order: stable output
        group = groups.get(metric)
        if not group:
            continue
        scores = score_predictions(
            metric, [x.prediction for x in group], [x.references for x in group]
        )
        for line, s in zip(group, scores, strict=True):
            score_of[line.line] = 100.0 * s
        by_metric[metric] = MetricScore(100.0 * math.fsum(scores) / len(scores), len(scores))
    per_line = [(line, score_of[line.line]) for line in lines]
    overall = math.fsum(s for _, s in per_line) / len(per_line) if per_line else 0.0
    return FileScores(overall, len(per_line), by_metric, per_line)


def score_file(
    path: str | Path, default_metric: str | None = None
) -> tuple[FileScores, list[PredictionsFileError]]:
    """`read_predictions` then `score_lines`: ``(scores of the good lines, errors)``."""
    lines, errors = read_predictions(path, default_metric)
    return score_lines(lines), errors
