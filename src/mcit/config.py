"""The config tree of a run: dataclasses, read from YAML, with `key=value` overrides.

A YAML under `configs/` is a complete, runnable experiment. Every key is declared with
`setting`: its default, a help text (`mcit run --help-config` prints them all) and the values it
allows. An unknown key, a badly typed value or a value out of range is reported with the file
and the dotted key when the config loads, before any model or data work starts.

A leaf module: it imports nothing of mcit but the error classes, so that any module may read a
config without pulling in models, data or methods.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcit.errors import ConfigError
from mcit.files import json_problem, yaml_problem


# ---------------------------------------------------------------------------- declaring keys
@dataclass(frozen=True)
class Bounds:
    """The range a numeric key allows; `low_open` / `high_open` exclude the end itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: float) -> str | None:
        """Why `value` is out of range, or None."""
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if isinstance(value, int) and abs(value) >= 2**63:  # past what torch and numpy take
            return "is too large"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'greater than' if self.low_open else 'at least'} {_number(self.low)}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'less than' if self.high_open else 'at most'} {_number(self.high)}"
        return None

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_number(self.high)}")
        return ", ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


AT_LEAST_1 = Bounds(low=1)
NON_NEGATIVE = Bounds(low=0)
POSITIVE = Bounds(low=0, low_open=True)
# Seeds go to random, numpy and torch, and mcit adds 1000 x stage to them: numpy takes < 2**32.
SEED = Bounds(low=0, high=2**31 - 1)


def setting(
    default: Any = MISSING,
    *,
    help: str,
    bounds: Bounds | None = None,
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
    check: Callable[[Any], str | None] | None = None,
    default_factory: Callable[[], Any] | Any = MISSING,
) -> Any:
    """A config key: its default, what it means (`help`) and what it allows — a numeric range
    (`bounds`), a closed set of strings (`choices`, or a function that returns them), or any
    `check` (value → the problem, or None). None is always allowed where the type allows it."""
    metadata = {"help": help, "bounds": bounds, "choices": choices, "check": check}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def value_problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why `value` is not allowed for field `f`, or None (see `setting`)."""
    meta = f.metadata
    bounds, choices, check = meta.get("bounds"), meta.get("choices"), meta.get("check")
    if value is None:
        return None
    if isinstance(value, bool):  # a bool is an int to Python, never a number to a config
        return "is not a number" if bounds is not None else None
    if bounds is not None and isinstance(value, int | float):
        problem = bounds.problem(value)
        if problem:
            return problem
    if choices is not None and isinstance(value, str):
        allowed = choices() if callable(choices) else choices
        if value not in allowed:
            return f"is not one of {list(allowed)}"
    return check(value) if check is not None else None


def check_fields(obj: Any, where: str) -> None:
    """Raise ConfigError for the first field of dataclass `obj` whose value `setting` does not
    allow, named `<where>.<field>` (for a dataclass built in code rather than by `from_dict`)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = value_problem(f, value)
        if problem:
            raise ConfigError(f"{where}.{f.name}: {value!r} {problem}")


# transformers schedules that need more than warmup and total steps: a metric at every step
# (plateau, greedy) or keyword arguments mcit's train section does not have (min_lr, decay steps).
SCHEDULERS_NEEDING_MORE = frozenset(
    {
        "reduce_lr_on_plateau",
        "greedy",
        "cosine_with_min_lr",
        "cosine_warmup_with_min_lr",
        "warmup_stable_decay",
    }
)


def scheduler_names() -> tuple[str, ...]:
    """The learning-rate schedules of transformers' `get_scheduler` that mcit can drive."""
    from transformers import SchedulerType

    return tuple(t.value for t in SchedulerType if t.value not in SCHEDULERS_NEEDING_MORE)


def _device_problem(value: str) -> str | None:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return "is not one of auto, cpu, cuda, cuda:N"


def _folder_name_problem(value: str) -> str | None:
    if not value or value in (".", "..") or "/" in value or "\\" in value:
        return "is not a folder name (no slashes; it names a folder under output_dir)"
    return None


# ---------------------------------------------------------------------------- the tree
@dataclass
class ChatFormat:
    """How a conversation becomes text: LLaVA-1.5's vicuna_v1 layout by default."""

    system: str | None = setting(
        None,
        help="system prompt; null = the backbone's own (LLaVA-1.5's for hf; none for tiny, "
        "which was pre-trained without one and pays for every token on a CPU)",
    )
    user: str = setting("USER: ", help="text before each user turn")
    assistant: str = setting(" ASSISTANT:", help="text before each answer")
    answer_prefix: str = setting(" ", help="between the assistant tag and the answer")
    turn_end: str = setting("", help="after an answer, before the EOS that ends a turn")
    audio_cue: str = setting(
        "audio: ", help="text before an audio clip's slots (MICL's modality cue)"
    )
    video_cue: str = setting("video: ", help="text before a video's slots (MICL's modality cue)")


DTYPE_NAMES = ("float32", "bfloat16", "float16")


@dataclass
class BackboneConfig:
    """Which LMM to load and how. `name` is `tiny` (built and pre-trained by mcit) or `hf`."""

    name: str = setting(
        "tiny",
        help="tiny: the base shipped inside mcit; hf: a local llava-hf directory (path)",
        choices=("tiny", "hf"),
    )
    path: str | None = setting(None, help="local llava-hf directory (name = hf)")
    clip_path: str | None = setting(
        None, help="local CLIP directory for guidance features (ModalPrompt, L2P; name = hf)"
    )
    dtype: str = setting("float32", help="weights' dtype", choices=DTYPE_NAMES)
    device: str = setting(
        "auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N", check=_device_problem
    )
    gradient_checkpointing: bool = setting(False, help="recompute activations in backward")
    chat: ChatFormat = setting(default_factory=ChatFormat, help="how a conversation becomes text")
    max_length: int = setting(
        2048,
        help="longest training sequence in tokens (LLaVA-1.5's); capped by the LM's positions",
        bounds=Bounds(low=8),
    )
    recipe: str = setting(
        "tiny-lite0",
        help="name = tiny: the pre-training recipe of the base (mcit pretrain --help; the "
        "default ships inside the package)",
    )
    tiny: dict[str, Any] = setting(
        default_factory=dict,
        help="name = tiny: TinyConfig overrides on top of the recipe (built once, then cached)",
    )
    audio_path: str | None = setting(
        None,
        help="local Whisper directory (WhisperModel, WhisperForConditionalGeneration or "
        "WhisperEncoder) read for audio tasks (name = hf; the tiny base ships its own)",
    )
    audio_tokens: int = setting(
        8,
        help="LM slots an audio clip takes (the encoder's frames pooled in time)",
        bounds=AT_LEAST_1,
    )
    video_frames: int = setting(
        4,
        help="frames sampled evenly from a video, each through the image tower",
        bounds=AT_LEAST_1,
    )
    video_tokens: int | None = setting(
        None,
        help="LM slots a video takes, split evenly over its frames (default: as many as an image)",
        bounds=AT_LEAST_1,
    )
    train_media_projections: bool = setting(
        False,
        help="the audio and video projections train with the method and are saved with it, as "
        "in MICL (images keep the method's own choice)",
    )
    pixel_cache_mb: int = setting(
        2048, help="processed images kept in memory between epochs and stages", bounds=NON_NEGATIVE
    )
    feature_cache_mb: int = setting(
        2048,
        help="outputs of a frozen vision tower kept in memory, keyed by the processed image's "
        "content (on a CPU the tower costs more than the LM); 0 turns it off",
        bounds=NON_NEGATIVE,
    )


@dataclass
class DataConfig:
    benchmark: str = setting(
        "coin-mini", help="a registered benchmark name or a folder with benchmark.yaml"
    )
    data_dir: str | None = setting(
        None, help="where a generated benchmark is written (default: mcit's cache)"
    )
    order: str | list[str] | None = setting(
        None, help="a named order of the benchmark, or a list of task names"
    )
    train_per_task: int | None = setting(
        None, help="use the first N training records of each task", bounds=AT_LEAST_1
    )
    test_per_task: int | None = setting(
        None, help="use the first N test records of each task", bounds=AT_LEAST_1
    )
    validation_per_task: int | None = setting(
        None,
        help="hold out N random training records of each task and evaluate on them instead of "
        "the test set: for choosing hyper-parameters without touching test data",
        bounds=AT_LEAST_1,
    )
    seed: int = setting(0, help="seed of a generated benchmark", bounds=SEED)


@dataclass
class TrainConfig:
    epochs: float = setting(1.0, help="passes over each task's training data", bounds=POSITIVE)
    max_steps_per_task: int | None = setting(
        None, help="caps the optimizer steps that epochs gives, per task", bounds=AT_LEAST_1
    )
    batch_size: int = setting(16, help="training samples per step and process", bounds=AT_LEAST_1)
    grad_accum: int = setting(1, help="batches accumulated per optimizer step", bounds=AT_LEAST_1)
    lr: float = setting(1e-4, help="peak learning rate (AdamW)", bounds=POSITIVE)
    projector_lr: float | None = setting(
        None,
        help="peak learning rate of the vision-to-LM projector where a method trains it "
        "(LLaVA's mm_projector_lr); null = train.lr",
        bounds=POSITIVE,
    )
    weight_decay: float = setting(0.0, help="AdamW weight decay", bounds=NON_NEGATIVE)
    warmup_ratio: float = setting(
        0.03, help="share of a stage's steps spent warming up", bounds=Bounds(low=0, high=1)
    )
    scheduler: str = setting(
        "constant_with_warmup",
        help="learning-rate schedule: a transformers scheduler name",
        choices=scheduler_names,
    )
    max_grad_norm: float = setting(
        1.0, help="gradient clipping norm; 0 turns clipping off", bounds=NON_NEGATIVE
    )
    log_every: int = setting(10, help="optimizer steps between log lines", bounds=AT_LEAST_1)


@dataclass
class EvalConfig:
    batch_size: int = setting(32, help="test samples per generate call", bounds=AT_LEAST_1)
    max_new_tokens: int = setting(
        24,
        help="most tokens generated per answer (a normalised box is ~17 with the tiny tokenizer)",
        bounds=AT_LEAST_1,
    )
    all_tasks: bool = setting(
        False, help="also evaluate tasks not yet learned (needed for forward transfer)"
    )


@dataclass
class MethodConfig:
    name: str = setting(
        "finetune-lora", help="a registered method (src/mcit/methods/; an unknown name lists them)"
    )
    args: dict[str, Any] = setting(
        default_factory=dict, help="the method's own keys (checked by the method)"
    )


@dataclass
class ModelConfig:
    backbone: BackboneConfig = setting(default_factory=BackboneConfig, help="the LMM")


@dataclass
class RunConfig:
    name: str | None = setting(
        None,
        help="run folder name under output_dir (default: <benchmark>-<method>); the folder, "
        "not this name, is the run's identity",
        check=_folder_name_problem,
    )
    output_dir: str = setting("runs", help="folder that holds the run folders")
    seed: int = setting(0, help="seed of training and evaluation", bounds=SEED)
    method: MethodConfig = setting(default_factory=MethodConfig, help="the method")
    data: DataConfig = setting(default_factory=DataConfig, help="the benchmark and its stream")
    model: ModelConfig = setting(default_factory=ModelConfig, help="the model")
    train: TrainConfig = setting(default_factory=TrainConfig, help="training of every stage")
    eval: EvalConfig = setting(default_factory=EvalConfig, help="evaluation after every stage")

    @property
    def run_name(self) -> str:
        bench = (
            Path(self.data.benchmark).name if "/" in self.data.benchmark else self.data.benchmark
        )
        return self.name or f"{bench}-{self.method.name}"


def config_help(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help with the allowed values) of every key of `cls`, depth first."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows += config_help(hints[f.name], f"{key}.")
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        text = f.metadata.get("help", "")
        allowed = []
        if f.metadata.get("bounds") is not None:
            allowed.append(f.metadata["bounds"].describe())
        choices = f.metadata.get("choices")
        if choices is not None:
            allowed.append(" | ".join(choices() if callable(choices) else choices))
        if allowed:
            text += f" [{'; '.join(allowed)}]"
        rows.append((key, json.dumps(default), text))
    return rows


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


TOP_LEVEL = "the top level"  # what `from_dict` calls a config's root in its messages


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
        key = name if where == TOP_LEVEL else f"{where}.{name}"
        kwargs[name] = _check_type(value, hints[name], key)
        # Before the dataclass is built: its __post_init__ may combine keys (r % experts) and
        # must see each of them in range first.
        problem = value_problem(fields[name], kwargs[name])
        if problem:
            raise ConfigError(f"{key}: {kwargs[name]!r} {problem}")
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
            raise ConfigError(
                f"override '{item}': cannot parse the value ({yaml_problem(err)})"
            ) from None
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
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            # JSON is read as JSON: PyYAML would refuse valid JSON indented with tabs and
            # word a JSON mistake in YAML's terms.
            try:
                tree = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}: {json_problem(err)}") from None
        else:
            try:
                tree = yaml.safe_load(text) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: invalid YAML ({yaml_problem(err)})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    for key, value in parse_overrides(overrides or []):
        _set_dotted(tree, key, value)
    try:
        return from_dict(RunConfig, tree, where=TOP_LEVEL)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
