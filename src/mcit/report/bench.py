"""Efficiency benchmarks (`mcit bench`) in the report.

The report looks for ``RUN/bench.json`` in every run folder and takes an explicit
``mcit report --bench FILE``. Each file is checked against the bench schema (docs/bench.md) and
rendered by `mcit.bench.report.bench_markdown`: tables, the paper's claims and the scaling
figure, which goes to ``OUT/plots``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit.errors import ReportError
from mcit.files import read_json

__all__ = ["BENCH_FILE", "BenchSource", "find_bench", "render_bench_section"]

BENCH_FILE = "bench.json"


@dataclass
class BenchSource:
    path: Path
    data: Any


def _read(path: Path) -> BenchSource:
    return BenchSource(path, read_json(path, ReportError))


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
    """Markdown for the bench files (empty without any), each under its path; their scaling
    figures go to ``out_dir/plots`` (one file per bench file). A file that does not follow the
    schema is a ReportError naming the file and the field."""
    from mcit.bench.report import SCALING_PLOT, bench_markdown
    from mcit.bench.schema import BenchError

    parts = []
    for i, source in enumerate(sources):
        try:
            section = bench_markdown(
                source.data,
                out_dir / "plots",
                link_dir="plots",
                plot_name=SCALING_PLOT if i == 0 else f"bench-scaling-{i + 1}.png",
                source=str(source.path),
            )
        except BenchError as exc:
            raise ReportError(str(exc)) from None
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            # A field the schema check does not reach (it checks what every file must have).
            raise ReportError(
                f"{source.path}: does not follow the bench schema (docs/bench.md): "
                f"{type(exc).__name__} {exc}"
            ) from None
        # Each file's section keeps its heading and says which file it comes from.
        heading, _, body = section.partition("\n")
        parts += [heading, "", f"From `{source.path}`.", body.rstrip("\n"), ""]
    return "\n".join(parts)
