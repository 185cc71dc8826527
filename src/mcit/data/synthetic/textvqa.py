"""TextVQA-style reading of a word on a sign in a scene of shapes (metric: vqa).

Ten annotator answers per sample as in VQA data: mostly the word, sometimes typed in another
case (normalised away by the VQA evaluation) and sometimes a misreading (a near word).
"""

from __future__ import annotations

import random

from mcit.data.synthetic.common import SHORT_ANSWER, Example, annotators, retry, schedule
from mcit.data.synthetic.scene import Canvas, Obj, background_color, place_boxes, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, SHAPES, SIGN_WORDS

TEMPLATES: tuple[str, ...] = (
    "What word is written on the sign?",
    "What does the sign say?",
    "What is written on the sign?",
    "What word can you read in this image?",
    "What text is shown on the board?",
)
BOARDS = ((250, 250, 250), (246, 222, 36), (250, 236, 200))  # white, yellow, cream; dark ink


def near_words(word: str) -> list[str]:
    """Every near word an annotator might type: one letter dropped, doubled or swapped."""
    near = set()
    for i in range(len(word)):
        near.add(word[:i] + word[i + 1 :])
        near.add(word[:i] + word[i] + word[i:])
        if i + 1 < len(word):
            near.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    near.discard(word)
    return sorted(w for w in near if len(w) > 1)


def render(rng: random.Random, word: str, image_size: int) -> tuple[Canvas, list[Obj]]:
    """A sign with `word` at a random place, and one to three shapes around it."""

    def make() -> tuple[Canvas, list[Obj]] | None:
        c = Canvas(image_size, background_color(rng))
        height = rng.uniform(0.2, 0.24)  # font size, normalised: ~14 px at 64 px
        w = c.text_width(word, height) + 0.08
        h = height * 1.35
        if w > 0.96:
            return None
        boxes = place_boxes(rng, [max(w, h)], margin=0.02)  # a square slot, then the board in it
        if boxes is None:
            return None
        x1, y1, _, _ = boxes[0]
        board = (x1, y1, x1 + w, y1 + h)
        shapes = scatter(
            rng,
            [(rng.choice(SHAPES), rng.choice(COLOR_NAMES)) for _ in range(rng.randint(1, 3))],
            side_range=(0.14, 0.22),
            avoid=[(board[0], board[1], board[2], min(1.0, board[3] + 0.25))],
            gap=0.03,
        )
        if shapes is None:
            return None
        for o in shapes:
            c.obj(o)
        c.sign(word, board, rng.choice(BOARDS), (20, 20, 20))
        return c, shapes

    return retry(make, "sign scene")


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    out = []
    for word, template in zip(
        schedule(rng, SIGN_WORDS, n), schedule(rng, TEMPLATES, n), strict=True
    ):
        image = render(rng, word, image_size)[0].image()
        refs = annotators(rng, word, near_words(word), [word.upper(), word.capitalize()])
        out.append(Example(image, template + SHORT_ANSWER, word, refs, template))
    return out
