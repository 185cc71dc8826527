"""The records every part of mcit exchanges: one `Sample` per example, one `Task` per stage.

A sample is modality-neutral: `media` maps a modality name ("image", "audio", "video") to a
file path, so the image-only CoIN stream and the modality-inconsistent MICL stream share one
record. `turns` holds the conversation as (user, assistant) pairs without any media placeholder;
the collator puts the placeholder in front of the first user turn, as LLaVA does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Metric names understood by `mcit.evaluation.scorers` (docs/metrics-and-reports.md, the scoring rules).
METRICS = ("vqa", "exact", "option", "contains", "iou", "cider")
MODALITIES = ("image", "audio", "video")


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


def joint_task(tasks: list[Task]) -> Task:
    """One stage over several tasks (joint training): the union of their training data."""
    if len(tasks) == 1:
        return tasks[0]
    return Task(
        name="+".join(t.name for t in tasks) if len(tasks) <= 3 else f"joint-{len(tasks)}-tasks",
        metric="mixed",
        train=[s for t in tasks for s in t.train],
        test=[s for t in tasks for s in t.test],
        modality="mixed",
        description="joint",
    )


def named_stage(names: list[str]) -> Task:
    """The task of a stage that trained the tasks `names`, without their data: what restoring
    a method and timing it need (a method's `begin_task` must not need the data)."""
    return joint_task([Task(n, "mixed", [], []) for n in names])


def stream_modalities(tasks: list[Task]) -> tuple[str, ...]:
    """The media a stream's tasks carry, in the order they first appear (what the backbone
    must load)."""
    return tuple(dict.fromkeys(t.modality for t in tasks if t.modality != "text"))
