"""Which methods a bench measures, with which arguments, and how each is built on one backbone.

A method is named by its registry name (every registered method by default, so methods added
later join automatically) or by a run-config YAML (e.g. an ablation such as
`configs/coin-mini/modalprompt-no-selection.yaml`, labelled by its `name:`). A registry name
takes its arguments from `<method configs>/<name>.yaml` when that file exists (the budgets the
shipped runs use on that backbone), else the method's defaults (the papers' settings).

Two references are always measured, and every ratio is taken against them: the base model (the
registered method that does not train, `ContinualMethod.trains`) and the baseline the paper
measures its claims against (`mcit.bench.paper`, e.g. MoELoRA for ModalPrompt's Tab. 5).

Every method gets its own module tree over the *same* frozen weights: the backbone is loaded
once and each method receives a deep copy that shares its parameter and buffer tensors, so N
methods cost one backbone's memory. A method that makes backbone weights trainable (full
fine-tuning) would change them for every other method, so it gets a private copy instead.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mcit.bench.paper import paper_figures
from mcit.config import load_config
from mcit.errors import ConfigError
from mcit.methods.base import ContinualMethod, build_method, method_class, method_names
from mcit.models.backbone import Backbone

# Method args for the tiny backbone: the shipped coin-mini runs' budgets (read from a checkout).
SHIPPED_METHOD_CONFIGS = Path("configs/coin-mini")


@dataclass
class MethodSpec:
    label: str  # unique name in the bench's tables
    name: str  # registry name
    args: dict[str, Any] = field(default_factory=dict)
    args_source: str = "defaults"  # the YAML the args came from, or "defaults"


def default_method_configs(backbone_name: str) -> Path | None:
    """Where method args come from when `--method-configs` is not given: the shipped coin-mini
    configs for the tiny backbone (their budgets are sized for it), when they are at hand;
    the methods' own defaults (the papers' settings) for any other backbone."""
    if backbone_name == "tiny" and SHIPPED_METHOD_CONFIGS.is_dir():
        return SHIPPED_METHOD_CONFIGS
    return None


def _from_yaml(path: Path) -> MethodSpec:
    config = load_config(path)
    label = config.name or path.stem
    return MethodSpec(label, config.method.name, dict(config.method.args), str(path))


def _from_name(name: str, method_configs: Path | None) -> MethodSpec:
    if method_configs is not None:
        path = method_configs / f"{name}.yaml"
        if path.is_file():
            config = load_config(path)
            if config.method.name != name:
                raise ConfigError(
                    f"{path}: method.name is '{config.method.name}', expected '{name}' "
                    f"(a method's args are read from <method configs>/<name>.yaml)"
                )
            return MethodSpec(name, name, dict(config.method.args), str(path))
    return MethodSpec(name, name)


@dataclass(frozen=True)
class References:
    """The labels every ratio is taken against: the base model's and the paper's baseline's
    (None when that method is not registered)."""

    base: str | None
    baseline: str | None

    def labels(self) -> tuple[str, ...]:
        return tuple(label for label in (self.base, self.baseline) if label is not None)


def reference_methods() -> References:
    """The registry names of the base model (the first registered method that does not
    train) and of the paper's baseline (when registered)."""
    known = method_names()
    untrained = [name for name in known if not method_class(name)[0].trains]
    baseline = paper_figures().baseline
    return References(untrained[0] if untrained else None, baseline if baseline in known else None)


def resolve_methods(items: list[str] | None, method_configs: str | Path | None) -> list[MethodSpec]:
    """The bench's methods in table order: the base model, the paper's baseline, then the
    others."""
    known = method_names()
    folder = Path(method_configs) if method_configs else None
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"--method-configs {folder}: no such folder")
    wanted = list(items) if items else list(known)
    references = reference_methods().labels()
    for reference in references:
        if reference not in wanted:
            wanted.append(reference)
    specs = []
    for item in wanted:
        item = item.strip()
        if item in known:
            specs.append(_from_name(item, folder))
        elif item.endswith((".yaml", ".yml")) or Path(item).is_file():
            if not Path(item).is_file():
                raise ConfigError(f"--methods: {item}: no such config file")
            specs.append(_from_yaml(Path(item)))
        else:
            raise ConfigError(
                f"--methods: '{item}' is neither a registered method ({', '.join(known)}) "
                f"nor a run-config YAML"
            )
    labels = [s.label for s in specs]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ConfigError(f"--methods: each method needs its own label; repeated: {duplicated}")
    for spec in specs:  # bad args fail here, before anything heavy
        try:
            method_class(spec.name, spec.args)
        except ConfigError as err:
            raise ConfigError(f"{spec.args_source}: {err}") from err
    order = {label: i for i, label in enumerate(references)}
    return sorted(specs, key=lambda s: order.get(s.label, len(order)))


def shared_copy(backbone: Backbone) -> Backbone:
    """A new module tree over the same parameter and buffer tensors (and tokenizer)."""
    memo: dict[int, Any] = {
        id(t): t for t in itertools.chain(backbone.parameters(), backbone.buffers())
    }
    for helper in (backbone.tokenizer, backbone.image_processor):
        if helper is not None:
            memo[id(helper)] = helper
    return copy.deepcopy(backbone, memo)


def private_copy(backbone: Backbone) -> Backbone:
    """A new module tree with its own copy of every tensor."""
    memo: dict[int, Any] = {}
    for helper in (backbone.tokenizer, backbone.image_processor):
        if helper is not None:
            memo[id(helper)] = helper
    return copy.deepcopy(backbone, memo)


def build_on(backbone: Backbone, spec: MethodSpec, device: torch.device) -> ContinualMethod:
    """`spec`'s method on a copy of `backbone` sharing its frozen weights, or on a private copy
    when the method trains backbone weights."""
    method = build_method(spec.name, shared_copy(backbone), spec.args)
    shared = list(backbone.parameters())
    if any(p.requires_grad for p in shared):
        for p in shared:  # undo what the method switched on in the shared tensors
            p.requires_grad_(False)
        method = build_method(spec.name, private_copy(backbone), spec.args)
    return method.to(device)
