"""`report.md` and the PNGs it embeds, for one or several runs of the same stream.

Sections: the runs (with a visible warning when their manifests or stream/seed/budget settings
differ), a summary of the continual metrics, DirectT / ContinualT / CAA per task × method,
MA and BWT per stage × method (and in one figure), an accuracy-matrix heatmap per run, the
efficiency the runs recorded, the methods' own analyses of their last stage, and bench files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mcit.files import write_text_atomic
from mcit.report.bench import find_bench, render_bench_section
from mcit.report.plots import efficiency_figure, heatmap, stage_curves_figure
from mcit.report.runs import RunRecord, load_runs, score_scale, setting_differences
from mcit.report.tables import (
    BWT_NOTE,
    analysis_summary_table,
    efficiency_tables,
    markdown_table,
    per_modality_table,
    per_stage_table,
    per_task_table,
    rehearsal_note,
    summary_table,
)

__all__ = ["Report", "write_report"]

PLOTS_DIR = "plots"


@dataclass
class Report:
    path: Path
    figures: list[Path]
    warnings: list[str] = field(default_factory=list)  # setting differences between the runs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _image(out_dir: Path, path: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})"


def _runs_section(runs: Sequence[RunRecord], notes: Sequence[str], warnings: list[str]) -> str:
    rows = [
        [
            r.display,
            r.run_name,
            f"`{r.path}`",
            f"{r.matrix.stages_done}/{1 if r.matrix.single_stage else len(r.matrix.tasks)}",
            str(r.manifest.get("seed", "–")),
        ]
        for r in runs
    ]
    header = ["method", "run", "folder", "stages done", "seed"]
    parts = [markdown_table(header, rows, left=3)]
    for note in notes:
        parts.append(f"> **Note:** {note}")
    if warnings:
        lines = "\n".join(f"> - {w}" for w in warnings)
        parts.append(
            "> **⚠ Warning: these runs differ in their settings**; their numbers may not be "
            f"comparable:\n>\n{lines}"
        )
    return "\n\n".join(parts)


def _fwt_note(runs: Sequence[RunRecord]) -> str:
    zero_shot = [r.label for r in runs if not r.trains and r.matrix.single_stage]
    if not zero_shot:
        return "FWT needs a zero-shot run in the report and `eval.all_tasks=true` runs."
    return (
        f"FWT uses the scores of {zero_shot[0]} as b_i; it also needs each run to evaluate "
        "tasks before their stage (`eval.all_tasks=true`)."
    )


def write_report(
    run_paths: Sequence[str | Path],
    out_dir: str | Path,
    bench: str | Path | None = None,
    notes: Sequence[str] = (),
) -> Report:
    """Write ``out_dir/report.md`` and ``out_dir/plots/*.png`` for the given run folders.

    `bench` is an extra bench JSON (``--bench``); `notes` are lines shown under the runs
    (e.g. methods that `mcit compare` could not finish). Raises `ReportError` on bad input.
    """
    runs = load_runs(list(run_paths))
    out_dir = Path(out_dir)
    plots = out_dir / PLOTS_DIR
    tasks = runs[0].matrix.tasks
    warnings = setting_differences(runs)
    figures: list[Path] = []
    benchmark = runs[0].results.get("benchmark", "?")

    md = [
        f"# mcit report — {Path(str(benchmark)).name}, {len(runs)} run(s)",
        "",
        f"Stream: {' → '.join(tasks)}. Scores are {score_scale(runs)}{_split_note(runs)}.",
        "",
        _runs_section(runs, notes, warnings),
        "",
        "## Summary",
        "",
        summary_table(runs),
        "",
        "Final MA = MA_T (MCITlib's MFN); mean MA = mean over stages of MA_t (MAA); mean CAA "
        "over tasks 1..T−1; forgetting = Chaudhry's average forgetting after the last stage. "
        + BWT_NOTE,
        "",
        _fwt_note(runs),
    ]
    if any(r.matrix.single_task is not None for r in runs):
        md += [
            "",
            "Alone gap_i = DirectT_i − the score of task i learned alone from the base by the "
            "same method and budget (`mcit compare --single-task`); its mean is over tasks "
            "2..T. Negative: the earlier tasks made learning task i worse (negative forward "
            "transfer).",
        ]
    note = rehearsal_note(runs)
    if note:
        md += ["", note]
    md += [
        "",
        "## Per task: DirectT, ContinualT, CAA",
        "",
        "DirectT_i = a[i][i], right after learning task i; ContinualT_i = a[T][i], after the "
        "last stage; CAA_i = mean of a[j][i] over the stages j > i. Single-stage runs "
        "(multi-task, zero-shot) are measured once: DirectT = ContinualT.",
        "",
        per_task_table(runs),
        "",
    ]
    modality_table = per_modality_table(runs)
    if modality_table:
        md += [
            "## Per modality",
            "",
            "After the last finished stage: the mean ContinualT of each modality's tasks, and "
            "their BWT (mean of a[T][i] − a[i][i] over them, the last task left out): whether "
            "earlier modalities keep working once the stream has moved on.",
            "",
            modality_table,
            "",
        ]
    md += [
        "## Per stage: MA and BWT",
        "",
        "MA_t = mean of a[t][i] over i ≤ t; BWT_t = mean of a[t][i] − a[i][i] over i < t. "
        "A single-stage run's MA is shown under the last stage.",
        "",
        per_stage_table(runs),
        "",
    ]
    curves = stage_curves_figure(plots / "stages_ma_bwt.png", runs)
    figures.append(curves)
    md += [_image(out_dir, curves, "MA and BWT over the stream"), "", "## Accuracy matrices", ""]
    # One colour scale for every run, so a colour means the same score in each heatmap; a CIDEr
    # task (×100, as CoIN reports it) can pass 100 and stretches it to the largest score.
    top = max(100.0, *(v for r in runs for row in r.matrix.matrix for v in row if v is not None))
    for run in runs:
        rows = [
            f"{t + 1}: {name}"
            for t, name in enumerate(run.matrix.stage_names[: run.matrix.stages_done])
        ]
        path = heatmap(
            plots / f"matrix_{_slug(run.label)}.png",
            run.matrix.matrix,
            rows,
            tasks,
            title=f"Accuracy matrix — {run.display}",
            row_label="after training stage",
            col_label="evaluated task",
            value_format=".1f",
            vmin=0.0,
            vmax=top,
            colorbar_label="score (CIDEr ×100 past 100)" if top > 100 else "score (0-100)",
        )
        figures.append(path)
        md += [f"### {run.display}", "", _image(out_dir, path, f"accuracy matrix, {run.label}"), ""]

    totals, per_stage_time = efficiency_tables(runs)
    efficiency = efficiency_figure(plots / "efficiency.png", runs)
    figures.append(efficiency)
    md += [
        "## Efficiency",
        "",
        "As recorded in each results.json: training and evaluation seconds per stage, "
        "trainable and total parameters at the last stage.",
        "",
        totals,
        "",
        "Wall time per stage (training + evaluation, seconds):",
        "",
        per_stage_time,
        "",
        _image(out_dir, efficiency, "wall time and trainable parameters"),
        "",
    ]

    with_analyses = [r for r in runs if r.analyses]
    summaries = analysis_summary_table(runs)
    if with_analyses or summaries:
        md += ["## Method analyses (last stage)", ""]
    if summaries:
        md += ["Values the methods recorded after each stage:", "", summaries, ""]
    if with_analyses:
        for run in with_analyses:
            stage = run.analyses[0].stage
            md += [f"### {run.display} — after stage {stage}", ""]
            for analysis in run.analyses:
                path = heatmap(
                    plots / f"analysis_{_slug(run.label)}_{_slug(analysis.name)}.png",
                    analysis.values,
                    analysis.rows,
                    analysis.cols,
                    title=f"{analysis.title} — {run.display}",
                    row_label=analysis.row_label,
                    col_label=analysis.col_label,
                    value_format=analysis.fmt,
                )
                figures.append(path)
                md += [f"**{analysis.title}**", "", _image(out_dir, path, analysis.title), ""]

    bench_md = render_bench_section(
        find_bench([r.path for r in runs], Path(bench) if bench is not None else None), out_dir
    )
    if bench_md:
        md += [bench_md]

    report_path = out_dir / "report.md"
    write_text_atomic(report_path, "\n".join(md).rstrip() + "\n")
    return Report(report_path, figures, warnings)


def _split_note(runs: list[RunRecord]) -> str:
    """Say so when scores come from held-out training records (data.validation_per_task)."""
    validation = [r.label for r in runs if r.manifest.get("eval_split") == "validation"]
    if not validation:
        return ""
    which = "all runs" if len(validation) == len(runs) else ", ".join(validation)
    return (
        f"; {which}: on held-out training records (data.validation_per_task, one reference "
        "each), not the test set"
    )
