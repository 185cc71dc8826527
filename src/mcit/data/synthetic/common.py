"""What the coin-mini task generators share: the record they return and small helpers.

A generator is `generate(n, rng, image_size=64, split="train") -> list[Example]`. Answers are
drawn from balanced schedules (each value equally often, then shuffled) rather than sampled
independently, so even a few dozen examples have no dominant answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from PIL import Image

from mcit.data.synthetic.scene import Obj

T = TypeVar("T")

# CoIN's instructions (LLaVA-1.5 evaluation prompts).
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
OPTION_ANSWER = "Answer with the option's letter from the given choices directly."
UNANSWERABLE_HINT = "\nWhen the provided information is insufficient, respond with 'Unanswerable'."


@dataclass
class Example:
    """One generated sample: an image, the question (no <image> tag), its answer and references.

    `template` names the question template it was drawn from, so balance can be checked per
    template (a text-only model knows the template, so the answer must vary within it).
    """

    image: Image.Image
    question: str
    answer: str
    references: list[str] = field(default_factory=list)
    template: str = ""

    def __post_init__(self) -> None:
        if not self.references:
            self.references = [self.answer]

    @property
    def turns(self) -> list[tuple[str, str]]:
        return [(self.question, self.answer)]


Generator = Callable[..., list[Example]]


def schedule(rng: random.Random, values: Sequence[T], n: int) -> list[T]:
    """`n` values with every value used equally often (up to one), in random order."""
    values = list(values)
    out = values * (n // len(values)) + rng.sample(values, n % len(values))
    rng.shuffle(out)
    return out


def annotators(
    rng: random.Random, answer: str, confusions: Sequence[str], variants: Sequence[str] = ()
) -> list[str]:
    """Ten VQA-style annotator answers for `answer`.

    Up to three annotators pick a confusable wrong answer, and some type a variant that the VQA
    normalisation maps back to the answer (another case, a number word). At least seven always
    give the answer itself, so the right answer scores 1.0 under VQA accuracy.
    """
    refs = [answer] * 10
    slots = list(range(10))
    rng.shuffle(slots)
    n_wrong = rng.choice((0, 0, 0, 1, 1, 2, 3)) if confusions else 0
    for s in slots[:n_wrong]:
        refs[s] = rng.choice(list(confusions))
    n_var = rng.choice((0, 0, 1, 2)) if variants else 0
    for s in slots[n_wrong : n_wrong + n_var]:
        refs[s] = rng.choice(list(variants))
    return refs


def retry(make: Callable[[], T | None], what: str, tries: int = 500) -> T:
    """Call `make` until it returns something (scene sampling by rejection)."""
    for _ in range(tries):
        out = make()
        if out is not None:
            return out
    raise RuntimeError(f"could not sample {what} after {tries} tries")


# --- relations between objects -----------------------------------------------------------------

MARGIN = 0.08  # centres closer than this along an axis make a relation ambiguous


def relation(a: Obj, b: Obj, rel: str) -> bool | None:
    """Whether `a` is `rel` (left/right/above/below) of `b`: True, False, or None if unclear."""
    d = {"left": b.cx - a.cx, "right": a.cx - b.cx, "above": b.cy - a.cy, "below": a.cy - b.cy}[rel]
    if abs(d) < MARGIN:
        return None
    return d > 0


def extreme(objs: list[Obj], side: str) -> Obj | None:
    """The object clearly furthest to `side` (left/right/top/bottom/largest), else None."""
    key = {
        "left": lambda o: -o.cx,
        "right": lambda o: o.cx,
        "top": lambda o: -o.cy,
        "bottom": lambda o: o.cy,
        "largest": lambda o: o.area,
        "smallest": lambda o: -o.area,
    }[side]
    ranked = sorted(objs, key=key, reverse=True)
    if len(ranked) < 2:
        return ranked[0] if ranked else None
    a, b = ranked[0], ranked[1]
    if side in ("largest", "smallest"):
        big, small = (a.area, b.area) if side == "largest" else (b.area, a.area)
        return a if big >= 1.5 * small else None
    return a if key(a) - key(b) >= MARGIN else None


def noun_phrase(target: Obj, objs: list[Obj], rng: random.Random) -> str | None:
    """A short unambiguous name for `target` among `objs` ("the triangle", "the red one"...)."""
    options = []
    if sum(o.shape == target.shape for o in objs) == 1:
        options.append(f"the {target.shape}")
    if sum(o.color == target.color for o in objs) == 1:
        options.append(f"the {target.color} one")
    if sum(o.name == target.name for o in objs) == 1:
        options.append(f"the {target.name}")
    return rng.choice(options) if options else None
