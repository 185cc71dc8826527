"""The paper figures the bench sets its measurements beside, read from `paper-figures.json`
(data beside the bench, not code in it): which method makes the efficiency claims, against
which baseline, the figures the paper prints, the targets mcit checks, and which methods the
LLaVA-1.5-7B accounting counts. Another paper's claims are another such file."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from mcit.errors import ConfigError
from mcit.files import read_json

FIGURES_FILE = "paper-figures.json"


@dataclass(frozen=True)
class PaperFigures:
    source: str  # where the figures are printed
    method: str  # the registry name of the method making the claims
    baseline: str  # the registry name of the method it is measured against
    trainable_pct: dict[str, float]  # method → trainable parameters, % of the model
    inference_speed: dict[str, float]  # method → as the paper prints it (higher is faster)
    training_time: dict[str, float]  # method → as the paper prints it (lower is faster)
    targets: dict[str, float]
    accounting_methods: tuple[str, ...]
    accounting_tasks: int

    def ratio(self, kind: str) -> float | None:
        """The method's figure over the baseline's, e.g. inference speed 3.43 / 2.41."""
        table = getattr(self, kind)
        if self.method in table and self.baseline in table:
            return table[self.method] / table[self.baseline]
        return None


def _parse(data: Any, source: str) -> PaperFigures:
    def need(node: Any, key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"{source}: field '{where}{key}' is missing")
        if not isinstance(node[key], kind) or isinstance(node[key], bool):
            raise ConfigError(f"{source}: field '{where}{key}' has the wrong type")
        return node[key]

    def figures(key: str) -> dict[str, float]:
        table = need(data, key, dict)
        for name, value in table.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{source}: field '{key}.{name}' is not a positive number")
        return {name: float(value) for name, value in table.items()}

    targets = figures("targets")
    for key in ("inference_speed_vs_baseline", "inference_speed_vs_base", "latency_growth_64_vs_8"):
        if key not in targets:
            raise ConfigError(f"{source}: field 'targets.{key}' is missing")
    accounting = need(data, "accounting", dict)
    methods = need(accounting, "methods", list, "accounting.")
    if not all(isinstance(m, str) for m in methods):
        raise ConfigError(f"{source}: field 'accounting.methods' is not a list of names")
    tasks = need(accounting, "tasks", int, "accounting.")
    if tasks < 1:
        raise ConfigError(f"{source}: field 'accounting.tasks' must be at least 1")
    return PaperFigures(
        source=need(data, "source", str),
        method=need(data, "method", str),
        baseline=need(data, "baseline", str),
        trainable_pct=figures("trainable_pct"),
        inference_speed=figures("inference_speed"),
        training_time=figures("training_time"),
        targets=targets,
        accounting_methods=tuple(methods),
        accounting_tasks=tasks,
    )


def read_paper_figures(path: str | Path) -> PaperFigures:
    """A paper-figures file, checked; ConfigError names the file and the field."""
    path = Path(path)
    return _parse(read_json(path, ConfigError), str(path))


@cache
def paper_figures() -> PaperFigures:
    """The figures shipped with mcit (`mcit/bench/paper-figures.json`)."""
    with resources.as_file(resources.files("mcit.bench") / FIGURES_FILE) as path:
        return read_paper_figures(path)
