"""Extension point: efficiency benchmarks (`mcit bench`, issue 6) in the report.

The report looks for ``RUN/bench.json`` in every run folder and takes an explicit
``mcit report --bench FILE``. Their schema is defined by the bench issue; until its renderer
replaces `render_bench_section`, the report shows each file as recorded (the JSON itself),
under its path, and draws nothing from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit.report import ReportError

__all__ = ["BENCH_FILE", "BenchSource", "find_bench", "render_bench_section"]

BENCH_FILE = "bench.json"


@dataclass
class BenchSource:
    path: Path
    data: Any


def _read(path: Path) -> BenchSource:
    try:
        return BenchSource(path, json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None


def find_bench(run_dirs: list[Path], explicit: Path | None = None) -> list[BenchSource]:
    """`explicit` (``--bench FILE``, must exist) and every ``RUN/bench.json`` present."""
    sources = []
    if explicit is not None:
        if not explicit.is_file():
            raise ReportError(f"{explicit}: no such bench file (--bench)")
        sources.append(_read(explicit))
    for run_dir in run_dirs:
        path = run_dir / BENCH_FILE
        if path.is_file() and (explicit is None or path.resolve() != explicit.resolve()):
            sources.append(_read(path))
    return sources


def render_bench_section(sources: list[BenchSource], out_dir: Path) -> str:
    """Markdown for the bench files (empty without any). `out_dir` is where a future renderer
    writes its figures (``out_dir/plots``)."""
    if not sources:
        return ""
    parts = [
        "## Efficiency benchmark",
        "",
        "Shown as recorded: the `bench.json` schema belongs to `mcit bench` (issue 6), whose "
        "renderer will replace this section.",
    ]
    for source in sources:
        parts += ["", f"`{source.path}`:", "", "```json", json.dumps(source.data, indent=2), "```"]
    return "\n".join(parts) + "\n"
