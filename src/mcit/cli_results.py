"""The result subcommands of `mcit`: `metrics`, `score`, `report` and `compare`.

Kept beside `mcit.cli` (which registers them with `add_result_commands`) so the run, data and
result commands can grow independently. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["add_result_commands"]


def _fail(command: str, err: Exception) -> int:
    print(f"mcit {command}: error: {err}", file=sys.stderr)
    return 2


def _cmd_metrics(args: argparse.Namespace) -> int:
    from mcit.errors import MatrixError
    from mcit.evaluation.matrix_files import (
        load_accuracy_matrix,
        read_results_json,
        zero_shot_scores,
    )
    from mcit.methods.base import method_trains
    from mcit.report.tables import metrics_text

    try:
        matrix = load_accuracy_matrix(args.path)
        if args.zero_shot is not None:
            if matrix.single_stage:
                raise MatrixError(
                    f"{args.path}: a single-stage run has no forward transfer (--zero-shot)"
                )
            zero_shot_run = read_results_json(args.zero_shot)
            if zero_shot_run.trains is None:  # a results.json from before 'trains' was recorded
                zero_shot_run.trains = method_trains(zero_shot_run.method)
            b = zero_shot_scores(zero_shot_run, matrix.tasks)
            matrix = matrix.with_zero_shot(b, zero_shot_run)
        metrics = matrix.continual_metrics()
    except MatrixError as err:
        return _fail("metrics", err)
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
    else:
        print(metrics_text(matrix, metrics))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from mcit.errors import PredictionsFileError
    from mcit.evaluation.prediction_files import score_file
    from mcit.report.tables import text_table

    try:
        scores, errors = score_file(args.path, default_metric=args.metric)
    except PredictionsFileError as err:
        return _fail("score", err)
    for err in errors:
        print(f"mcit score: error: {err}", file=sys.stderr)
    if scores.n == 0:
        return _fail("score", ValueError(f"{args.path}: no line could be scored"))
    if args.json:
        print(json.dumps(scores.to_dict(), indent=2))
    else:
        rows = [[m, str(s.n), f"{s.score:.2f}"] for m, s in scores.by_metric.items()]
        rows.append(["overall (mean over lines)", str(scores.n), f"{scores.overall:.2f}"])
        print(text_table(["metric", "n", "score (0-100)"], rows))
        if "cider" in scores.by_metric:
            print("cider: corpus CIDEr-D ×100 over the file's captions (can exceed 100)")
    if errors:
        print(
            f"mcit score: {len(errors)} bad line(s) left out; the scores cover the other "
            f"{scores.n}",
            file=sys.stderr,
        )
        return 2
    return 0


def _report_dir(runs: list[str], out: str | None) -> Path:
    if out is not None:
        return Path(out)
    dirs = [Path(r).parent if Path(r).name == "results.json" else Path(r) for r in runs]
    if len(dirs) == 1:
        return dirs[0]
    return Path(os.path.commonpath([d.resolve() for d in dirs]))


def _cmd_report(args: argparse.Namespace) -> int:
    from mcit.errors import ReportError
    from mcit.report.report import write_report

    out = _report_dir(args.runs, args.out)
    try:
        report = write_report(args.runs, out, bench=args.bench)
    except ReportError as err:
        return _fail("report", err)
    for warning in report.warnings:
        print(f"mcit report: warning: the runs differ: {warning}", file=sys.stderr)
    print(
        f"wrote {report.path} and {len(report.figures)} figure(s) in {report.path.parent / 'plots'}"
    )
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mcit.compare import compare

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = compare(
        args.benchmark,
        methods,
        out_dir=args.out,
        overrides=args.overrides,
        configs_dir=args.configs,
        progress=not args.quiet,
        bench=args.bench,
        single_task=args.single_task,
    )
    if result.failed:
        print(
            "mcit compare: failed: "
            + "; ".join(f"{m}: {reason}" for m, reason in result.failed.items()),
            file=sys.stderr,
        )
        return 1
    return 0


def add_result_commands(sub: argparse._SubParsersAction) -> None:
    """Register `metrics`, `score`, `report` and `compare` on the `mcit` subparsers."""
    p = sub.add_parser(
        "metrics", help="continual metrics of a run's results.json or a CSV accuracy matrix"
    )
    p.add_argument("path", help="results.json, a run folder, or a CSV: stage,<task 1>,...")
    p.add_argument("--json", action="store_true", help="print the metrics object as JSON")
    p.add_argument(
        "--zero-shot",
        default=None,
        metavar="RESULTS",
        help="a zero-shot run's results.json (or folder): its scores are FWT's b_i",
    )
    p.set_defaults(func=_cmd_metrics)

    p = sub.add_parser("score", help="score a predictions JSONL from any source")
    p.add_argument("path", help='JSONL: {"id", "metric", "prediction", "references"} per line')
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument(
        "--metric", default=None, help="metric of the lines that name none (e.g. mcit's own files)"
    )
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("report", help="report.md + plots/*.png for runs of the same stream")
    p.add_argument("runs", nargs="+", help="run folders (or their results.json)")
    p.add_argument(
        "--out", default=None, help="output folder (default: the run's folder, or the runs' parent)"
    )
    p.add_argument("--bench", default=None, help="a bench JSON to include")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "compare", help="run several methods on one stream, seed and budget, then one report"
    )
    p.add_argument("--benchmark", required=True, help="e.g. coin-mini (configs/<benchmark>/)")
    p.add_argument("--methods", required=True, help="comma-separated, e.g. finetune,finetune-lora")
    p.add_argument("--out", default=None, help="output folder (default: runs/compare-<benchmark>)")
    p.add_argument("--configs", default=None, help="folder with <benchmark>/<method>.yaml")
    p.add_argument("--bench", default=None, help="a bench JSON to include in the report")
    p.add_argument(
        "--single-task",
        action="store_true",
        help="also learn each task alone from the base with each continual method (cached "
        "under OUT/single-task/), for each task's alone gap in the report",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every method")
    p.set_defaults(func=_cmd_compare)
