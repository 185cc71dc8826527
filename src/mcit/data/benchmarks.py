"""Benchmarks on disk: `benchmark.yaml` specs, task streams, named benchmarks, validation.

A benchmark is a folder with a `benchmark.yaml` naming its tasks (metric, modality, train and
test files, media folder) and its task orders (docs/data-format.md). Real CoIN data and the
generated `coin-mini` go through the same code, so a run never knows which one it has.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcit.data.formats.llava import load_llava_test, load_llava_train
from mcit.data.sample import METRICS, MODALITIES, Task
from mcit.errors import DataError
from mcit.files import yaml_problem

SPEC_FILE = "benchmark.yaml"
_TOP_KEYS = ("name", "description", "tasks", "orders", "meta")  # meta: free-form, for generators
_TASK_KEYS = ("name", "metric", "modality", "train", "test", "media_root", "description")
# Keys whose value is not a string: an audio task's sample rate in Hz (every clip must have it).
_NUMBER_KEYS = ("sample_rate",)


@dataclass
class TaskSpec:
    """One task of a benchmark; paths are absolute."""

    name: str
    metric: str
    modality: str
    train: Path
    test: Path
    media_root: Path
    description: str = ""
    sample_rate: int | None = None  # audio tasks: the rate every clip must have, when declared


@dataclass
class BenchmarkSpec:
    """A parsed `benchmark.yaml`. `orders` keeps the file's order; the first is the default."""

    name: str
    root: Path  # the folder holding the yaml; relative paths start here
    tasks: list[TaskSpec]
    orders: dict[str, list[str]]
    path: Path = field(default=Path())  # the yaml file itself, for messages

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)

    @property
    def default_order(self) -> list[str]:
        return next(iter(self.orders.values()))


# --------------------------------------------------------------------------- benchmark.yaml


def load_benchmark_spec(path: str | Path) -> BenchmarkSpec:
    """Parse and check a `benchmark.yaml` (or the folder holding one); raise its first problem."""
    problems: list[DataError] = []
    spec = _parse_spec(Path(path), problems)
    if problems:
        raise problems[0]
    assert spec is not None  # _parse_spec returns None only together with a problem
    return spec


def _spec_file(path: Path) -> Path:
    if path.is_dir():
        path = path / SPEC_FILE
        if not path.is_file():
            raise DataError(path.parent, None, None, f"no {SPEC_FILE} in this folder")
    elif not path.exists():
        raise DataError(path, None, None, "no such file or folder")
    return Path(os.path.normpath(path.absolute()))


def _parse_spec(path: Path, problems: list[DataError]) -> BenchmarkSpec | None:
    """Parse a spec, appending every problem found; None when nothing usable is left."""
    try:
        path = _spec_file(path)
        data = _read_yaml(path)
    except DataError as err:
        problems.append(err)
        return None
    root = path.parent
    unknown = sorted(set(data) - set(_TOP_KEYS))
    for key in unknown:
        problems.append(DataError(path, None, key, f"unknown key; allowed: {', '.join(_TOP_KEYS)}"))
    name = data.get("name", root.name)
    if not isinstance(name, str) or not name.strip():
        problems.append(DataError(path, None, "name", f"expected a non-empty string, got {name!r}"))
        name = root.name
    tasks = _parse_tasks(path, data.get("tasks"), problems)
    # Orders are checked against every declared name, so a broken task is reported once.
    declared = [t["name"] for t in data.get("tasks") or [] if isinstance(t, dict) and "name" in t]
    orders = _parse_orders(path, data.get("orders"), declared, problems)
    return BenchmarkSpec(name=name, root=root, tasks=tasks, orders=orders, path=path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(path, None, None, f"invalid YAML ({yaml_problem(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, None, None, f"cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(path, None, None, "expected a mapping with 'tasks' (and 'name', 'orders')")
    return data


def _parse_tasks(path: Path, raw: Any, problems: list[DataError]) -> list[TaskSpec]:
    if raw is None:
        problems.append(DataError(path, None, "tasks", "missing"))
        return []
    if not isinstance(raw, list) or not raw:
        problems.append(DataError(path, None, "tasks", "expected a non-empty list of tasks"))
        return []
    tasks: list[TaskSpec] = []
    for index, item in enumerate(raw):
        task = _parse_task(path, index, item, problems)
        if task is None:
            continue
        if any(t.name == task.name for t in tasks):
            problems.append(
                DataError(path, f"tasks[{index}]", "name", f"duplicate task name {task.name!r}")
            )
            continue
        tasks.append(task)
    return tasks


def _parse_task(path: Path, index: int, raw: Any, problems: list[DataError]) -> TaskSpec | None:
    """One task entry; None if it is too broken to load (its problems are recorded)."""
    record = f"tasks[{index}]"
    if not isinstance(raw, dict):
        problems.append(DataError(path, record, None, "expected a mapping"))
        return None
    if isinstance(raw.get("name"), str) and raw["name"].strip():
        record = f"tasks[{index}] ({raw['name']!r})"

    def bad(field_name: str, problem: str) -> None:
        problems.append(DataError(path, record, field_name, problem))

    for key in sorted(set(raw) - set(_TASK_KEYS) - set(_NUMBER_KEYS)):
        bad(key, f"unknown key; allowed: {', '.join(_TASK_KEYS + _NUMBER_KEYS)}")
    found = len(problems)  # problems from here on, but for missing files, drop the task
    strings = {}
    for key in _TASK_KEYS:
        value = raw.get(key)
        if value is None:
            if key in ("name", "metric", "train", "test"):
                bad(key, "missing")
        elif not isinstance(value, str) or not value.strip():
            bad(key, f"expected a non-empty string, got {value!r}")
        else:
            strings[key] = value
    metric, modality = strings.get("metric"), strings.get("modality", "image")
    if metric is not None and metric not in METRICS:
        bad("metric", f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if modality not in MODALITIES:
        bad("modality", f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    sample_rate = raw.get("sample_rate")
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            bad("sample_rate", f"expected a positive whole number of Hz, got {sample_rate!r}")
        elif modality != "audio":
            bad("sample_rate", f"only an audio task has a sample rate (this one is {modality})")
    # Files are checked even when other fields are bad, so validation lists every problem.
    root = path.parent
    for key in ("train", "test"):
        if key in strings and not _join(root, strings[key]).is_file():
            bad(key, f"file not found: {_join(root, strings[key])}")
    media_root = _join(root, strings.get("media_root", "."))  # default: the yaml's folder
    if not media_root.is_dir():
        bad("media_root", f"folder not found: {media_root}")
    # A task whose train or test file is missing is kept, so validation still reads the other.
    if "train" not in strings or "test" not in strings:
        return None
    if any(p.field not in ("train", "test") for p in problems[found:]):
        return None
    return TaskSpec(
        name=strings["name"],
        metric=strings["metric"],
        modality=modality,
        train=_join(root, strings["train"]),
        test=_join(root, strings["test"]),
        media_root=media_root,
        description=strings.get("description", ""),
        sample_rate=sample_rate,
    )


def _parse_orders(
    path: Path, raw: Any, task_names: list[str], problems: list[DataError]
) -> dict[str, list[str]]:
    if raw is None:
        # No orders: the tasks in the order the file lists them.
        return {"default": list(task_names)} if task_names else {}
    if not isinstance(raw, dict) or not raw:
        problems.append(
            DataError(path, None, "orders", "expected a mapping of order name to task list")
        )
        return {}
    orders = {}
    for name, names in raw.items():
        field_name = f"orders.{name}"
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            problems.append(
                DataError(path, None, field_name, "expected a non-empty list of task names")
            )
            continue
        unknown = [n for n in names if n not in task_names]
        if unknown:
            problem = f"task(s) {', '.join(map(repr, unknown))} not defined; tasks: {', '.join(task_names)}"
            problems.append(DataError(path, None, field_name, problem))
            continue
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            problems.append(
                DataError(path, None, field_name, f"task(s) listed twice: {', '.join(repeated)}")
            )
            continue
        orders[str(name)] = list(names)
    return orders


def _join(root: Path, value: str) -> Path:
    """A yaml path made absolute: relative ones start at the yaml's folder."""
    return Path(os.path.normpath(root / value))


# --------------------------------------------------------------------------- loading tasks


def load_tasks(
    spec: BenchmarkSpec,
    order: str | list[str] | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    check_media: bool = True,
) -> list[Task]:
    """Load the tasks of a stream in order. `order` is an order name, a list of task names, or
    None for the default order; limits keep the first N records of each file."""
    names = _order_names(spec, order)
    tasks = []
    for name in names:
        t = spec.task(name)
        args = (t.media_root, t.name, t.metric, t.modality, check_media)
        rate = t.sample_rate
        train = load_llava_train(t.train, *args, limit=train_limit, sample_rate=rate)
        test = load_llava_test(t.test, *args, limit=test_limit, sample_rate=rate)
        tasks.append(
            Task(t.name, t.metric, train, test, modality=t.modality, description=t.description)
        )
    return tasks


def _order_names(spec: BenchmarkSpec, order: str | list[str] | None) -> list[str]:
    known = [t.name for t in spec.tasks]
    if order is None:
        if not spec.orders:
            raise DataError(spec.path, None, "orders", "no task order defined")
        return spec.default_order
    if isinstance(order, str):
        if order not in spec.orders:
            raise DataError(
                spec.path, None, "orders", f"no order {order!r}; orders: {', '.join(spec.orders)}"
            )
        return spec.orders[order]
    unknown = [n for n in order if n not in known]
    if unknown:
        problem = f"task(s) {', '.join(map(repr, unknown))} not in this benchmark; tasks: {', '.join(known)}"
        raise DataError(spec.path, None, "tasks", problem)
    if len(set(order)) != len(order):
        raise ValueError(f"task order lists a task twice: {order}")
    return list(order)


# --------------------------------------------------------------------------- named benchmarks

Resolver = Callable[[Path | None, int], Path]
_REGISTRY: dict[str, Resolver] = {}


def register_benchmark(name: str, resolver: Resolver, *, replace: bool = False) -> None:
    """Make `name` usable wherever a benchmark path is: resolver(data_dir, seed) returns a
    folder holding a benchmark.yaml (creating it on first use if it must)."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"benchmark {name!r} is already registered")
    _REGISTRY[name] = resolver


def registered_benchmarks() -> list[str]:
    return sorted(_REGISTRY)


def resolve_benchmark(
    name_or_path: str | Path, data_dir: Path | None = None, seed: int = 0
) -> Path:
    """The folder (or yaml file) of a registered benchmark name or of a path on disk."""
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:
        return Path(_REGISTRY[name_or_path](data_dir, seed))
    path = Path(name_or_path)
    if path.is_dir() and not (path / SPEC_FILE).is_file():
        raise DataError(path, None, None, f"folder has no {SPEC_FILE}")
    if not path.exists():
        names = ", ".join(registered_benchmarks()) or "none"
        problem = f"not a registered benchmark (registered: {names}) nor an existing file or folder"
        raise DataError(path, None, None, problem)
    return path


# The built-in named benchmarks (`coin-mini`, generated into a cache folder on first use) are
# registered by `mcit.data.builtin.register_builtin_benchmarks`, which imports their generators
# lazily; a new one is registered there.


# --------------------------------------------------------------------------- validation


@dataclass
class TaskReport:
    """What validation found in one task: records that loaded cleanly and every problem."""

    name: str
    train_records: int = 0
    test_records: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    path: Path
    name: str = ""
    spec_problems: list[str] = field(default_factory=list)  # problems of benchmark.yaml itself
    tasks: list[TaskReport] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        return len(self.spec_problems) + sum(len(t.problems) for t in self.tasks)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def format(self, max_per_task: int = 20) -> str:
        """Human-readable text for `mcit data validate`; long problem lists are cut short."""
        lines = [f"benchmark {self.name or '?'} ({self.path})"]
        lines += _listed(self.spec_problems, max_per_task, "  ")
        for task in self.tasks:
            lines.append(
                f"  task {task.name}: {task.train_records} train, {task.test_records} test, "
                f"{len(task.problems)} problem(s)"
            )
            lines += _listed(task.problems, max_per_task, "    ")
        lines.append("OK" if self.ok else f"{self.problem_count} problem(s)")
        return "\n".join(lines)


def _listed(problems: list[str], limit: int, indent: str) -> list[str]:
    lines = [f"{indent}- {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"{indent}... and {len(problems) - limit} more")
    return lines


def validate_benchmark(path: str | Path) -> ValidationReport:
    """Load everything with media checks, collecting every problem instead of stopping."""
    spec_problems: list[DataError] = []
    spec = _parse_spec(Path(path), spec_problems)
    report = ValidationReport(path=Path(path), spec_problems=[str(e) for e in spec_problems])
    if spec is None:
        return report
    report.path, report.name = spec.path, spec.name
    for t in spec.tasks:
        errors: list[DataError] = []
        args = (t.media_root, t.name, t.metric, t.modality, True)
        # A missing file is already among the spec problems; don't report it twice.
        rate = t.sample_rate
        train = (
            load_llava_train(t.train, *args, errors=errors, sample_rate=rate)
            if t.train.is_file()
            else []
        )
        test = (
            load_llava_test(t.test, *args, errors=errors, sample_rate=rate)
            if t.test.is_file()
            else []
        )
        report.tasks.append(TaskReport(t.name, len(train), len(test), [str(e) for e in errors]))
    return report
