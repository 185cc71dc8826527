"""GQA-style compositional questions about spatial relations between shapes (metric: exact).

Every question involves a relation between two objects ("the shape to the left of the
triangle", "Is the red one above the star?", "Is the star above or below the circle?") or a
comparison ("Are the circle and the square the same color?"). References are unambiguous and
relations clear (centres at least `MARGIN` apart). Answers are single lower-case words: a colour,
a shape, yes/no, left/right or above/below.
"""

from __future__ import annotations

import random

from mcit.data.synthetic.common import (
    SHORT_ANSWER,
    Example,
    noun_phrase,
    relation,
    retry,
    schedule,
)
from mcit.data.synthetic.scene import Obj, background_color, render_objects, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, SHAPES

TEMPLATES: dict[str, str] = {
    "color_rel": "What color is the shape {rel} {ref}?",
    "shape_rel": "Which shape is {rel} {ref}?",
    "verify_rel": "Is {a} {rel} {b}?",
    "same_color": "Are {a} and {b} the same color?",
    "choose_h": "Is {a} to the left or to the right of {b}?",
    "choose_v": "Is {a} above or below {b}?",
}
RELS: dict[str, str] = {
    "to the left of": "left",
    "to the right of": "right",
    "above": "above",
    "below": "below",
}


def _scene(rng: random.Random) -> list[Obj] | None:
    """Three or four shapes; colours sometimes repeat so "same color" can be true."""
    k = rng.randint(3, 4)
    palette = rng.sample(COLOR_NAMES, rng.randint(k - 1, k))
    specs = [(rng.choice(SHAPES), rng.choice(palette)) for _ in range(k)]
    return scatter(rng, specs, side_range=(0.16, 0.26))


def _candidates(kind: str, objs: list[Obj], rng: random.Random) -> list[tuple[str, str]]:
    """Every valid (question, answer) of template `kind` in this scene."""
    out = []
    for anchor in objs:
        ref = noun_phrase(anchor, objs, rng)
        others = [o for o in objs if o is not anchor]
        if kind == "same_color":
            for o in others:
                if (
                    sum(x.shape == anchor.shape for x in objs) == 1
                    and sum(x.shape == o.shape for x in objs) == 1
                ):
                    q = TEMPLATES[kind].format(a=f"the {anchor.shape}", b=f"the {o.shape}")
                    out.append((q, "yes" if anchor.color == o.color else "no"))
            continue
        if ref is None:
            continue
        if kind in ("choose_h", "choose_v"):
            key, other = ("left", "right") if kind == "choose_h" else ("above", "below")
            for o in others:
                r, name = relation(o, anchor, key), noun_phrase(o, objs, rng)
                if r is not None and name is not None:
                    out.append((TEMPLATES[kind].format(a=name, b=ref), key if r else other))
            continue
        for rel, key in RELS.items():
            if kind == "verify_rel":
                for o in others:
                    r, name = relation(o, anchor, key), noun_phrase(o, objs, rng)
                    if r is not None and name is not None:
                        q = TEMPLATES[kind].format(a=name, rel=rel, b=ref)
                        out.append((q, "yes" if r else "no"))
                continue
            rs = [relation(o, anchor, key) for o in others]
            if None in rs or sum(bool(r) for r in rs) != 1:
                continue
            target = others[rs.index(True)]
            answer = target.color if kind == "color_rel" else target.shape
            out.append((TEMPLATES[kind].format(rel=rel, ref=ref), answer))
    return out


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    kinds = schedule(rng, list(TEMPLATES), n)
    # A balanced answer schedule per template (colours, shapes, yes/no).
    values = {
        "color_rel": COLOR_NAMES,
        "shape_rel": SHAPES,
        "verify_rel": ("yes", "no"),
        "same_color": ("yes", "no"),
        "choose_h": ("left", "right"),
        "choose_v": ("above", "below"),
    }
    answers = {k: iter(schedule(rng, v, kinds.count(k))) for k, v in values.items()}
    out = []
    for kind in kinds:
        want = next(answers[kind])

        def make(kind: str = kind, want: str = want) -> tuple[list[Obj], str] | None:
            objs = _scene(rng)
            if objs is None:
                return None
            cands = [q for q, a in _candidates(kind, objs, rng) if a == want]
            return (objs, rng.choice(cands)) if cands else None

        objs, question = retry(make, f"gqa {kind} scene", tries=2000)
        image = render_objects(image_size, objs, background_color(rng)).image()
        out.append(Example(image, question + SHORT_ANSWER, want, template=TEMPLATES[kind]))
    return out
