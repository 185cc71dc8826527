"""Writing a generated micl-mini task in mcit's benchmark format (docs/data-format.md): one
media file per sample under `<task>/media/`, `train.json` (LLaVA conversations with the
modality's tag) and `test.jsonl` (with every reference), as coin-mini writes its image tasks."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

M = TypeVar("M")


@dataclass
class MediaExample(Generic[M]):
    """One generated sample: its media (a picture, a clip, a sound), the question (no tag), its
    answer and every accepted reference; `template` names the question template it came from,
    so that balance can be checked per template."""

    media: M
    question: str
    answer: str
    references: list[str] = field(default_factory=list)
    template: str = ""

    def __post_init__(self) -> None:
        if not self.references:
            self.references = [self.answer]


def write_task(
    root: Path,
    name: str,
    modality: str,
    splits: dict[str, Sequence[MediaExample[Any]]],
    save_media: Callable[[Any, Path], None],
    suffix: str,
) -> Path:
    """Write `splits` ("train", "test": generated examples) of task `name` under `root/name`;
    `save_media(media, path)` writes one example's media file (`suffix`, e.g. ".wav")."""
    folder = root / name
    (folder / "media").mkdir(parents=True, exist_ok=True)
    tag = f"<{modality}>"
    for split, examples in splits.items():
        records: list[dict[str, Any]] = []
        for i, ex in enumerate(examples):
            media = f"media/{'t' if split == 'test' else ''}{i:05d}{suffix}"
            save_media(ex.media, folder / media)
            if split == "train":
                records.append(
                    {
                        "id": f"{name}-{i:05d}",
                        modality: media,
                        "conversations": [
                            {"from": "human", "value": f"{tag}\n{ex.question}"},
                            {"from": "gpt", "value": ex.answer},
                        ],
                    }
                )
            else:
                records.append(
                    {
                        "question_id": f"{name}-t-{i:05d}",
                        modality: media,
                        "text": ex.question,
                        "answer": ex.answer,
                        "answers": list(ex.references),
                    }
                )
        if split == "train":
            text = json.dumps(records, indent=1, ensure_ascii=False) + "\n"
            (folder / "train.json").write_text(text)
        else:
            lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            (folder / "test.jsonl").write_text("".join(lines))
    return folder
