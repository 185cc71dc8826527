"""A bench file as tables (Markdown for `mcit report`, plain text for the terminal) and the
scaling figure (PNG), plus the paper's efficiency claims checked against the measurements.

`bench_markdown(bench, plots_dir)` is what `mcit report` calls for `RUN/bench.json` or
`--bench FILE`: it checks the file against the schema, writes `plots_dir/bench-scaling.png`
when the file has a scaling section, and returns the Markdown section that links it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from mcit.bench.paper import PaperFigures, paper_figures
from mcit.bench.schema import validate_bench
from mcit.report.plots import save_figure

SCALING_PLOT = "bench-scaling.png"


# ---------------------------------------------------------------------------- formatting
def _count(n: int | None) -> str:
    if n is None:
        return "–"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:,.0f}"


def _summary(s: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    """median [q1–q3]"""
    if not s:
        return "–"
    return (
        f"{_num(s['median'] * scale, digits)} "
        f"[{_num(s['q1'] * scale, digits)}–{_num(s['q3'] * scale, digits)}]"
    )


def _ratio(vs: dict | None, ref: str, kind: str) -> str:
    if not vs or ref not in vs:
        return "–"
    s = vs[ref][kind]
    return f"{s['median']:.2f}× [{s['q1']:.2f}–{s['q3']:.2f}]"


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    out = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in out
    )


def _inference(entry: dict, batch: int) -> dict | None:
    return next((i for i in entry.get("inference", []) if i["batch"] == batch), None)


# ---------------------------------------------------------------------------- tables
def _times(label: str | None) -> str:
    return f"× {label}" if label else "× baseline"


def parameters_training_table(bench: dict, markdown: bool) -> str:
    refs = bench["settings"]["references"]
    headers = [
        "method",
        "trainable",
        "trainable %",
        "added",
        "train s/step",
        "samples/s",
        f"time {_times(refs['baseline'])}",
        "peak MB",
        "rise MB",
        "alone MB (est.)",
    ]
    rows = []
    for label, e in bench["methods"].items():
        p, t = e["parameters"], e.get("train")
        memory = (t or {}).get("memory") or {}
        rows.append(
            [
                label,
                _count(p["trainable"]),
                f"{p['trainable_pct']:.3g}",
                _count(p["added"]),
                _summary(t["step_seconds"]) if t else "–",
                _summary(t["samples_per_second"]) if t else "–",
                _ratio(t["vs"], refs["baseline"], "time") if t else "–",
                _num(memory.get("peak_mb"), 4),
                _num(memory.get("rise_mb"), 3),
                _num(memory.get("alone_estimate_mb"), 4),
            ]
        )
    return _table(headers, rows, markdown)


def inference_table(bench: dict, markdown: bool) -> str:
    refs = bench["settings"]["references"]
    batches = bench["settings"]["infer_batches"]
    headers = ["method", "LM prefill tokens"]
    for b in batches:
        headers += [
            f"b{b} ms/sample",
            f"b{b} tokens/s",
            f"b{b} speed × base",
            f"b{b} speed {_times(refs['baseline'])}",
        ]
    headers += [f"b{batches[-1]} rise MB"]
    rows = []
    for label, e in bench["methods"].items():
        first = _inference(e, batches[0]) or {}
        row = [label, str(first.get("prefill_tokens", "–"))]
        for b in batches:
            inf = _inference(e, b)
            if inf is None:
                row += ["–"] * 4
                continue
            row += [
                _summary(inf["latency_per_sample_s"], 1e3),
                _summary(inf["tokens_per_second"]),
                _ratio(inf["vs"], refs["base"], "speed"),
                _ratio(inf["vs"], refs["baseline"], "speed"),
            ]
        last = _inference(e, batches[-1]) or {}
        row.append(_num((last.get("memory") or {}).get("rise_mb"), 3))
        rows.append(row)
    return _table(headers, rows, markdown)


def scaling_table(bench: dict, markdown: bool) -> str:
    """Median latency per sample (ms) at each number of learned tasks T."""
    scaling = bench["scaling"]
    tasks = scaling["tasks"]
    rows = []
    for label, entries in scaling["methods"].items():
        by_t = {e["tasks"]: e for e in entries}
        rows.append(
            [label] + [_summary(by_t[t]["latency_s"], 1e3) if t in by_t else "–" for t in tasks]
        )
    return _table(["method"] + [f"T={t}" for t in tasks], rows, markdown)


def growth_table(bench: dict, markdown: bool) -> str:
    """Latency at each T over that at the reference T: relative to the base model measured in
    the same rounds (drift cancelled), then raw."""
    scaling = bench["scaling"]
    tasks = scaling["tasks"]
    rows = []
    for label, entries in scaling["methods"].items():
        g = scaling.get("growth", {}).get(label)
        if not g:
            continue
        by_t = dict(zip([e["tasks"] for e in entries], range(len(entries)), strict=True))
        cells = []
        for t in tasks:
            if t not in by_t:
                cells.append("–")
                continue
            i = by_t[t]
            normalised = g["base_normalised"][i]
            cells.append(
                f"{'–' if normalised is None else f'{normalised:.3f}'} ({g['raw'][i]:.3f})"
            )
        rows.append([label] + cells)
    return _table(["method"] + [f"T={t}" for t in tasks], rows, markdown)


def prefix_table(bench: dict, markdown: bool) -> str:
    """LM input length (prefill) per T: prompts a method prepends grow with T or not."""
    scaling = bench["scaling"]
    tasks = scaling["tasks"]
    headers = ["method"] + [f"T={t}" for t in tasks]
    rows = []
    for label, entries in scaling["methods"].items():
        by_t = {e["tasks"]: e for e in entries}
        rows.append(
            [label] + [str(by_t[t].get("prefill_tokens", "–")) if t in by_t else "–" for t in tasks]
        )
    return _table(headers, rows, markdown)


def paper_table(bench: dict, markdown: bool) -> str:
    paper = bench["paper_accounting"]
    headers = ["method", "tasks", "trainable", "total", "trainable %", "paper %", "nearest reading"]
    rows = []
    for name, e in paper["methods"].items():
        nearest = next((v for v in e["variants"] if v["label"] == e.get("nearest_variant")), None)
        rows.append(
            [
                name,
                str(e["tasks"]),
                _count(e["trainable"]),
                _count(e["total"]),
                f"{e['trainable_pct']:.3f}",
                "–" if e.get("paper_pct") is None else f"{e['paper_pct']:.2f}",
                f"{nearest['pct']:.3f}: {nearest['label']}" if nearest else "–",
            ]
        )
    return _table(headers, rows, markdown)


# ---------------------------------------------------------------------------- claims
def claims(bench: dict, paper: PaperFigures | None = None) -> list[dict[str, Any]]:
    """The paper's efficiency claims for its method (`mcit.bench.paper`), each with the
    measured value and, where mcit sets a target, whether it is met. Empty when the method or
    the baseline is not in the bench."""
    paper = paper or paper_figures()
    methods = bench["methods"]
    refs = bench["settings"]["references"]
    baseline = refs["baseline"]
    mine, theirs = methods.get(paper.method), methods.get(baseline) if baseline else None
    out: list[dict[str, Any]] = []
    if mine is None or theirs is None:
        return out
    targets = paper.targets
    for inf in mine.get("inference", []):
        b = inf["batch"]
        speed = inf["vs"].get(baseline, {}).get("speed", {}).get("median")
        base = inf["vs"].get(refs["base"], {}).get("speed", {}).get("median")
        if speed is not None:
            target = targets["inference_speed_vs_baseline"]
            out.append(
                {
                    "claim": f"inference throughput × {baseline} (batch {b})",
                    "paper": paper.ratio("inference_speed"),
                    "measured": speed,
                    "target": f"≥ {target:g}",
                    "met": speed >= target,
                }
            )
        if base is not None:
            target = targets["inference_speed_vs_base"]
            out.append(
                {
                    "claim": f"inference throughput × base model (batch {b})",
                    "paper": None,
                    "measured": base,
                    "target": f"≥ {target:g}",
                    "met": base >= target,
                }
            )
    train = mine.get("train") or {}
    time_ratio = train.get("vs", {}).get(baseline, {}).get("time", {}).get("median")
    if time_ratio is not None:
        paper_time = paper.ratio("training_time")
        out.append(
            {
                "claim": f"training time × {baseline} (per optimizer step)",
                "paper": paper_time,
                "measured": time_ratio,
                "target": "< 1 (faster)"
                + (f", paper {paper_time:.2f}" if paper_time is not None else ""),
                "met": time_ratio < 1.0,
            }
        )
    printed = [paper.trainable_pct.get(name) for name in (paper.method, baseline)]
    out.append(
        {
            "claim": f"trainable % (current backbone): {paper.method} vs {baseline}",
            "paper": " vs ".join("–" if p is None else f"{p:g}" for p in printed),
            "measured": f"{mine['parameters']['trainable_pct']:.3g} vs "
            f"{theirs['parameters']['trainable_pct']:.3g}",
            "target": f"{paper.method} smaller",
            "met": mine["parameters"]["trainable_pct"] < theirs["parameters"]["trainable_pct"],
        }
    )
    scaling = bench.get("scaling") or {}
    growth = (scaling.get("growth") or {}).get(paper.method)
    if growth and 64 in scaling["tasks"] and growth.get("reference_tasks") == 8:
        i = scaling["tasks"].index(64)
        target = targets["latency_growth_64_vs_8"]
        for kind in ("base_normalised", "raw"):
            value = growth[kind][i]
            if value is not None:
                out.append(
                    {
                        "claim": f"latency at T=64 / at T=8 ({kind.replace('_', ' ')})",
                        "paper": "flat",
                        "measured": value,
                        "target": f"≤ {target:g}",
                        "met": value <= target,
                    }
                )
    return out


def claims_table(bench: dict, markdown: bool) -> str:
    rows = []
    for c in claims(bench):
        paper, measured = c["paper"], c["measured"]
        rows.append(
            [
                c["claim"],
                f"{paper:.2f}" if isinstance(paper, float) else str(paper or "–"),
                f"{measured:.3f}" if isinstance(measured, float) else str(measured),
                c["target"],
                "yes" if c["met"] else "no",
            ]
        )
    return _table(["claim", "paper", "measured", "target", "met"], rows, markdown)


# ---------------------------------------------------------------------------- figure
def scaling_figure(bench: dict, path: Path) -> Path:
    """Latency per sample (median, IQR bars) against T, and the same relative to the base."""
    scaling = bench["scaling"]
    fig = Figure(figsize=(10.5, 4.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    labels = list(scaling["methods"])
    palette = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    markers = "os^vD<>phX*"
    for i, label in enumerate(labels):  # one colour and marker per method in both panels
        entries = scaling["methods"][label]
        style = {"color": palette(i % palette.N), "marker": markers[i % len(markers)]}
        ts = [e["tasks"] for e in entries]
        med = [e["latency_s"]["median"] * 1e3 for e in entries]
        low = [m - e["latency_s"]["q1"] * 1e3 for m, e in zip(med, entries, strict=True)]
        high = [e["latency_s"]["q3"] * 1e3 - m for m, e in zip(med, entries, strict=True)]
        left.errorbar(ts, med, yerr=[low, high], capsize=3, label=label, **style)
        if all(e.get("vs_base") for e in entries):
            right.plot(ts, [e["vs_base"]["time"]["median"] for e in entries], **style)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(scaling["tasks"], labels=[str(t) for t in scaling["tasks"]])
        ax.set_xlabel("learned tasks T")
        ax.grid(alpha=0.3)
    left.set_ylabel(f"latency per sample, ms (batch {scaling['batch']})")
    left.set_title(f"Inference latency, {scaling['new_tokens']} new tokens")
    right.axhline(1.0, color="#888888", linewidth=0.8)
    right.set_ylabel("latency × base model (pair by pair, median)")
    right.set_title("Relative to the base model")
    left.legend(fontsize=8)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- documents
def _settings_line(bench: dict) -> str:
    s, env = bench["settings"], bench.get("environment", {})
    device = env.get("gpu") or env.get("device", "?")
    return (
        f"{bench.get('backbone', {}).get('name', '?')} backbone "
        f"({_count(bench.get('backbone', {}).get('parameters'))} parameters), {s.get('dtype')}, "
        f"{device}, {env.get('torch_threads', '?')} threads; task {s.get('task')}; "
        f"methods at stage {s['stage']}; {s['rounds']} rounds after {s.get('warmup')} warm-up, "
        f"interleaved; timer {s.get('timer')}; {s['new_tokens']} new tokens per sample; "
        f"training batch {s['train_batch']}. Cells: median [q1–q3]; ratios pair by pair."
    )


def bench_markdown(
    bench: dict,
    plots_dir: str | Path,
    link_dir: str | None = None,
    plot_name: str = SCALING_PLOT,
    source: str = "bench",
) -> str:
    """The bench section of a report: settings, tables, claims and the scaling figure, written
    to `plots_dir/<plot_name>` and linked as `<link_dir>/<plot_name>` (default: the folder's
    name, for a report written beside `plots_dir`; give each bench file its own `plot_name`).
    A file that does not follow the schema raises BenchError naming `source` and the field."""
    validate_bench(bench, source)
    plots_dir = Path(plots_dir)
    parts = [
        "## Efficiency benchmark (`mcit bench`)",
        "",
        _settings_line(bench),
        "",
        f"### Parameters and training (training state at stage {bench['settings']['stage']})",
        "",
        parameters_training_table(bench, markdown=True),
        "",
        "Peak MB is the whole process's peak during the method's calls (all methods share one "
        "process); rise MB is how far a call rose above what was in use when it began. On a "
        "CPU that is resident memory, and the allocator keeps what earlier calls freed, so a "
        "rise shows only growth beyond it (often 0). Alone MB estimates what training the method "
        "alone would hold: its tensors (backbone and frozen helpers included), the optimizer "
        "state and the step's rise.",
        "",
        f"### Inference after {bench['settings']['stage']} tasks",
        "",
        inference_table(bench, markdown=True),
    ]
    if bench.get("scaling"):
        scaling_figure(bench, plots_dir / plot_name)
        link = f"{link_dir if link_dir is not None else plots_dir.name}/{plot_name}"
        parts += [
            "",
            f"### Scaling with the number of learned tasks (batch {bench['scaling']['batch']})",
            "",
            scaling_table(bench, markdown=True),
            "",
            f"Latency over that at T={bench['scaling']['reference_tasks']}, ÷ the base model's "
            "(pair by pair, so a change of machine speed between the blocks of T cancels), "
            "and raw in parentheses:",
            "",
            growth_table(bench, markdown=True),
            "",
            "LM input tokens at the first generation step (prompts included):",
            "",
            prefix_table(bench, markdown=True),
            "",
            f"![inference latency against learned tasks]({link})",
        ]
    if claims(bench):
        parts += [
            "",
            f"### The paper's efficiency claims ({paper_figures().source})",
            "",
            claims_table(bench, markdown=True),
        ]
    if bench.get("paper_accounting"):
        parts += [
            "",
            "### Trainable parameters on LLaVA-1.5-7B (counted without weights)",
            "",
            paper_table(bench, markdown=True),
        ]
    return "\n".join(parts) + "\n"


def bench_text(bench: dict) -> str:
    """The same tables for a terminal."""
    parts = [
        _settings_line(bench),
        "",
        f"Parameters and training (training state at stage {bench['settings']['stage']})",
        parameters_training_table(bench, markdown=False),
        "",
        f"Inference after {bench['settings']['stage']} tasks",
        inference_table(bench, markdown=False),
    ]
    if bench.get("scaling"):
        parts += [
            "",
            f"Scaling: latency per sample at batch {bench['scaling']['batch']}, ms",
            scaling_table(bench, markdown=False),
            "",
            f"Latency over that at T={bench['scaling']['reference_tasks']}: ÷ base (raw)",
            growth_table(bench, markdown=False),
            "",
            "LM input tokens at the first generation step",
            prefix_table(bench, markdown=False),
        ]
    if claims(bench):
        parts += [
            "",
            f"The paper's efficiency claims ({paper_figures().source})",
            claims_table(bench, False),
        ]
    if bench.get("paper_accounting"):
        parts += ["", "Trainable parameters on LLaVA-1.5-7B", paper_table(bench, False)]
    return "\n".join(parts)
