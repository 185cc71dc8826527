"""The one interface every continual method implements, and the registry that names them.

A method is an `nn.Module` that holds the backbone and whatever it adds (LoRA, prompts,
experts). The trainer wraps the method itself for DDP, so everything it trains is reached
through `forward` (= `training_loss`). The trainer and the evaluator never branch on a method's
name: what differs between methods lives in the hooks below. What a method may show about
itself (its per-input choices, per-stage analyses) is an optional protocol in
`mcit.methods.inspection`.

Naming: the DESIGN sketch calls the method's own save/load `state_dict`/`load_state_dict`;
here they are `method_state`/`load_method_state`, because `nn.Module.state_dict` must keep its
meaning (the whole module) for DDP and accelerate.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mcit.config import check_fields, from_dict
from mcit.data.collate import Batch
from mcit.data.sample import Sample, Task, named_stage
from mcit.errors import CheckpointError, ConfigError
from mcit.models.backbone import Backbone


@dataclass
class LossOutput:
    """The loss to minimise and its named parts (floats, for the logs)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class MethodArgs:
    """Base of every method's own config (the `method.args` mapping of a run config). Declare
    each key with `mcit.config.setting` (help text and allowed range): every value's range is
    checked, also when the args are built in code (its type only when read from a config). A check that combines keys goes in the subclass's
    `__post_init__`, after `super().__post_init__()`."""

    def __post_init__(self) -> None:
        check_fields(self, "method.args")


@dataclass(frozen=True)
class ModelShapes:
    """The sizes a parameter formula needs, of a model that is not built."""

    lm_hidden: int  # d: the LM's hidden width
    guidance_width: int  # c: the guidance encoder's feature width (e.g. CLIP's projection)
    lm_layers: int  # N: the LM's decoder layers


@dataclass(frozen=True)
class ParameterFormula:
    """A method's parameters after some tasks, counted without building it."""

    trainable: int  # what trains at the last stage
    added: int  # everything the method holds beside the backbone
    first_task: int  # what it holds after the first task
    guidance_encoder: bool  # whether it also keeps a frozen guidance encoder beside it
    formula: str  # how it was counted, for the reader


class ContinualMethod(nn.Module):
    name: ClassVar[str] = ""
    args_class: ClassVar[type[MethodArgs]] = MethodArgs
    # False for methods that never train (zero-shot): the runner skips the training loop.
    trains: ClassVar[bool] = True
    # False for methods that keep old samples (replay): reported as not rehearsal-free.
    rehearsal_free: ClassVar[bool] = True
    # Non-empty for a method rebuilt without its authors' code: what it is, shown by `mcit run`
    # and marked in the reports.
    reconstruction: ClassVar[str] = ""

    def __init__(self, backbone: Backbone, args: MethodArgs):
        super().__init__()
        self.backbone = backbone
        self.args = args
        self.tasks_seen: list[str] = []
        if self.trains and backbone.config.train_media_projections and backbone.media is not None:
            # MICL's model trains each modality's projection with the method (saved with it).
            # Before `attach`, so a method sees them among what trains (EWC's Fisher).
            backbone.train_media_projections()
        self.attach()

    # ------------------------------------------------------------------ lifecycle
    def attach(self) -> None:
        """Add modules and set `requires_grad`. The backbone arrives frozen, but for the audio
        and video projections when `model.backbone.train_media_projections` is on."""

    def stage_plan(self, tasks: list[Task]) -> list[list[Task]]:
        """Which tasks each training stage sees. Continual methods: one task per stage."""
        return [[task] for task in tasks]

    def begin_task(self, task_id: int, task: Task) -> None:
        """Called before training stage `task_id` (0-based); `task` may be a joint union."""

    def end_task(self, task_id: int, task: Task, train_samples: list[Sample]) -> None:
        """Called after the stage's training (Fisher, bases, snapshots of the old model)."""
        self.tasks_seen.append(task.name)

    # ------------------------------------------------------------------ training
    def forward(self, batch: Batch) -> LossOutput:
        return self.training_loss(batch)

    def training_loss(self, batch: Batch) -> LossOutput:
        """Default: the LM loss of the backbone (with whatever adapters the method added)."""
        logits = self.lm_logits(batch)
        loss = self.backbone.lm_loss(logits, batch.labels)
        return LossOutput(loss, {"lm": loss.item()})

    def lm_logits(self, batch: Batch) -> torch.Tensor:
        embeds = self.backbone.embed_batch(batch)
        return self.backbone.logits(embeds, batch.attention_mask)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def before_optimizer_step(self) -> None:
        """Hook between backward and the optimizer step (e.g. gradient projection)."""

    def after_optimizer_step(self) -> None:
        """Hook right after the optimizer step, e.g. to project the update itself: an adaptive
        optimizer (AdamW) rescales each coordinate, so a projected gradient alone does not
        give a projected update."""

    def end_epoch(self) -> None:
        """Hook after every pass over the stage's data, and after the stage's last step (its
        last pass may be partial), e.g. to fuse weights with the old model's."""

    def batch_samples(self, samples: list[Sample]) -> list[Sample]:
        """The samples of a training batch, before collation: a method may swap some for its own
        (replay mixes in stored samples). Default: the batch as drawn."""
        return samples

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 16) -> list[str]:
        """Task-agnostic answers: a batch may mix tasks, and no task id is ever given."""
        embeds = self.backbone.embed_batch(batch)
        return self.backbone.generate(embeds, batch.attention_mask, max_new_tokens=max_new_tokens)

    # ------------------------------------------------------------------ persistence
    def method_state(self) -> dict[str, torch.Tensor]:
        """Everything this method owns after a stage (never the frozen backbone): what trains,
        every parameter and buffer it added outside the backbone, and what `_owns` claims."""
        state = {}
        for key, value in [*self.named_parameters(), *self.named_buffers()]:
            trainable = isinstance(value, nn.Parameter) and value.requires_grad
            if trainable or not key.startswith("backbone.") or self._owns(key):
                state[key] = value.detach().clone()
        return state

    def _owns(self, name: str) -> bool:
        """Whether a frozen tensor inside the backbone belongs to the method (e.g. old adapters)."""
        return False

    def load_method_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `method_state`. Modules created per task must exist first: `restore` replays
        `begin_task` for the finished stages before calling this."""
        tensors = dict([*self.named_parameters(), *self.named_buffers()])
        unknown = sorted(set(state) - set(tensors))
        if unknown:
            raise ValueError(
                f"{self.name}: saved state has tensors this method does not have: {unknown[:5]}"
            )
        with torch.no_grad():
            for key, value in state.items():
                tensors[key].copy_(value.to(tensors[key].device, tensors[key].dtype))

    def restore(
        self, stage_dir: Path, stages: list[list[str]] | None = None, remedy: str | None = None
    ) -> int:
        """Bring this freshly built method to its state saved in `stage_dir`: replay
        `begin_task` for every finished stage (which re-creates what each stage added: prompts,
        experts, adapters), then load the saved tensors and extra state. The stages come from
        the checkpoint itself; `stages` (task names per stage) serves a checkpoint that does
        not record them. The one restore path: a resumed run and `mcit predict` both use it.
        Returns the number of stages restored."""
        from mcit.train.checkpoint import read_stage

        saved = read_stage(stage_dir, remedy)
        if saved.method is not None:  # the folder names the method and args it was saved by
            mine = self.description()
            if saved.method["name"] != mine["name"]:
                raise CheckpointError(
                    f"{stage_dir}: holds a '{saved.method['name']}' checkpoint, not "
                    f"'{mine['name']}'"
                )
            # Through the args class: keys added since the checkpoint take their defaults.
            try:
                parsed = from_dict(self.args_class, saved.method["args"], where="method.args")
            except ConfigError as err:
                raise CheckpointError(f"{stage_dir}: its method args do not fit ({err})") from None
            theirs = json.loads(json.dumps(dataclasses.asdict(parsed)))
            changed = sorted(k for k in theirs if theirs[k] != mine["args"].get(k))
            if changed:
                key = changed[0]
                raise CheckpointError(
                    f"{stage_dir}: saved with method.args.{key}={theirs[key]!r}, this method "
                    f"has {mine['args'].get(key)!r}"
                )
        recorded = saved.stages
        if recorded is not None and stages is not None and recorded != stages:
            raise CheckpointError(
                f"{stage_dir}: the checkpoint's stages {recorded} are not the run's {stages}"
            )
        stages = recorded if recorded is not None else stages
        if stages is None:
            raise CheckpointError(f"{stage_dir}: the checkpoint does not name its stages")
        for s, names in enumerate(stages):
            self.begin_task(s, named_stage(names))
        try:
            self.load_method_state(saved.tensors)
        except (ValueError, RuntimeError) as err:  # unknown tensors, wrong shapes
            raise CheckpointError(f"{stage_dir}: does not fit this method ({err})") from None
        self.load_extra_state(saved.extra)
        return len(stages)

    # ------------------------------------------------------------------ accounting
    @classmethod
    def parameters_by_formula(
        cls, args: MethodArgs, shapes: ModelShapes, tasks: int
    ) -> ParameterFormula | None:
        """Only for a method that cannot be built without weights (one that loads an encoder
        from a directory): its parameters on a model of `shapes` after `tasks` tasks, by
        formula, for the bench's paper-scale accounting. The default, None, lets the bench build
        the method on the meta device and count it. The contract tests check a formula against
        the built method on the tiny backbone."""
        return None

    def description(self) -> dict[str, Any]:
        """What `method.json` records beside the tensors (as PEFT's adapter_config.json): the
        registry name and the args, as JSON gives them back."""
        return {"name": self.name, "args": json.loads(json.dumps(dataclasses.asdict(self.args)))}

    def extra_state(self) -> dict[str, Any]:
        """JSON-able bookkeeping saved beside the tensors (tasks seen, counters)."""
        return {"tasks_seen": list(self.tasks_seen)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.tasks_seen = list(state.get("tasks_seen", []))


# ---------------------------------------------------------------------------- registry
METHODS: dict[str, type[ContinualMethod]] = {}


def register_method(cls: type[ContinualMethod]) -> type[ContinualMethod]:
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no `name`")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise TypeError(f"two methods are named '{cls.name}'")
    METHODS[cls.name] = cls
    return cls


def _import_builtin_methods() -> None:
    # Importing the modules registers them; one file per method.
    import importlib
    import pkgutil

    import mcit.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"mcit.methods.{info.name}")


def method_names() -> list[str]:
    _import_builtin_methods()
    return sorted(METHODS)


def method_class(
    name: str, args: dict[str, Any] | None = None
) -> tuple[type[ContinualMethod], MethodArgs]:
    """The registered class and its parsed args; raises ConfigError before anything heavy runs."""
    _import_builtin_methods()
    if name not in METHODS:
        raise ConfigError(
            f"method.name: unknown method '{name}'; known: {', '.join(sorted(METHODS))}"
        )
    cls = METHODS[name]
    return cls, from_dict(cls.args_class, args or {}, where="method.args")


def registered_class(name: str | None) -> type[ContinualMethod] | None:
    """The class registered as `name`, or None (an unknown name is not an error here: a report
    may read runs of a method this installation lacks)."""
    _import_builtin_methods()
    return METHODS.get(name) if isinstance(name, str) else None


def method_trains(name: str | None) -> bool | None:
    """Whether the registered method `name` trains; None for a name not registered here."""
    cls = registered_class(name)
    return None if cls is None else cls.trains


def build_method(
    name: str, backbone: Backbone, args: dict[str, Any] | None = None
) -> ContinualMethod:
    cls, parsed = method_class(name, args)
    return cls(backbone, parsed)


def args_dict(args: MethodArgs) -> dict[str, Any]:
    return dataclasses.asdict(args)
