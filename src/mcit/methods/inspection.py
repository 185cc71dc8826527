"""What a method may show about itself beyond its answers: optional protocols, not hooks every
method must carry. `mcit predict` reads `ExplainsChoices`; the runner (and through the saved
files, `mcit report`) reads `ProducesAnalyses`. A method implements either by defining the
method; nothing to inherit or register.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from mcit.data.collate import Batch
from mcit.data.sample import Sample
from mcit.evaluation.analysis import StageAnalysis


@runtime_checkable
class ExplainsChoices(Protocol):
    """A method that makes a per-input choice at inference (ModalPrompt's selected prompts,
    L2P's pool prompts) and can say what it chose.

    It may also define a classmethod `format_explanation(explanation) -> list[str]` to print
    its own fields; `explanation_lines` falls back to a generic layout."""

    def explain(self, batch: Batch) -> list[dict[str, Any]]:
        """Per sample of `batch`, what the method chose for it (JSON-able)."""
        ...


@runtime_checkable
class ProducesAnalyses(Protocol):
    """A method that saves matrices after each stage's evaluation, beside the accuracy matrix
    (`RUN/analysis/stage_<t>/<name>.json`), computed on the evaluated tasks' test samples;
    `learned_tasks` names the stages so far."""

    def analyses(
        self, test_sets: dict[str, list[Sample]], learned_tasks: list[str]
    ) -> StageAnalysis: ...


def explain(method: object, batch: Batch) -> list[dict[str, Any]]:
    """`method.explain(batch)`, or nothing for a method that makes no per-input choice."""
    return method.explain(batch) if isinstance(method, ExplainsChoices) else []


def stage_analyses(
    method: object, test_sets: dict[str, list[Sample]], learned_tasks: list[str]
) -> StageAnalysis:
    """`method.analyses(...)`, or none for a method that produces no analyses."""
    if isinstance(method, ProducesAnalyses):
        return method.analyses(test_sets, learned_tasks)
    return StageAnalysis()


def explanation_lines(method_class: type, explanation: dict[str, Any]) -> list[str]:
    """Readable lines of one sample's explanation: the method class's own
    `format_explanation` when it has one, else each field (numbers to 3 decimals, lists of
    numbers on one line, lists of mappings as numbered rows)."""
    own = getattr(method_class, "format_explanation", None)
    if own is not None:
        return own(explanation)
    lines = []
    for key, value in explanation.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{key}:")
            lines += [
                f"  {i}. " + ", ".join(f"{k} {_short(v)}" for k, v in row.items())
                for i, row in enumerate(value, start=1)
            ]
        elif isinstance(value, list):
            lines.append(f"{key}: " + ", ".join(_short(v) for v in value))
        else:
            lines.append(f"{key}: {_short(value)}")
    return lines


def _short(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
