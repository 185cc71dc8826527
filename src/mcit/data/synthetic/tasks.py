"""The eight coin-mini task families: name -> generator, metric, description, templates.

Each family lives in its own module (`scienceqa.py`, `textvqa.py`, ...) and mirrors its CoIN
counterpart: the same instruction, answer format and metric (docs/metrics-and-reports.md, the scoring rules).
"""

from __future__ import annotations

from dataclasses import dataclass

from mcit.data.synthetic import (
    gqa,
    grounding,
    imagenet,
    ocrvqa,
    scienceqa,
    textvqa,
    vizwiz,
    vqav2,
)
from mcit.data.synthetic.common import Generator


@dataclass(frozen=True)
class TaskSpec:
    """A task family: how to generate it and how it is scored."""

    name: str
    metric: str
    description: str
    generate: Generator  # (n, rng, image_size=64, split="train") -> list[Example]
    templates: tuple[str, ...]  # its question templates (before the CoIN instruction)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "scienceqa",
            "option",
            "multiple choice about a scene, 2-5 lettered options (ScienceQA)",
            scienceqa.generate,
            tuple(scienceqa.TEMPLATES.values()),
        ),
        TaskSpec(
            "textvqa",
            "vqa",
            "read the word on a sign, ten annotator answers (TextVQA)",
            textvqa.generate,
            textvqa.TEMPLATES,
        ),
        TaskSpec(
            "imagenet",
            "contains",
            "classify handwritten digits and drawn objects, 16 classes (ImageNet)",
            imagenet.generate,
            imagenet.TEMPLATES,
        ),
        TaskSpec(
            "gqa",
            "exact",
            "compositional questions on spatial relations (GQA)",
            gqa.generate,
            tuple(gqa.TEMPLATES.values()),
        ),
        TaskSpec(
            "vizwiz",
            "exact",
            "questions on degraded photos, a quarter unanswerable (VizWiz)",
            vizwiz.generate,
            tuple(vizwiz.TEMPLATES),
        ),
        TaskSpec(
            "grounding",
            "iou",
            "box of the object a referring expression describes (RefCOCO REC)",
            grounding.generate,
            grounding.TEMPLATES,
        ),
        TaskSpec(
            "vqav2",
            "vqa",
            "counting, attribute and existence questions, ten annotator answers (VQAv2)",
            vqav2.generate,
            tuple(vqav2.TEMPLATES.values()),
        ),
        TaskSpec(
            "ocrvqa",
            "exact",
            "title, author and genre of book covers (OCR-VQA)",
            ocrvqa.generate,
            tuple(ocrvqa.TEMPLATES),
        ),
    )
}
