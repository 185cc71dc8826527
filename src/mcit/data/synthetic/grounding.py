"""RefCOCO-style referring expression grounding (metric: iou).

The answer is the tight box `[x1, y1, x2, y2]` of the referred object, normalised to [0, 1],
two decimals. Scenes repeat shapes and colours on purpose, so expressions often need a location
("the circle on the left") or a size ("the big square") to be unambiguous; every expression is
checked to match exactly one object.
"""

from __future__ import annotations

import random

from mcit.data.synthetic.common import Example, extreme, retry
from mcit.data.synthetic.scene import Obj, background_color, render_objects, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, SHAPES

TEMPLATE = (
    "Please provide the bounding box coordinate of the region this sentence describes: {expr}."
)
TEMPLATES: tuple[str, ...] = (TEMPLATE,)
SIDES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
EXTREMES = {
    "left": "the leftmost shape",
    "right": "the rightmost shape",
    "top": "the topmost shape",
    "bottom": "the lowest shape",
}


def format_box(box: tuple[float, float, float, float]) -> str:
    return "[" + ", ".join(f"{min(max(v, 0.0), 1.0):.2f}" for v in box) + "]"


def expressions(target: Obj, objs: list[Obj]) -> dict[str, list[str]]:
    """Unambiguous expressions for `target`, grouped by kind (attribute, location, size)."""
    out: dict[str, list[str]] = {"attribute": [], "location": [], "size": []}
    same_shape = [o for o in objs if o.shape == target.shape]
    same_name = [o for o in objs if o.name == target.name]
    same_color = [o for o in objs if o.color == target.color]
    if len(same_shape) == 1:
        out["attribute"].append(f"the {target.shape}")
    if len(same_name) == 1 and len(same_shape) > 1:
        out["attribute"].append(f"the {target.name}")
    if len(same_color) == 1:
        out["attribute"].append(f"the {target.color} shape")
    for group, noun in ((same_shape, target.shape), (same_name, target.name)):
        if len(group) < 2:
            continue
        for side, words in SIDES.items():
            if extreme(group, side) is target:
                out["location"].append(f"the {noun} {words}")
        if extreme(group, "largest") is target:
            out["size"].append(f"the big {noun}")
        if extreme(group, "smallest") is target:
            out["size"].append(f"the small {noun}")
    for side in SIDES:
        if len(objs) > 2 and extreme(objs, side) is target:
            out["location"].append(EXTREMES[side])
    return {k: sorted(set(v)) for k, v in out.items() if v}


def _scene(rng: random.Random) -> list[Obj] | None:
    k = rng.randint(2, 5)
    shapes = rng.sample(SHAPES, rng.randint(1, 3))
    colors = rng.sample(COLOR_NAMES, rng.randint(1, 3))
    specs = [(rng.choice(shapes), rng.choice(colors)) for _ in range(k)]
    side = (0.16, 0.32) if k <= 3 else (0.14, 0.24)
    return scatter(rng, specs, side_range=side)


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    out = []
    for _ in range(n):

        def make() -> tuple[list[Obj], Obj, str] | None:
            objs = _scene(rng)
            if objs is None:
                return None
            target = rng.choice(objs)
            kinds = expressions(target, objs)
            if not kinds:
                return None
            return objs, target, rng.choice(kinds[rng.choice(sorted(kinds))])

        objs, target, expr = retry(make, "grounding scene")
        image = render_objects(image_size, objs, background_color(rng)).image()
        question = TEMPLATE.format(expr=expr)
        out.append(Example(image, question, format_box(target.box), template=TEMPLATE))
    return out
