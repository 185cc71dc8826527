"""VizWiz-style questions about degraded photos (metric: exact).

A blind user photographs one thing: a coloured object or a grocery label. Every photo is a little
blurred, noisy or dark; a quarter (`UNANSWERABLE_SHARE`, exactly) are too dark, too blurred, point
past the object or have a finger over it, and their answer is "unanswerable". Whether a photo is
answerable shows only in the image: it is drawn independently of the question template.
"""

from __future__ import annotations

import random

from PIL import Image

from mcit.data.synthetic.common import SHORT_ANSWER, UNANSWERABLE_HINT, Example, schedule
from mcit.data.synthetic.scene import (
    Box,
    Canvas,
    add_noise,
    background_color,
    blur,
    darken,
    np_rng,
    occlude,
)
from mcit.data.synthetic.vocab import COLOR_NAMES, COLORS, PRODUCT_WORDS, SHAPES

UNANSWERABLE = "unanswerable"
UNANSWERABLE_SHARE = 0.25
TEMPLATES: dict[str, str] = {
    "What color is this?": "color",
    "Can you tell me what color this is?": "color",
    "What is written here?": "read",
    "What does this label say?": "read",
    "What is this?": "read",
}
# How a photo fails, per kind of question (a blurred colour is still a colour).
FAILURES = {"color": ("dark", "away", "finger"), "read": ("dark", "blur", "cut", "finger")}


def _object_photo(rng: random.Random, color: str, size: int, away: bool) -> tuple[Canvas, Box]:
    c = Canvas(size, background_color(rng))
    side = rng.uniform(0.45, 0.75)
    if away:  # the camera points past the object: it is entirely out of frame
        x = rng.choice((-side - rng.uniform(0.02, 0.3), rng.uniform(1.02, 1.3)))
        y = rng.uniform(0.0, 1.0 - side)
    else:
        x, y = rng.uniform(0.05, 0.95 - side), rng.uniform(0.05, 0.95 - side)
    box = (x, y, x + side, y + side)
    c.shape(rng.choice(SHAPES), COLORS[color], box)
    return c, box


def _label_photo(rng: random.Random, word: str, size: int, cut: bool) -> tuple[Canvas, Box]:
    c = Canvas(size, background_color(rng))
    height = rng.uniform(0.2, 0.24)
    w = c.text_width(word, height) + 0.1
    h = height * 1.5
    if cut:  # the label runs off the edge: most of the word is outside the frame
        cx = rng.choice((rng.uniform(-0.05, 0.08), rng.uniform(0.92, 1.05)))
    else:
        cx = rng.uniform(w / 2 + 0.02, 0.98 - w / 2)
    cy = rng.uniform(h / 2 + 0.1, 0.9 - h / 2)
    package = rng.choice([v for k, v in COLORS.items() if k not in ("white", "yellow")])
    c.rect((cx - w / 2 - 0.12, cy - h / 2 - 0.2, cx + w / 2 + 0.12, cy + h / 2 + 0.25), package)
    label = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    c.rect(label, (245, 242, 230))
    return c, c.text(word, (cx, cy), height, (20, 20, 20))


def photo(
    rng: random.Random, kind: str, answer: str, failure: str | None, size: int
) -> Image.Image:
    """The photo for `answer`, degraded mildly, or by `failure` so that it is unanswerable."""
    gen = np_rng(rng)
    if kind == "color":
        canvas, box = _object_photo(rng, answer, size, away=failure == "away")
    else:
        canvas, box = _label_photo(rng, answer, size, cut=failure == "cut")
    img = canvas.image()
    scale = size / 64  # blur radii are in 64-px units
    if failure == "dark":
        img = add_noise(darken(img, rng.uniform(0.03, 0.08)), gen, rng.uniform(4, 8))
    elif failure == "blur":
        img = add_noise(blur(img, rng.uniform(3.0, 4.5) * scale), gen, rng.uniform(2, 8))
    elif failure == "finger":
        pad = 0.08
        x1, y1, x2, y2 = box
        img = occlude(img, (x1 - pad, y1 - pad, x2 + pad, y2 + 2 * pad))
        img = add_noise(blur(img, rng.uniform(0.0, 0.8) * scale), gen, rng.uniform(0, 8))
    else:  # answerable (or cut/away, which are failures of framing, not of exposure)
        img = darken(blur(img, rng.uniform(0.0, 0.8) * scale), rng.uniform(0.7, 1.0))
        img = add_noise(img, gen, rng.uniform(0, 8))
    return img


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    templates = schedule(rng, list(TEMPLATES), n)
    # Exactly `UNANSWERABLE_SHARE` of each template's photos fail (the template tells nothing).
    bad = {}
    for t in TEMPLATES:
        m = templates.count(t)
        k = round(m * UNANSWERABLE_SHARE)
        bad[t] = iter(rng.sample([True] * k + [False] * (m - k), m))
    colors, words = iter(schedule(rng, COLOR_NAMES, n)), iter(schedule(rng, PRODUCT_WORDS, n))
    out = []
    for template in templates:
        kind, unanswerable = TEMPLATES[template], next(bad[template])
        content = next(colors) if kind == "color" else next(words)
        failure = rng.choice(FAILURES[kind]) if unanswerable else None
        image = photo(rng, kind, content, failure, image_size)
        answer = UNANSWERABLE if unanswerable else content
        question = template + UNANSWERABLE_HINT + SHORT_ANSWER
        out.append(Example(image, question, answer, template=template))
    return out
