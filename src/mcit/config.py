"""The config tree of a run: dataclasses, read from YAML, with `key=value` overrides.

A YAML under `configs/` is a complete, runnable experiment. Every unknown key or badly typed
value is reported with the file and the dotted key, before anything heavy starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcit.models.backbone import BackboneConfig


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names file and key."""


@dataclass
class DataConfig:
    benchmark: str = "coin-mini"  # a registered name or a folder with benchmark.yaml
    data_dir: str | None = None  # where a generated benchmark is written (default: user cache)
    order: str | list[str] | None = None  # a named order of the benchmark, or task names
    train_per_task: int | None = None  # first N training records of each task
    test_per_task: int | None = None  # first N test records of each task
    # Hold out the last N (loaded) training records of each task and evaluate on them instead of
    # the test set: for choosing hyper-parameters (λ, lr) without touching test data.
    validation_per_task: int | None = None
    seed: int = 0  # seed of the generated benchmark


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps_per_task: int | None = None  # caps the steps that `epochs` gives
    batch_size: int = 16  # per process
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    scheduler: str = "constant_with_warmup"  # any transformers scheduler name
    max_grad_norm: float = 1.0
    log_every: int = 10


@dataclass
class EvalConfig:
    batch_size: int = 32
    max_new_tokens: int = 24  # a normalised box is ~17 tokens with the tiny tokenizer
    all_tasks: bool = False  # also evaluate tasks not yet learned (forward transfer)


@dataclass
class MethodConfig:
    name: str = "finetune-lora"
    args: dict[str, Any] = field(default_factory=dict)  # the method's own config keys


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)


@dataclass
class RunConfig:
    name: str | None = None  # run folder name (default: <benchmark>-<method>)
    output_dir: str = "runs"
    seed: int = 0
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_name(self) -> str:
        bench = (
            Path(self.data.benchmark).name if "/" in self.data.benchmark else self.data.benchmark
        )
        return self.name or f"{bench}-{self.method.name}"


# ---------------------------------------------------------------------------- conversion
def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Return `value` converted to `annotation` (ints accepted for floats), or raise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} is not a {_type_name(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null")
    if annotation is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {value!r} is not a list")
        (item,) = typing.get_args(annotation) or (Any,)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {value!r} is not a mapping")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, where)
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads "3e-4" as a string; users write learning rates that way.
        try:
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not an int")
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise ConfigError(f"{where}: {value!r} is not a {_type_name(annotation)}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _check_type(value, hints[name], f"{where}.{name}" if where else name)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: '{part}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value (e.g. train.lr=1e-4)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': cannot parse the value: {err}") from err
        pairs.append((key.strip(), value))
    return pairs


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults) and apply `key=value` overrides."""
    tree: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for key, value in parse_overrides(overrides or []):
        _set_dotted(tree, key, value)
    try:
        return from_dict(RunConfig, tree, where="")
    except ConfigError as err:
        raise ConfigError(f"{source}: {str(err).lstrip('.')}") from err


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
