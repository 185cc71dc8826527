"""Generated images for micl-mini's image tasks, mirroring MICL's Flickr30k (captioning, several
references per image) and OK-VQA (questions that need knowledge beyond the picture): coin-mini
scenes of shapes on a grey background.

Captions name what is drawn (colours, shapes, where a lone shape sits). Knowledge questions
ask what the picture does not show: how many sides the shape has, a fruit of its colour, what a
traffic light of its colour means; every accepted answer is a reference (VQA scoring). Answers
come from balanced schedules, as in coin-mini.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from mcit.data.micl_mini.writer import MediaExample
from mcit.data.synthetic.common import schedule
from mcit.data.synthetic.scene import background_color, position_words, render_objects, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, SHAPES

SIZE = 64

# Knowledge the picture does not show (OK-VQA's "outside knowledge"), every accepted answer.
SIDES = {"triangle": ["3", "three"], "square": ["4", "four"], "diamond": ["4", "four"],
         "star": ["10", "ten"], "cross": ["12", "twelve"]}  # fmt: skip
FRUITS = {
    "red": ["apple", "strawberry", "cherry"],
    "yellow": ["banana", "lemon"],
    "orange": ["orange", "tangerine"],
    "green": ["lime", "pear"],
    "purple": ["grape", "plum"],
    "blue": ["blueberry"],
}
TRAFFIC = {"red": ["stop"], "yellow": ["slow down", "slow"], "green": ["go"]}

QUESTIONS: dict[str, str] = {
    "sides": "How many sides does a shape like this have?",
    "fruit": "Name a fruit that usually has this color.",
    "traffic": "What does a traffic light of this color tell drivers to do?",
}


PictureExample = MediaExample[Image.Image]


def _scene(rng: random.Random, specs: list[tuple[str, str]]):
    while True:  # scatter returns None when random placement finds no room: draw again
        objs = scatter(rng, specs)
        if objs is not None:
            return objs


def caption_references(objs) -> list[str]:
    """Three references for a scene of one or two objects (Flickr30k has five per image)."""
    if len(objs) == 1:
        (o,) = objs
        v, h = position_words(o.box)
        where = "in the middle" if (v, h) == ("middle", "center") else f"at the {v} {h}"
        return [
            f"a {o.name}",
            f"a {o.name} {where}",
            f"one {o.color} {o.shape} on a grey background",
        ]
    a, b = objs
    return [f"a {a.name} and a {b.name}", f"a {a.name} next to a {b.name}",
            f"two shapes, a {a.name} and a {b.name}"]  # fmt: skip


def generate_image_captions(n: int, rng: random.Random) -> list[PictureExample]:
    """Flickr30k-like captioning: one or two objects (each equally often); answer = the first
    reference, references = all three (scored by CIDEr)."""
    out = []
    for count in schedule(rng, [1, 2], n):
        shapes = rng.sample(SHAPES, count)
        colors = rng.sample(COLOR_NAMES, count)
        objs = _scene(rng, list(zip(shapes, colors, strict=True)))
        image = render_objects(SIZE, objs, background_color(rng)).image()
        refs = caption_references(objs)
        out.append(PictureExample(image, "Describe the image briefly.", refs[0], refs, "caption"))
    return out


def generate_knowledge_qa(n: int, rng: random.Random) -> list[PictureExample]:
    """OK-VQA-like questions over one shape: every template equally often, every fact (the
    shape, or the colour) equally often within a template; all accepted answers are the
    references."""
    templates = schedule(rng, list(QUESTIONS), n)
    facts = {"sides": SIDES, "fruit": FRUITS, "traffic": TRAFFIC}
    keys = {t: iter(schedule(rng, list(facts[t]), templates.count(t))) for t in QUESTIONS}
    out = []
    for template in templates:
        key = next(keys[template])
        if template == "sides":
            shape, color = key, rng.choice(COLOR_NAMES)
        else:
            shape, color = rng.choice(SHAPES), key
        objs = _scene(rng, [(shape, color)])
        image = render_objects(SIZE, objs, background_color(rng)).image()
        accepted = facts[template][key]
        out.append(
            PictureExample(image, QUESTIONS[template], accepted[0], list(accepted), template)
        )
    return out


def save_png(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG")
