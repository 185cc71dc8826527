"""Tables of continual metrics and efficiency: Markdown for `report.md`, plain text for the
terminal (`mcit metrics`). Scores are 0-100 with two decimals; "–" where a value is undefined
(CAA of the last task, BWT at stage 1, a stage a run has not reached)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mcit.evaluation.continual import ContinualMetrics, scale_note
from mcit.evaluation.matrix_files import AccuracyMatrix
from mcit.report.runs import NOT_REHEARSAL_FREE_MARK, RECONSTRUCTION_MARK, RunRecord

__all__ = [
    "BWT_NOTE",
    "analysis_summary_table",
    "efficiency_tables",
    "fmt",
    "markdown_table",
    "metrics_text",
    "per_stage_table",
    "per_task_table",
    "rehearsal_note",
    "summary_table",
    "text_table",
]

MISSING = "–"
BWT_NOTE = "BWT: negative means forgetting (the ModalPrompt paper prints −BWT, 'lower is better')."


def fmt(value: float | None, spec: str = ".2f") -> str:
    return MISSING if value is None else format(value, spec)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub Markdown table; the first `left` columns left-aligned, the others (numbers)
    right-aligned."""
    cells = [[str(c).replace("|", "\\|") for c in r] for r in [header, *rows]]
    align = [":--" if k < left else "--:" for k in range(len(header))]
    lines = ["| " + " | ".join(cells[0]) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A fixed-width table; the first `left` columns left-aligned, the others right-aligned."""
    table = [list(map(str, header)), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[k]) for r in table) for k in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if k < left else c.rjust(w)
            for k, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ one stream
def _matrix_rows(matrix: AccuracyMatrix) -> list[list[str]]:
    return [
        [f"{t + 1}: {name}", *(fmt(v) for v in row)]
        for t, (name, row) in enumerate(zip(matrix.stage_names, matrix.matrix, strict=True))
    ]


def metrics_text(matrix: AccuracyMatrix, metrics: ContinualMetrics) -> str:
    """The readable form of `mcit metrics`: the matrix, per task, per stage, summary."""
    s = metrics.summary
    alone = matrix.single_task is not None
    parts = [
        f"Accuracy matrix of {matrix.source} (rows: after training stage; columns: task; "
        f"scores {scale_note(matrix.ceilings)})",
        text_table(["after stage", *matrix.tasks], _matrix_rows(matrix)),
    ]
    if matrix.zero_shot is not None:
        pairs = zip(matrix.tasks, matrix.zero_shot, strict=True)
        parts.append("zero-shot (b_i): " + ", ".join(f"{t} {fmt(v)}" for t, v in pairs))
    if not matrix.complete:
        parts.append(
            f"(run in progress: {matrix.stages_done} of {len(matrix.tasks)} stages; the metrics "
            "below cover the finished stages)"
        )
    parts += [
        "",
        "Per task (DirectT: right after learning it; ContinualT: after the last stage; CAA: mean "
        "over the later stages)",
        text_table(
            ["task", "DirectT", "ContinualT", "CAA", *(["alone", "alone gap"] if alone else [])],
            [
                [x.task, fmt(x.direct), fmt(x.final), fmt(x.caa)]
                + ([fmt(matrix.single_task[i]), fmt(x.alone_gap)] if alone else [])
                for i, x in enumerate(metrics.per_task)
            ],
        ),
        "",
        "Per stage (MA: mean over the tasks learned so far; " + BWT_NOTE + ")",
        text_table(
            ["stage", "task", "MA", "BWT"],
            [[str(x.stage), x.task, fmt(x.ma), fmt(x.bwt)] for x in metrics.per_stage],
            left=2,
        ),
        "",
        "Summary",
        text_table(
            ["metric", "value"],
            [
                ["final MA (MFN)", fmt(s.final_ma)],
                ["mean MA (MAA)", fmt(s.mean_ma)],
                ["final BWT", fmt(s.final_bwt)],
                ["mean BWT", fmt(s.mean_bwt)],
                ["mean CAA", fmt(s.mean_caa)],
                ["forgetting (Chaudhry)", fmt(s.forgetting)],
                ["FWT", fmt(s.fwt)],
                *([["mean alone gap (tasks 2..T)", fmt(s.mean_alone_gap)]] if alone else []),
            ],
        ),
    ]
    if s.fwt is None and len(metrics.tasks) > 1 and not matrix.single_stage:
        parts.append(
            "FWT needs zero-shot scores and evaluations of tasks before their stage "
            "(eval.all_tasks=true)."
        )
    return "\n".join(parts)


# ------------------------------------------------------------------------------ several runs
def per_task_table(runs: Sequence[RunRecord]) -> str:
    """DirectT / ContinualT / CAA per task × run, with the mean over tasks; and the alone gap
    (DirectT − the task learned alone) for runs with single-task references, its mean over
    tasks 2..T."""
    tasks = runs[0].matrix.tasks
    rows = []
    for run in runs:
        by_task = {x.task: x for x in run.metrics.per_task}
        measures = [("direct", "DirectT"), ("final", "ContinualT"), ("caa", "CAA")]
        if run.matrix.single_task is not None:
            measures.append(("alone_gap", "alone gap"))
        for key, name in measures:
            values = [getattr(by_task[t], key) if t in by_task else None for t in tasks]
            mean = run.metrics.summary.mean_alone_gap if key == "alone_gap" else _mean(values)
            rows.append([run.display, name, *(fmt(v) for v in values), fmt(mean)])
    return markdown_table(["method", "metric", *tasks, "mean"], rows, left=2)


def per_modality_table(runs: Sequence[RunRecord]) -> str:
    """Per modality (the runs' `task_modalities`) × run, after the last finished stage: the
    mean final score of that modality's tasks, and their BWT (the mean of A_T,i − A_i,i over
    them, the last task left out as in BWT). Empty when the stream has one modality."""
    modalities = runs[0].results.get("task_modalities") or {}
    kinds = list(dict.fromkeys(modalities.get(t) for t in runs[0].matrix.tasks))
    if len(kinds) < 2 or None in kinds:
        return ""
    rows = []
    for run in runs:
        by_task = {x.task: x for x in run.metrics.per_task}
        last = run.matrix.tasks[len(run.metrics.per_stage) - 1] if run.metrics.per_stage else None
        finals, bwts = [], []
        for kind in kinds:
            mine = [
                by_task[t] for t in run.matrix.tasks if modalities.get(t) == kind and t in by_task
            ]
            finals.append(_mean([x.final for x in mine]))
            forgetting = [
                x.final - x.direct
                for x in mine
                if x.task != last and x.final is not None and x.direct is not None
            ]
            bwts.append(_mean(forgetting) if not run.matrix.single_stage else None)
        rows.append([run.display, "final", *(fmt(v) for v in finals)])
        rows.append([run.display, "BWT", *(fmt(v) for v in bwts)])
    return markdown_table(["method", "metric", *kinds], rows, left=2)


def per_stage_table(runs: Sequence[RunRecord]) -> str:
    """MA_t and BWT_t per stage × run. A single-stage run (multi-task, zero-shot) has learned
    every task when it is measured, so its MA sits under the last stage."""
    tasks = runs[0].matrix.tasks
    rows = []
    for run in runs:
        ma: list[float | None] = [None] * len(tasks)
        bwt: list[float | None] = [None] * len(tasks)
        if run.matrix.single_stage:
            ma[-1] = run.metrics.per_stage[0].ma
        else:
            for x in run.metrics.per_stage:
                ma[x.stage - 1], bwt[x.stage - 1] = x.ma, x.bwt
        s = run.metrics.summary
        rows.append([run.display, "MA", *(fmt(v) for v in ma), fmt(s.mean_ma)])
        rows.append([run.display, "BWT", *(fmt(v) for v in bwt), fmt(s.mean_bwt)])
    header = ["method", "metric", *(f"{t + 1}: {name}" for t, name in enumerate(tasks)), "mean"]
    return markdown_table(header, rows, left=2)


def summary_table(runs: Sequence[RunRecord]) -> str:
    """One row per run; an "alone gap" column when any run has single-task references."""
    gaps = any(run.matrix.single_task is not None for run in runs)
    rows = []
    for run in runs:
        s = run.metrics.summary
        stages = f"{run.matrix.stages_done}" + ("" if run.matrix.complete else " (incomplete)")
        rows.append(
            [
                run.display,
                "yes" if run.rehearsal_free else "no",
                stages,
                fmt(s.final_ma),
                fmt(s.mean_ma),
                fmt(s.final_bwt),
                fmt(s.mean_bwt),
                fmt(s.mean_caa),
                fmt(s.forgetting),
                fmt(s.fwt),
            ]
        )
        if gaps:
            rows[-1].append(fmt(s.mean_alone_gap))
    header = [
        "method",
        "rehearsal-free",
        "stages",
        "final MA",
        "mean MA",
        "final BWT",
        "mean BWT",
        "mean CAA",
        "forgetting",
        "FWT",
    ]
    if gaps:
        header.append("alone gap")
    return markdown_table(header, rows, left=2)


def _int(n: int | None) -> str:
    return MISSING if n is None else f"{n:,}"


def efficiency_tables(runs: Sequence[RunRecord]) -> tuple[str, str]:
    """(totals per run, wall time per stage × run) from what results.json recorded."""
    totals = []
    for run in runs:
        stages = run.stages
        train = math.fsum(float(s.get("train_seconds") or 0.0) for s in stages)
        evaluation = math.fsum(float(s.get("eval_seconds") or 0.0) for s in stages)
        steps = sum(int(s.get("train_steps") or 0) for s in stages)
        last = stages[-1] if stages else {}
        trainable, total = last.get("trainable_parameters"), last.get("total_parameters")
        share = 100.0 * trainable / total if trainable is not None and total else None
        totals.append(
            [
                run.display,
                str(len(stages)),
                str(steps),
                f"{train:.1f}",
                f"{evaluation:.1f}",
                f"{train + evaluation:.1f}",
                _int(trainable),
                _int(total),
                MISSING if share is None else f"{share:.3f} %",
            ]
        )
    totals_table = markdown_table(
        [
            "method",
            "stages",
            "train steps",
            "train s",
            "eval s",
            "total s",
            "trainable params (last stage)",
            "total params",
            "trainable %",
        ],
        totals,
    )
    n_stages = max(len(run.stages) for run in runs)
    per_stage = []
    for run in runs:
        cells = []
        for t in range(n_stages):
            if t < len(run.stages):
                s = run.stages[t]
                wall = float(s.get("train_seconds") or 0.0) + float(s.get("eval_seconds") or 0.0)
                cells.append(f"{wall:.1f}")
            else:
                cells.append(MISSING)
        per_stage.append([run.display, *cells])
    per_stage_table_md = markdown_table(
        ["method", *(f"stage {t + 1}" for t in range(n_stages))], per_stage
    )
    return totals_table, per_stage_table_md


def rehearsal_note(runs: Sequence[RunRecord]) -> str:
    """The footnotes for runs marked as not rehearsal-free or as reconstructions (empty when
    there are none)."""
    notes = []
    flagged = [r.label for r in runs if not r.rehearsal_free]
    if flagged:
        notes.append(
            f"{NOT_REHEARSAL_FREE_MARK} not rehearsal-free: keeps samples of earlier tasks "
            f"({', '.join(flagged)}); shown as a reference, not comparable with rehearsal-free "
            "methods."
        )
    # One footnote per distinct note: a method's ablations share it, and listing them
    # together says so instead of repeating the same sentence for each.
    labels_by_note: dict[str, list[str]] = {}
    for r in runs:
        if r.reconstruction:
            labels_by_note.setdefault(r.reconstruction, []).append(r.label)
    notes += [
        f"{RECONSTRUCTION_MARK} {', '.join(labels)}: {note}."
        for note, labels in labels_by_note.items()
    ]
    return " ".join(notes)


def analysis_summary_table(runs: Sequence[RunRecord]) -> str:
    """The scalars a method recorded per stage beside its analyses (results.json
    ``stages[t].analysis``, e.g. ModalPrompt's selection accuracy); empty when none did."""
    n_stages = max(len(run.stages) for run in runs)
    rows = []
    for run in runs:
        keys: list[str] = []
        for stage in run.stages:
            extra = stage.get("analysis")
            if isinstance(extra, dict):
                keys += [k for k in extra if k not in keys]
        for key in keys:
            cells = []
            for t in range(n_stages):
                extra = run.stages[t].get("analysis") if t < len(run.stages) else None
                value = extra.get(key) if isinstance(extra, dict) else None
                number = isinstance(value, int | float) and not isinstance(value, bool)
                cells.append(format(value, ".3f") if number else MISSING)
            rows.append([run.display, key, *cells])
    if not rows:
        return ""
    return markdown_table(
        ["method", "value", *(f"stage {t + 1}" for t in range(n_stages))], rows, left=2
    )
