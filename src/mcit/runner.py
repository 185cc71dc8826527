"""A run: stream × method × backbone, stage after stage, into `runs/<run>/`.

After stage t the evaluator tests every task seen so far (all tasks with `eval.all_tasks`, or
for methods that see every task in one stage), filling row t of the accuracy matrix. Each
finished stage is saved (method state, predictions, results.json) before the next begins, so
`mcit run` on an existing run directory resumes after the last finished stage and gives the
same matrix as an uninterrupted run: every stage re-seeds from (seed, stage).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import random
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, set_seed

from mcit.config import TOP_LEVEL, RunConfig, dump_config, from_dict, to_dict
from mcit.data.benchmarks import load_benchmark_spec, load_tasks, resolve_benchmark
from mcit.data.builtin import register_builtin_benchmarks
from mcit.data.collate import Collator
from mcit.data.fingerprint import changed_tasks, task_fingerprints
from mcit.data.sample import Task, joint_task, stream_modalities
from mcit.errors import ConfigError
from mcit.evaluation.analysis import StageAnalysis, write_stage_analysis
from mcit.evaluation.evaluator import check_answer_budget, evaluate_task, write_jsonl_atomic
from mcit.evaluation.matrix_files import matrix_from_results, write_run_metrics
from mcit.evaluation.run_results import RunResults, StageRecord
from mcit.files import (
    exclusive_folder,
    read_json,
    write_json_atomic,
    write_text_atomic,
    yaml_problem,
)
from mcit.methods.base import ContinualMethod, build_method, method_class
from mcit.methods.inspection import stage_analyses
from mcit.models.backbone import load_backbone
from mcit.train.checkpoint import save_stage, stage_complete
from mcit.train.engines import check_engine, check_method_under_engine, engine_name, zero_stage
from mcit.train.trainer import RunLogger, Trainer


def make_accelerator(config: RunConfig) -> Accelerator:
    device = config.model.backbone.device
    # `cpu=True` would also switch off a DeepSpeed launch, which runs on CPUs too (its tests).
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available() and not deepspeed)
    return Accelerator(cpu=cpu)


def load_stream(config: RunConfig) -> list[Task]:
    register_builtin_benchmarks()
    root = resolve_benchmark(
        config.data.benchmark, data_dir=config.data.data_dir, seed=config.data.seed
    )
    spec = load_benchmark_spec(root)
    tasks = load_tasks(
        spec,
        order=config.data.order,
        train_limit=config.data.train_per_task,
        test_limit=config.data.test_per_task,
    )
    if config.data.validation_per_task is not None:
        tasks = hold_out_validation(tasks, config.data.validation_per_task, seed=config.seed)
    return tasks


def hold_out_validation(tasks: list[Task], n: int, seed: int = 0) -> list[Task]:
    """Each task trained on all but `n` of its training records, drawn at random (seeded by the
    run's seed and the task's name, so a task's split does not depend on the order), and
    evaluated on those `n` (their training answer is the one reference), never on its test
    records. The held-out records keep their file order."""
    if n < 1:
        raise ConfigError(f"data.validation_per_task: {n} is not a positive number of records")
    out = []
    for task in tasks:
        if len(task.train) <= n:
            raise ConfigError(
                f"data.validation_per_task: {n} leaves no training records for task "
                f"'{task.name}', which has {len(task.train)} (see data.train_per_task)"
            )
        rng = random.Random(f"validation/{seed}/{task.name}")
        held = set(rng.sample(range(len(task.train)), n))
        train = [s for i, s in enumerate(task.train) if i not in held]
        test = [s for i, s in enumerate(task.train) if i in held]
        out.append(dataclasses.replace(task, train=train, test=test))
    return out


def manifest(config: RunConfig, accelerator: Accelerator, tasks: list[Task]) -> dict[str, Any]:
    """What the numbers depend on, saved with them (the run manifest)."""
    versions = {}
    packages = ("torch", "transformers", "accelerate", "peft", "tokenizers", "numpy", "pillow")
    for package in (*packages, "soundfile", "av"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        revision = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        revision = None
    return {
        "mcit_git_revision": revision,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        "engine": engine_name(accelerator),
        **({"zero_stage": zero_stage(accelerator)} if zero_stage(accelerator) else {}),
        "dtype": config.model.backbone.dtype,
        "modalities": list(stream_modalities(tasks)),  # what the backbone loaded
        "seed": config.seed,
        "eval_batch_size": config.eval.batch_size,
        "max_new_tokens": config.eval.max_new_tokens,
        "padding_side": "left",
        "decoding": "greedy",
        "data_counts": {t.name: {"train": len(t.train), "test": len(t.test)} for t in tasks},
        # Checked on resume: the finished stages' data must still be the data.
        "data_fingerprints": task_fingerprints(tasks),
        # Held-out training records (data.validation_per_task) or the test records.
        "eval_split": "test" if config.data.validation_per_task is None else "validation",
    }


def format_matrix(results: RunResults) -> str:
    """The accuracy matrix as a fixed-width table (rows: stages, columns: tasks)."""
    tasks, stages, matrix = results.tasks, results.stages, results.matrix
    width = max(8, *(len(t) for t in tasks))
    head = f"{'after stage':<24}" + "".join(f"{t:>{width + 1}}" for t in tasks)
    lines = [head]
    for i, (stage, row) in enumerate(zip(stages, matrix, strict=True)):
        label = f"{i + 1}: {stage.name}"[:23]
        cells = "".join(f"{'-' if v is None else f'{v:.1f}':>{width + 1}}" for v in row)
        lines.append(f"{label:<24}{cells}")
    return "\n".join(lines)


# Keys that name the run's folder, not what it computes: the folder is the run's identity, so a
# run folder that was renamed or moved resumes under its new name.
IDENTITY_KEYS = ("name", "output_dir")


def _check_resumable(run_dir: Path, config: RunConfig, results: dict | None) -> None:
    """Refuse to resume a run that has finished stages under another config. A folder whose run
    failed before its first stage holds nothing to keep, and takes the new config."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file() or not (results and results["matrix"]):
        return
    # Through the dataclasses, so keys added since the run was made take their defaults.
    try:
        saved_tree = yaml.safe_load(saved_path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{saved_path}: invalid YAML ({yaml_problem(err)})") from None
    try:
        saved = to_dict(from_dict(RunConfig, saved_tree, TOP_LEVEL))
    except ConfigError as err:
        raise ConfigError(f"{saved_path}: {err}") from None
    current = to_dict(config)
    for key in IDENTITY_KEYS:
        del saved[key], current[key]
    if saved != current:
        diff = sorted(_diff_keys(saved, current))
        shown = "; ".join(
            f"{key}: saved {_dotted(saved, key)!r}, now {_dotted(current, key)!r}"
            for key in diff[:6]
        )
        raise ConfigError(
            f"{run_dir}: this run directory holds a run with another config ({shown}); "
            f"resume with the saved values (e.g. {diff[0]}={_dotted(saved, diff[0])}), "
            "or choose another name=..."
        )


def _stage_names(plan: list[list[Task]]) -> list[list[str]]:
    return [[t.name for t in stage] for stage in plan]


def _check_same_data(run_dir: Path, results: RunResults, tasks: list[Task]) -> None:
    """Refuse to resume on data that changed since the finished stages used it."""
    saved = results.manifest.get("data_fingerprints")
    if saved is None:  # a run from before fingerprints were recorded
        return
    changed = changed_tasks(saved, task_fingerprints(tasks))
    if changed:
        raise ConfigError(
            f"{run_dir}: the benchmark changed since this run started "
            f"({', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}); restore the "
            f"data as it was, or delete {run_dir} to start the run again"
        )


def _dotted(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _diff_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys: set[str] = set()
        for k in set(a) | set(b):
            keys |= _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return keys
    return set() if a == b else {prefix.rstrip(".")}


def count_parameters(method: ContinualMethod) -> tuple[int, int]:
    seen: set[int] = set()
    total = trainable = 0
    for p in method.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def run(
    config: RunConfig, progress: bool = True, stop_after_stage: int | None = None
) -> RunResults:
    """Run (or resume) a continual run; returns the results also written to results.json.

    `stop_after_stage` ends the process's work after that many stages (used to test resume).
    """
    started = time.time()
    cls, _ = method_class(config.method.name, config.method.args)  # a bad method: before any work
    accelerator = make_accelerator(config)
    check_engine(accelerator)  # FSDP, ZeRO-3 and methods DeepSpeed would undo: refused here too
    check_method_under_engine(accelerator, cls)
    run_dir = Path(config.output_dir) / config.run_name
    with contextlib.ExitStack() as stack:
        # One writer per run folder: a second `mcit run` on it is refused at once. The main
        # process holds the lock; every rank learns whether it got it, so none is left waiting.
        refused = [None]
        if accelerator.is_main_process:
            try:
                stack.enter_context(exclusive_folder(run_dir, ConfigError))
            except ConfigError as err:
                refused = [str(err)]
        if accelerator.num_processes > 1:
            broadcast_object_list(refused)
        if refused[0] is not None:
            raise ConfigError(refused[0])
        steps = ContinualRun(config, accelerator, run_dir, progress)
        steps.setup()
        done = steps.restore()
        for s in range(done, len(steps.plan)):
            if stop_after_stage is not None and s >= stop_after_stage:
                break
            steps.record(*steps.run_stage(s))
        return steps.finish(started)


class ContinualRun:
    """One run folder's work in the steps of a recipe: `setup` (check what is there, load the
    stream, build the method), `restore` (bring the method to the last finished stage and
    start this attempt), then per stage `run_stage` (train, save, evaluate) and `record`
    (results.json, metrics.json), and `finish`. Only the main process writes files."""

    def __init__(
        self, config: RunConfig, accelerator: Accelerator, run_dir: Path, progress: bool = True
    ):
        self.config = config
        self.accelerator = accelerator
        self.run_dir = run_dir
        self.progress = progress
        self.main = accelerator.is_main_process
        self.results_path = run_dir / "results.json"

    # ---------------------------------------------------------------------------- setup
    def setup(self) -> None:
        config = self.config
        saved = _read_results(self.results_path) if self.results_path.is_file() else None
        _check_resumable(self.run_dir, config, saved)
        set_seed(config.seed)

        self.tasks = load_stream(config)
        # Each task's metric sets its score range (CIDEr ×100 passes 100); older runs lack it.
        task_metrics = {t.name: t.metric for t in self.tasks}
        results = None
        if saved is not None:  # checked before the model is loaded
            saved.setdefault("task_metrics", task_metrics)
            saved.setdefault("task_modalities", {t.name: t.modality for t in self.tasks})
            source = str(self.results_path)
            results = RunResults.from_dict(saved, source)
            matrix_from_results(results, source)  # a damaged file: one line, named
            _check_same_data(self.run_dir, results, self.tasks)
            results.run = config.run_name  # the folder may have been renamed
        backbone = load_backbone(config.model.backbone, stream_modalities(self.tasks))
        self.method = build_method(config.method.name, backbone, config.method.args)
        self.method.to(self.accelerator.device)
        self.collate = Collator(backbone)
        for task in self.tasks:  # once per run: the answers do not change between stages
            check_answer_budget(task, backbone.tokenizer, config.eval.max_new_tokens)
        self.plan = self.method.stage_plan(self.tasks)
        self.names = [t.name for t in self.tasks]
        if results is None:
            results = RunResults(
                tasks=self.names,
                run=config.run_name,
                benchmark=config.data.benchmark,
                method=config.method.name,
                method_args=dataclasses.asdict(self.method.args),
                rehearsal_free=self.method.rehearsal_free,
                trains=self.method.trains,
                manifest=manifest(config, self.accelerator, self.tasks),
                task_metrics=task_metrics,
                task_modalities={t.name: t.modality for t in self.tasks},
            )
        elif results.trains is None:  # a run from before 'trains' was recorded
            results.trains = self.method.trains
        self.results = results

    # ---------------------------------------------------------------------------- restore
    def restore(self) -> int:
        """Load the last finished stage, if any, record the config and open this attempt's
        logs; returns the number of finished stages."""
        done = self.results.stages_done
        if done:
            last = self.run_dir / f"stage_{done}"
            if not stage_complete(last):
                raise ConfigError(
                    f"{last}: results.json records {done} finished stage(s) but this checkpoint "
                    f"is missing or incomplete; delete {self.run_dir} to start the run again"
                )
            self.method.restore(
                last,
                stages=_stage_names(self.plan[:done]),
                remedy=f"delete {self.run_dir} to start the run again",
            )
            if self.main and done < len(self.plan):
                print(
                    f"[mcit] resuming {self.run_dir} after stage {done} of {len(self.plan)}",
                    flush=True,
                )
        if self.main:  # recorded once the run really starts: a failed start leaves nothing
            write_text_atomic(self.run_dir / "config.yaml", dump_config(self.config))
        self.logger = RunLogger(self.run_dir, enabled=self.main)
        self.logger.mark_attempt(done)
        self.trainer = Trainer(
            self.accelerator, self.config.train, self.logger, progress=self.progress
        )
        return done

    # ---------------------------------------------------------------------------- one stage
    def run_stage(self, s: int) -> tuple[StageRecord, list[float | None]]:
        """Train stage `s` (0-based), save it, evaluate it: its record and accuracy row."""
        config, method, plan = self.config, self.method, self.plan
        stage_tasks = plan[s]
        task = joint_task(stage_tasks)
        seed = config.seed + 1000 * (s + 1)
        set_seed(seed)
        method.begin_task(s, task)
        trainable, total = count_parameters(method)
        stats = None
        device = self.accelerator.device
        if device.type == "cuda":  # the stage's training peak, recorded beside its time
            torch.cuda.reset_peak_memory_stats(device)
        if method.trains:
            stats = self.trainer.train_stage(
                method, s, task.train, self.collate, seed=seed, n_tasks=len(stage_tasks)
            )
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        method.end_task(s, task, task.train)
        if self.main:
            save_stage(
                self.run_dir / f"stage_{s + 1}",
                method.method_state(),
                method.extra_state(),
                _stage_names(plan[: s + 1]),
                method.description(),
            )

        seen = {t.name for stage in plan[: s + 1] for t in stage}
        to_eval = [t for t in self.tasks if t.name in seen or config.eval.all_tasks]
        row: list[float | None] = [None] * len(self.tasks)
        eval_seconds = 0.0
        for t in to_eval:
            ev = evaluate_task(
                method, t, self.collate, config.eval, self.accelerator, progress=self.progress
            )
            row[self.names.index(t.name)] = ev.score
            eval_seconds += ev.seconds
            if self.main:
                write_jsonl_atomic(
                    self.run_dir / "predictions" / f"stage_{s + 1}" / f"{t.name}.jsonl",
                    ev.records,
                )
        analysis = StageAnalysis()
        if self.main:  # the method's own analyses (e.g. prompt selection), beside the matrix
            learned = [joint_task(p).name for p in plan[: s + 1]]
            analysis = stage_analyses(method, {t.name: t.test for t in to_eval}, learned)
            write_stage_analysis(self.run_dir, s + 1, analysis)
        record = StageRecord(
            stage=s + 1,
            name=task.name if method.trains else "no training",
            tasks=[t.name for t in stage_tasks],
            train_steps=stats.steps if stats else 0,
            train_samples_seen=stats.samples_seen if stats else 0,
            train_seconds=round(stats.seconds, 3) if stats else 0.0,
            final_loss=stats.final_loss if stats else None,
            eval_seconds=round(eval_seconds, 3),
            trainable_parameters=trainable,
            total_parameters=total,
            analysis=analysis.summary or None,
            extra={} if peak is None else {"train_peak_gpu_memory_bytes": peak},
        )
        return record, row

    # ---------------------------------------------------------------------------- record
    def record(self, stage: StageRecord, row: list[float | None]) -> None:
        """Add a finished stage to results.json and metrics.json, and say so."""
        self.results.add_stage(stage, row)
        if self.main:
            write_json_atomic(self.results_path, self.results.to_dict())
            write_run_metrics(self.run_dir, self.results)
            if self.progress:
                scores = ", ".join(
                    f"{self.names[i]} {v:.1f}" for i, v in enumerate(row) if v is not None
                )
                print(
                    f"[mcit] stage {stage.stage}/{len(self.plan)} ({stage.name}): {scores}",
                    flush=True,
                )
        self.accelerator.wait_for_everyone()

    def finish(self, started: float) -> RunResults:
        self.logger.close()
        self.results.seconds_this_process = round(time.time() - started, 1)
        if self.main and self.results.stages_done == len(self.plan):
            self.results.complete = True
            write_json_atomic(self.results_path, self.results.to_dict())
        return self.results


def _read_results(path: Path) -> dict:
    """A run's results.json, refused in one line when it is not one (delete it to restart)."""
    try:
        results = read_json(path, ConfigError)
    except ConfigError as err:
        raise ConfigError(f"{err}; delete it to start the run again") from None
    if not isinstance(results, dict) or not isinstance(results.get("matrix"), list):
        raise ConfigError(
            f"{path}: not an mcit results file (no 'matrix' list); delete it to start again"
        )
    return results
