"""`mcit compare`: several methods on one stream, seed and budget, then one report.

Each method runs from its ready config ``configs/<benchmark>/<method>.yaml``; a "method" here
is the config's name, so a variant such as ``modalprompt-L20.yaml`` (method.name: modalprompt)
is compared like any other and runs into its own folder. The keys that
fix the stream, the seed and the budget (`mcit.report.runs.COMPARABLE_CONFIG_KEYS`) are taken
from the first method's config plus the command's key=value overrides and forced onto every
other method, saying which value of which method was replaced. Each method runs (or resumes)
into ``OUT/<method>/`` with `mcit.runner.run`; a method that fails is reported and the others
go on; the report covers the methods that finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.config import RunConfig, load_config, parse_overrides, to_dict
from mcit.errors import ConfigError
from mcit.files import read_json
from mcit.report.runs import COMPARABLE_CONFIG_KEYS

__all__ = [
    "CompareResult",
    "compare",
    "config_search_path",
    "find_method_config",
    "prepare_configs",
]

_RESERVED_OVERRIDES = ("name", "output_dir", "method")


@dataclass
class CompareResult:
    out_dir: Path
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # method -> one-line reason
    report: Path | None = None


def config_search_path(configs_dir: str | Path | None = None) -> list[Path]:
    """Where method configs are looked up, in order: `--configs`, ``./configs``, and the
    repository's ``configs/`` next to the package (an editable install)."""
    import mcit

    candidates = [Path(configs_dir)] if configs_dir is not None else []
    candidates += [Path.cwd() / "configs", Path(mcit.__file__).resolve().parents[2] / "configs"]
    seen: list[Path] = []
    for path in candidates:
        if path.resolve() not in [p.resolve() for p in seen]:
            seen.append(path)
    return seen


def find_method_config(benchmark: str, method: str, configs_dir: str | Path | None = None) -> Path:
    """``<dir>/<benchmark>/<method>.yaml`` from the first directory of the search path that
    has it; a `ConfigError` listing the configs that exist otherwise."""
    search = config_search_path(configs_dir)
    if configs_dir is not None and not Path(configs_dir).is_dir():
        raise ConfigError(f"--configs {configs_dir}: no such directory")
    for root in search:
        path = root / benchmark / f"{method}.yaml"
        if path.is_file():
            return path
    available = sorted(
        {
            p.stem
            for root in search
            if (root / benchmark).is_dir()
            for p in (root / benchmark).glob("*.yaml")
        }
    )
    where = ", ".join(str(root / benchmark) for root in search)
    known = ", ".join(available) if available else "none"
    raise ConfigError(
        f"no config for method '{method}' on benchmark '{benchmark}' (looked in {where}); "
        f"available: {known}"
    )


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def _leaves(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}.{key}"))
        return out
    return {prefix: tree}


def _force(config: RunConfig, reference: RunConfig) -> tuple[RunConfig, list[tuple[str, Any, Any]]]:
    """`config` with the comparable keys of `reference`; the (key, old, new) that changed."""
    before, ref = to_dict(config), to_dict(reference)
    changes = []
    for key in COMPARABLE_CONFIG_KEYS:
        old, new = _leaves(_get(before, key), key), _leaves(_get(ref, key), key)
        changes += [(k, old[k], new[k]) for k in new if old.get(k) != new[k]]
    forced = dataclasses.replace(
        config,
        seed=reference.seed,
        data=dataclasses.replace(reference.data),
        eval=dataclasses.replace(reference.eval),
        train=dataclasses.replace(
            config.train,
            epochs=reference.train.epochs,
            max_steps_per_task=reference.train.max_steps_per_task,
            batch_size=reference.train.batch_size,
            grad_accum=reference.train.grad_accum,
        ),
    )
    return forced, changes


def prepare_configs(
    benchmark: str,
    methods: Sequence[str],
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    configs_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[tuple[str, RunConfig]]:
    """Each method's run config: its YAML + the overrides, with the first method's stream,
    seed and budget forced, written to ``out_dir/<method>``. Fails before any training."""
    if not methods:
        raise ConfigError("--methods: no method given")
    duplicates = sorted({m for m in methods if list(methods).count(m) > 1})
    if duplicates:
        raise ConfigError(f"--methods: {', '.join(duplicates)} given twice")
    for key, _ in parse_overrides(list(overrides)):
        if key.split(".")[0] in _RESERVED_OVERRIDES:
            raise ConfigError(
                f"override '{key}': compare sets the run name, output folder and method itself; "
                "change a method's own settings in its YAML (--configs DIR)"
            )
    configs = [
        (method, load_config(find_method_config(benchmark, method, configs_dir), list(overrides)))
        for method in methods
    ]
    first_method, reference = configs[0]
    prepared = []
    for method, config in configs:
        forced, changes = _force(config, reference)
        for key, old, new in changes:
            log(f"[mcit compare] {method}: {key} = {old!r} -> {new!r} (as {first_method})")
        forced = dataclasses.replace(forced, name=method, output_dir=str(out_dir))
        prepared.append((method, forced))
    return prepared


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


# What a single-task reference run may differ in from its method's run: its folder and its
# stream (one task). Everything else (method, args, budget, seed, data limits) is the same.
_SINGLE_TASK_FREE_KEYS = ("name", "output_dir")


def single_task_folder(out: Path, method: str, config: RunConfig) -> Path:
    """Where the single-task references of `method` under `config` live: one folder per
    method and config fingerprint (the stream's order left out), so that every stream of the
    same tasks and budget shares them, and a changed budget gets new ones."""
    tree = to_dict(config)
    for key in _SINGLE_TASK_FREE_KEYS:
        tree.pop(key, None)
    tree["data"].pop("order", None)
    tree["eval"].pop("all_tasks", None)
    digest = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:10]
    return out / "single-task" / f"{method}-{digest}"


def run_single_task_references(
    out: Path, method: str, config: RunConfig, tasks: Sequence[str], progress: bool, log
) -> Path:
    """Learn each task of the stream alone from the base with `method` and `config` (one run
    per task, resumed or reused when already there), then write the scores into the method's
    run folder as ``single-task.json`` (s_i of the alone gap, docs/metrics-and-reports.md) and
    refresh its metrics.json."""
    from mcit.evaluation.matrix_files import write_run_metrics, write_single_task_file
    from mcit.runner import run

    folder = single_task_folder(out, method, config)
    scores: dict[str, float] = {}
    references: dict[str, str] = {}
    for i, task in enumerate(tasks, start=1):
        alone = dataclasses.replace(
            config,
            name=task,
            output_dir=str(folder),
            data=dataclasses.replace(config.data, order=[task]),
            eval=dataclasses.replace(config.eval, all_tasks=False),
        )
        done = (folder / task / "results.json").is_file()
        log(
            f"[mcit compare] {method}: single-task reference {i}/{len(tasks)} ({task}): "
            f"{'reusing' if done else 'running'} {folder / task}"
        )
        results = run(alone, progress=progress)
        (score,) = results.matrix[0]
        scores[task] = score
        references[task] = str(Path("..") / (folder / task).relative_to(out))
    run_dir = out / method
    path = write_single_task_file(run_dir, scores, references)
    saved = run_dir / "results.json"
    if saved.is_file():
        write_run_metrics(run_dir, read_json(saved, ConfigError))
    return path


def compare(
    benchmark: str,
    methods: Sequence[str],
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    configs_dir: str | Path | None = None,
    progress: bool = True,
    bench: str | Path | None = None,
    log: Callable[[str], None] = print,
    single_task: bool = False,
) -> CompareResult:
    """Run (or resume) every method into ``out_dir/<method>`` and write one report there.

    With `single_task`, each continual method also learns every task alone from the base
    (`run_single_task_references`), and the report shows each task's alone gap.
    Config problems raise `ConfigError` before anything runs; a method that fails while running
    is logged (with its traceback under ``out_dir/<method>/error.txt``) and skipped.
    """
    from mcit.errors import ReportError
    from mcit.report.report import write_report
    from mcit.runner import run

    out = Path(out_dir) if out_dir is not None else Path("runs") / f"compare-{Path(benchmark).name}"
    prepared = prepare_configs(benchmark, methods, out, overrides, configs_dir, log)
    result = CompareResult(out)
    for k, (method, config) in enumerate(prepared, start=1):
        run_dir = out / method
        state = "resuming" if (run_dir / "results.json").is_file() else "running"
        log(f"[mcit compare] ({k}/{len(prepared)}) {method}: {state} into {run_dir}")
        try:
            results = run(config, progress=progress)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one method's failure must not lose the others' results
            result.failed[method] = _one_line(err)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc())
            log(f"[mcit compare] ({k}/{len(prepared)}) {method}: FAILED: {result.failed[method]}")
            continue
        (run_dir / "error.txt").unlink(missing_ok=True)  # from an earlier, failed attempt
        result.finished.append(method)
        log(f"[mcit compare] ({k}/{len(prepared)}) {method}: done ({results.stages_done} stages)")
        if single_task and len(results.stages) == len(results.tasks) > 1:  # continual runs only
            try:
                run_single_task_references(out, method, config, results.tasks, progress, log)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # the method's own run stands; only the gap is missing
                result.failed[f"{method} (single-task references)"] = _one_line(err)
                (run_dir / "single-task-error.txt").write_text(traceback.format_exc())
                log(f"[mcit compare] {method}: single-task references FAILED: {_one_line(err)}")
    from accelerate import PartialState

    if result.finished and PartialState().is_main_process:  # one report under torchrun
        notes = [
            f"`{m}` did not finish ({reason}); see `{out / m / 'error.txt'}`."
            for m, reason in result.failed.items()
            if m in dict(prepared)
        ] + [
            f"`{m.split(' (')[0]}` finished, but its single-task references failed ({reason}): "
            f"no alone gap; see `{out / m.split(' (')[0] / 'single-task-error.txt'}`."
            for m, reason in result.failed.items()
            if m.endswith(" (single-task references)")
        ]
        try:
            report = write_report([out / m for m in result.finished], out, bench=bench, notes=notes)
        except ReportError as err:
            log(f"[mcit compare] report: FAILED: {err}")
            result.failed["report"] = str(err)
            return result
        result.report = report.path
        for warning in report.warnings:
            log(f"[mcit compare] warning: runs differ: {warning}")
        log(f"[mcit compare] report: {report.path}")
    return result
