"""VQAv2-style general questions: counting, attributes, existence (metric: vqa).

Unlike GQA's relational questions these are about the scene as a whole or one named object.
Counts are answered with digits, as VQA normalises them; ten annotator answers per sample, most
agreeing, a few off by one or confusing a neighbouring colour or shape, some writing numbers as
words (normalised back to digits by the VQA evaluation).
"""

from __future__ import annotations

import random

from mcit.data.synthetic.common import SHORT_ANSWER, Example, annotators, retry, schedule
from mcit.data.synthetic.scene import Obj, background_color, render_objects, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, NUMBER_WORDS, PLURALS, SHAPES

TEMPLATES: dict[str, str] = {
    "count_shape": "How many {plural} are there?",
    "count_color": "How many {color} shapes are in the picture?",
    "color_of": "What color is the {shape}?",
    "shape_of": "What shape is the {color} object?",
    "has_shape": "Is there a {shape} in the image?",
    "has_color": "Are there any {color} shapes?",
}
COUNTS = ("0", "1", "2", "3", "4")
COLOR_CONFUSIONS = {
    "red": ("orange", "purple"),
    "orange": ("red", "yellow"),
    "yellow": ("orange", "white"),
    "green": ("blue", "yellow"),
    "blue": ("purple", "green"),
    "purple": ("blue", "red"),
    "white": ("yellow",),
    "black": ("blue", "purple"),
}
SHAPE_CONFUSIONS = {
    "circle": ("square",),
    "square": ("diamond",),
    "triangle": ("diamond",),
    "star": ("cross",),
    "diamond": ("square", "triangle"),
    "cross": ("star",),
}


def _scene(
    rng: random.Random, inside: list[tuple[str, str]], others: list[tuple[str, str]]
) -> list[Obj] | None:
    specs = inside + others
    rng.shuffle(specs)
    side = (0.16, 0.28) if len(specs) <= 3 else (0.12, 0.2)
    return scatter(rng, specs, side_range=side, gap=0.03)


def _one(rng: random.Random, kind: str, answer: str) -> tuple[list[Obj], str, list[str]]:
    """A scene, the question and the annotators' confusions for a wanted answer."""
    shape, color = rng.choice(SHAPES), rng.choice(COLOR_NAMES)
    other_shapes = [s for s in SHAPES if s != shape]
    other_colors = [c for c in COLOR_NAMES if c != color]
    n_other = rng.randint(1, 3)
    if kind == "count_shape":
        c = int(answer)
        inside = [(shape, rng.choice(COLOR_NAMES)) for _ in range(c)]
        others = [(rng.choice(other_shapes), rng.choice(COLOR_NAMES)) for _ in range(n_other)]
        q = TEMPLATES[kind].format(plural=PLURALS[shape])
    elif kind == "count_color":
        c = int(answer)
        inside = [(rng.choice(SHAPES), color) for _ in range(c)]
        others = [(rng.choice(SHAPES), rng.choice(other_colors)) for _ in range(n_other)]
        q = TEMPLATES[kind].format(color=color)
    elif kind == "color_of":
        inside = [(shape, answer)]
        others = [(rng.choice(other_shapes), rng.choice(COLOR_NAMES)) for _ in range(n_other)]
        q = TEMPLATES[kind].format(shape=shape)
    elif kind == "shape_of":
        inside = [(answer, color)]
        others = [(rng.choice(SHAPES), rng.choice(other_colors)) for _ in range(n_other)]
        q = TEMPLATES[kind].format(color=color)
    elif kind == "has_shape":
        inside = [(shape, rng.choice(COLOR_NAMES))] if answer == "yes" else []
        others = [(rng.choice(other_shapes), rng.choice(COLOR_NAMES)) for _ in range(n_other)]
        q = TEMPLATES[kind].format(shape=shape)
    else:  # has_color
        inside = [(rng.choice(SHAPES), color)] if answer == "yes" else []
        others = [(rng.choice(SHAPES), rng.choice(other_colors)) for _ in range(n_other)]
        q = TEMPLATES[kind].format(color=color)
    objs = retry(lambda: _scene(rng, inside, others), "vqav2 scene")
    if kind.startswith("count"):
        c = int(answer)
        confusions = [str(v) for v in (c - 1, c + 1) if v >= 0]
    elif kind == "color_of":
        confusions = list(COLOR_CONFUSIONS[answer])
    elif kind == "shape_of":
        confusions = list(SHAPE_CONFUSIONS[answer])
    else:
        confusions = ["no" if answer == "yes" else "yes"]
    return objs, q, confusions


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    kinds = schedule(rng, list(TEMPLATES), n)
    # A balanced answer schedule per template.
    values = {
        "count_shape": COUNTS,
        "count_color": COUNTS,
        "color_of": COLOR_NAMES,
        "shape_of": SHAPES,
        "has_shape": ("yes", "no"),
        "has_color": ("yes", "no"),
    }
    answers = {k: iter(schedule(rng, v, kinds.count(k))) for k, v in values.items()}
    out = []
    for kind in kinds:
        answer = next(answers[kind])
        objs, q, confusions = _one(rng, kind, answer)
        image = render_objects(image_size, objs, background_color(rng)).image()
        variants = [NUMBER_WORDS[int(answer)]] if kind.startswith("count") else []
        refs = annotators(rng, answer, confusions, variants)
        out.append(Example(image, q + SHORT_ANSWER, answer, refs, TEMPLATES[kind]))
    return out
