"""The report's figures (PNG, matplotlib's Agg canvas; no pyplot state, no display needed).

Every figure has a title and axis labels; heatmaps write their values in the cells and mark
cells without a value "–". Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mcit.files import atomic_path
from mcit.report.runs import RunRecord, score_scale

__all__ = ["efficiency_figure", "heatmap", "stage_curves_figure"]

DPI = 110


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG atomically (temporary file, then rename); return `path`."""
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: independent of the backend
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    return path


def heatmap(
    path: Path,
    values: Sequence[Sequence[float | None]],
    rows: Sequence[str],
    cols: Sequence[str],
    title: str,
    row_label: str,
    col_label: str,
    value_format: str = ".1f",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar_label: str = "",
) -> Path:
    """A matrix as a heatmap with its values written in the cells ("–" for None)."""
    data = np.array([[np.nan if v is None else float(v) for v in row] for row in values])
    masked = np.ma.masked_invalid(data)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e6e6e6")  # "–": not evaluated
    n_rows, n_cols = data.shape
    fig = Figure(figsize=(max(4.5, 0.95 * n_cols + 3.0), max(3.0, 0.55 * n_rows + 1.8)))
    ax = fig.add_subplot()
    finite = data[np.isfinite(data)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1.0
    image = ax.imshow(masked, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(n_cols), labels=list(cols), rotation=35, ha="right")
    ax.set_yticks(range(n_rows), labels=list(rows))
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_title(title)
    for r in range(n_rows):
        for c in range(n_cols):
            v = data[r, c]
            if np.isnan(v):
                ax.text(c, r, "–", ha="center", va="center", color="#555555", fontsize=9)
                continue
            red, green, blue, _ = cmap((v - lo) / (hi - lo))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(
                c,
                r,
                format(v, value_format),
                ha="center",
                va="center",
                fontsize=9,
                color="white" if dark else "black",
            )
    colorbar = fig.colorbar(image, ax=ax)
    if colorbar_label:
        colorbar.set_label(colorbar_label)
    return save_figure(fig, path)


def stage_curves_figure(path: Path, runs: Sequence[RunRecord]) -> Path:
    """MA_t and BWT_t over the stages, every run in one figure. Single-stage runs (multi-task,
    zero-shot) are dashed horizontal lines at their MA: a level to compare with, not a curve."""
    tasks = runs[0].matrix.tasks
    stages = np.arange(1, len(tasks) + 1)
    fig = Figure(figsize=(max(9.0, 1.1 * len(tasks) + 5), 4.2))
    ax_ma, ax_bwt = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"]
    for k, run in enumerate(runs):
        color = colors(k % 10)
        if run.matrix.single_stage:
            ma = run.metrics.summary.final_ma
            ax_ma.axhline(ma, color=color, linestyle="--", label=f"{run.display} (one stage)")
            continue
        xs = [x.stage for x in run.metrics.per_stage]
        ax_ma.plot(
            xs, [x.ma for x in run.metrics.per_stage], marker="o", color=color, label=run.display
        )
        bwt = [(x.stage, x.bwt) for x in run.metrics.per_stage if x.bwt is not None]
        if bwt:
            ax_bwt.plot(*zip(*bwt, strict=True), marker="o", color=color, label=run.display)
    ax_bwt.axhline(0.0, color="black", linewidth=0.8)
    labels = [f"{t}: {name}" for t, name in zip(stages, tasks, strict=True)]
    for ax in (ax_ma, ax_bwt):
        ax.set_xticks(stages, labels=labels, rotation=35, ha="right")
        ax.set_xlim(0.5, len(tasks) + 0.5)
        ax.set_xlabel("after training stage (task learned)")
        ax.grid(alpha=0.3)
    ax_ma.set_ylabel(f"MA_t: mean score over learned tasks ({score_scale(runs)})")
    ax_ma.set_title("Mean accuracy MA_t")
    ax_bwt.set_ylabel("BWT_t (negative = forgetting)")
    ax_bwt.set_title("Backward transfer BWT_t")
    ax_ma.legend(fontsize=8, loc="best")
    if ax_bwt.lines[1:]:  # the zero line plus at least one curve
        ax_bwt.legend(fontsize=8, loc="best")
    else:
        ax_bwt.text(
            0.5, 0.5, "BWT needs two stages or more", ha="center", transform=ax_bwt.transAxes
        )
    fig.suptitle("MA and BWT over the stream")
    return save_figure(fig, path)


def efficiency_figure(path: Path, runs: Sequence[RunRecord]) -> Path:
    """Wall time (training and evaluation, summed over stages) and the share of trainable
    parameters (last stage) per run, with the numbers on the bars."""
    labels = [run.display for run in runs]
    train = [sum(float(s.get("train_seconds") or 0.0) for s in run.stages) for run in runs]
    evaluation = [sum(float(s.get("eval_seconds") or 0.0) for s in run.stages) for run in runs]
    shares, counts = [], []
    for run in runs:
        last = run.stages[-1] if run.stages else {}
        trainable, total = last.get("trainable_parameters"), last.get("total_parameters")
        shares.append(100.0 * trainable / total if trainable is not None and total else 0.0)
        counts.append(trainable)
    fig = Figure(figsize=(max(9.0, 1.6 * len(runs) + 5), 4.2))
    ax_time, ax_params = fig.subplots(1, 2)
    x = np.arange(len(runs))
    ax_time.bar(x, train, label="training", color="#4c72b0")
    ax_time.bar(x, evaluation, bottom=train, label="evaluation", color="#dd8452")
    for k, (a, b) in enumerate(zip(train, evaluation, strict=True)):
        ax_time.text(k, a + b, f"{a + b:.1f} s", ha="center", va="bottom", fontsize=8)
    ax_time.set_title("Wall time, all stages")
    ax_time.set_ylabel("seconds")
    ax_time.legend(fontsize=8)
    bars = ax_params.bar(x, shares, color="#55a868")
    for bar, share, count in zip(bars, shares, counts, strict=True):
        text = f"{share:.2f} %\n({count:,})" if count is not None else "n/a"
        ax_params.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            text,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax_params.set_title("Trainable parameters (last stage)")
    ax_params.set_ylabel("% of all parameters")
    ax_params.set_ylim(0, max(shares + [1.0]) * 1.3)
    for ax in (ax_time, ax_params):
        ax.set_xticks(x, labels=labels, rotation=25, ha="right")
        ax.set_xlabel("method")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Efficiency recorded by the runs")
    return save_figure(fig, path)
