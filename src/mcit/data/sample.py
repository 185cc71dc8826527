"""The records every part of mcit exchanges: one `Sample` per example, one `Task` per stage.

A sample is modality-neutral: `media` maps a modality name ("image", "audio", "video") to a
file path, so the image-only CoIN stream and the modality-inconsistent MICL stream share one
record. `turns` holds the conversation as (user, assistant) pairs without any media placeholder;
the collator puts the placeholder in front of the first user turn, as LLaVA does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Metric names understood by `mcit.evaluation.scorers` (docs/metrics-and-reports.md, the scoring rules).
METRICS = ("vqa", "exact", "option", "contains", "iou", "cider")
MODALITIES = ("image", "audio", "video")


class DataError(ValueError):
    """Bad input data. The message always names the file, the record and the field."""

    def __init__(
        self, path: str | Path, record: str | int | None, field_name: str | None, problem: str
    ):
        self.path = str(path)
        self.record = record
        self.field = field_name
        self.problem = problem
        where = self.path
        if record is not None:
            where += f", record {record}"
        if field_name is not None:
            where += f", field '{field_name}'"
        super().__init__(f"{where}: {problem}")


@dataclass
class Sample:
    """One example: media, a conversation, and what counts as a right answer."""

    id: str
    task: str
    turns: list[tuple[str, str]]  # (user text, assistant text); user text has no <image> tag
    references: list[str]  # every accepted answer of the last turn (VQA: ten annotators)
    metric: str
    media: dict[str, str] = field(default_factory=dict)  # modality -> absolute file path

    @property
    def instruction(self) -> str:
        """The user text of the last turn: what the model is asked at test time."""
        return self.turns[-1][0]

    @property
    def answer(self) -> str:
        """The training target of the last turn."""
        return self.turns[-1][1]

    @property
    def modality(self) -> str:
        return next(iter(self.media), "text")


@dataclass
class Task:
    """One stage of a stream: its name, metric, modality, and its train and test samples."""

    name: str
    metric: str
    train: list[Sample]
    test: list[Sample]
    modality: str = "image"
    description: str = ""
