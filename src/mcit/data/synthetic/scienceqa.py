"""ScienceQA-style multiple choice about a scene of shapes (metric: option).

The LLaVA/CoIN prompt: the question, the options as lines "A. ...", then "Answer with the
option's letter from the given choices directly."; the answer is the letter. Two to five options;
given the number of options the right letter is uniform, and the distractors come from the same
vocabulary as the answer, so the text alone tells nothing.
"""

from __future__ import annotations

import random

from mcit.data.synthetic.common import OPTION_ANSWER, Example, extreme, retry, schedule
from mcit.data.synthetic.scene import Obj, background_color, render_objects, scatter
from mcit.data.synthetic.vocab import COLOR_NAMES, LETTERS, SHAPES

TEMPLATES: dict[str, str] = {
    "color": "Which color can be found in the picture?",
    "shape": "Which shape can be found in the picture?",
    "largest": "Which object is the largest?",
    "left": "Which object is farthest to the left?",
    "top": "Which object is nearest to the top of the picture?",
}
# More four- and five-option questions than two-option ones, to spread the answer letters.
OPTION_COUNTS = (2, 3, 3, 4, 4, 4, 5, 5, 5)


def _scene_with(
    rng: random.Random, k: int, colors: list[str], shapes: list[str], distinct_names: bool
) -> list[Obj] | None:
    """`k` objects whose colours cycle through `colors` and shapes are drawn from `shapes`."""
    specs = [(rng.choice(shapes), colors[i % len(colors)]) for i in range(k)]
    if distinct_names and len(set(specs)) < k:
        return None
    side = (0.16, 0.3) if k <= 3 else (0.13, 0.24)
    return scatter(rng, specs, side_range=side)


def _one(rng: random.Random, kind: str, n: int) -> tuple[list[Obj], list[str], int]:
    """Objects, option texts and the index of the right option."""
    if kind == "color":
        k = rng.randint(1, min(4, 9 - n))
        present = rng.sample(COLOR_NAMES, k)
        objs = retry(lambda: _scene_with(rng, k, present, list(SHAPES), False), "scene")
        absent = [c for c in COLOR_NAMES if c not in present]
        right, wrong = rng.choice(present), rng.sample(absent, n - 1)
    elif kind == "shape":
        m = rng.randint(1, min(3, 7 - n))  # distinct shapes in the scene
        shapes = rng.sample(SHAPES, m)
        k = rng.randint(m, 3)
        colors = rng.sample(COLOR_NAMES, k)
        objs = retry(lambda: _scene_with(rng, k, colors, shapes, False), "scene")
        present = sorted({o.shape for o in objs})
        absent = [s for s in SHAPES if s not in present]
        right, wrong = rng.choice(present), rng.sample(absent, n - 1)
    else:

        def make() -> list[Obj] | None:  # `kind` is also the side: largest, left or top
            objs = _scene_with(rng, n, rng.sample(COLOR_NAMES, n), list(SHAPES), True)
            return objs if objs is not None and extreme(objs, kind) is not None else None

        objs = retry(make, f"{kind} scene")
        target = extreme(objs, kind)
        assert target is not None
        right, wrong = target.name, [o.name for o in objs if o is not target]
        rng.shuffle(wrong)
    idx = rng.randrange(n)
    options = wrong[:idx] + [right] + wrong[idx:]
    return objs, options, idx


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    out = []
    kinds = schedule(rng, list(TEMPLATES), n)
    counts = schedule(rng, OPTION_COUNTS, n)
    for kind, n_opt in zip(kinds, counts, strict=True):
        objs, options, idx = _one(rng, kind, n_opt)
        image = render_objects(image_size, objs, background_color(rng)).image()
        lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        question = f"{TEMPLATES[kind]}\n{lines}\n{OPTION_ANSWER}"
        out.append(Example(image, question, LETTERS[idx], template=TEMPLATES[kind]))
    return out
