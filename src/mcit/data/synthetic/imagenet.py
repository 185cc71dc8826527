"""ImageNet-style classification (metric: contains): 16 classes, one object per image.

Ten classes are real handwritten digits from scikit-learn (train and test use disjoint digit
images), six are drawn everyday objects. Class names are never substrings of each other, so one
answer cannot "contain" several labels.
"""

from __future__ import annotations

import random

from mcit.data.synthetic.common import SHORT_ANSWER, Example, schedule
from mcit.data.synthetic.scene import Canvas, background_color, digit_indices
from mcit.data.synthetic.vocab import COLORS, DIGIT_CLASSES, IMAGENET_CLASSES

TEMPLATE = "What is the object in the image?"
TEMPLATES: tuple[str, ...] = (TEMPLATE,)

PAPERS = ((245, 245, 240), (235, 228, 205), (220, 230, 240))  # light paper for the digits
INKS = ((20, 20, 20), (30, 40, 140), (140, 30, 30))


def render(rng: random.Random, label: str, image_size: int, split: str) -> Canvas:
    """One object of class `label`, at a random scale and place."""
    c = Canvas(image_size, background_color(rng))
    side = rng.uniform(0.55, 0.85)
    x, y = rng.uniform(0.04, 0.96 - side), rng.uniform(0.04, 0.96 - side)
    box = (x, y, x + side, y + side)
    if label in DIGIT_CLASSES:
        index = rng.choice(digit_indices(DIGIT_CLASSES.index(label), split))
        c.rect(box, rng.choice(PAPERS))
        pad = side * 0.08
        c.digit(index, (x + pad, y + pad, x + side - pad, y + side - pad), rng.choice(INKS))
    else:
        main, second = rng.sample(list(COLORS.values()), 2)
        if label == "tree":  # trees are green or autumn-coloured, not any colour
            main = rng.choice((COLORS["green"], (30, 120, 50), COLORS["orange"]))
        c.drawing(label, box, main, second)
    return c


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    return [
        Example(
            render(rng, label, image_size, split).image(),
            TEMPLATE + SHORT_ANSWER,
            label,
            template=TEMPLATE,
        )
        for label in schedule(rng, IMAGENET_CLASSES, n)
    ]
