"""The generic pre-training mixture of the tiny LLaVA (docs/base.md).

The papers start from an instruction-tuned LLaVA that already has the skills the CoIN tasks need
and lacks only their formats. This mixture gives the tiny model those skills — colours, shapes,
counting, positions with coordinates, spatial relations, reading words, digits, drawings, book
covers, judging degraded photos, choosing among listed options — in phrasings and *full-sentence*
answer formats that none of the eight tasks uses ("The circle is red.", "Option (b): blue.",
"The red circle spans from (0.12, 0.30) to (0.40, 0.58)."). Learning a task is then learning its
format and distribution, as in the papers. The "referent-value" answer style words the shape
scenes' answers another way, also unlike the tasks': the referent first, its value right after it
("The circle red.", "The red circle 12 30 40 58.", "The red circle 12, the blue square 60, yes.").

Pictures come from the same renderers as the tasks, from seeds in their own namespace, and
digits only from the train split, so no test picture is ever seen in pre-training.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, field

from PIL import Image

from mcit.data.synthetic import imagenet, ocrvqa, textvqa, vizwiz
from mcit.data.synthetic.common import extreme, relation, retry
from mcit.data.synthetic.scene import Obj, background_color, position_words, render_objects, scatter
from mcit.data.synthetic.vocab import (
    AUTHOR_NAMES,
    COLOR_NAMES,
    DIGIT_CLASSES,
    DRAWINGS,
    GENRE_ICONS,
    GENRES,
    NUMBER_WORDS,
    PLURALS,
    PRODUCT_WORDS,
    SHAPES,
    SIGN_WORDS,
    TITLE_WORDS,
)

# Every user phrasing of the mixture; none of them is a task's question template.
TEMPLATES: dict[str, str] = {
    "color_of": "Tell me the color of the {shape}.",
    "shape_of": "Name the shape that is {color}.",
    "count": "Count the {plural}.",
    "count_all": "Count every shape in the picture.",
    "where": "Where is the {name}?",
    "left_of": "Is the {a} left of the {b}?",
    "higher": "Is the {a} higher than the {b}?",
    "bigger": "Which is bigger, the {a} or the {b}?",
    "furthest": "Name the object furthest to the {side}.",
    "highest": "Name the highest object.",
    "contains": "Does the picture contain {a_shape}?",
    "option_color": "Options: {options}. Which option matches the color of the {shape}?",
    "option_shape": "Options: {options}. Which option is the shape of the {color} object?",
    "describe": "Describe the image.",
    "read": "Read the text in the picture.",
    "digit": "Which number is drawn?",
    "drawing": "What has been drawn here?",
    "clear": "Is the picture clear enough to see?",
    "photo_color": "Tell me the color of the object in the photo.",
    "cover": "Describe the cover.",
    "icon": "Which icon is on the cover?",
    "story": "What kind of story does the cover suggest?",
    "author": "Name the author printed on the cover.",
}
# Every answer pattern (for the tokenizer corpus); all are full sentences.
ANSWERS: tuple[str, ...] = (
    "The {shape} is {color}.",
    "The {color} object is {a_shape}.",
    "I count {n} {plural}.",
    "I count {n} shapes in total.",
    "The {name} spans from ({x1}, {y1}) to ({x2}, {y2}).",
    "Yes, the {a} is left of the {b}.",
    "No, the {a} is right of the {b}.",
    "Yes, the {a} is higher than the {b}.",
    "No, the {a} is lower than the {b}.",
    "The {a} is bigger.",
    "The {name} is furthest to the {side}.",
    "The {name} is the highest object.",
    "Yes, I can see {a_shape}.",
    "No, I cannot see {a_shape}.",
    "Option ({letter}): {value}.",
    "The image shows {caption}.",
    "The text reads {word}.",
    "I cannot read it, {problem}.",
    "The drawn number is {number}.",
    "It is a drawing of {a_thing}.",
    "Yes, the picture is clear.",
    "No, {problem}.",
    "The object is {color}.",
    "I cannot tell, {problem}.",
    "{A_color} cover titled {title} by {author}.",
    "The cover shows {an_icon}.",
    "The {icon} suggests {a_genre} story.",
    "The author printed on the cover is {author}.",
)
# The answers of the "referent-value" style (`TinyConfig.answer_style`) where they differ: the
# word that names what is looked up comes first and the looked-up value right after it, and a
# comparison first states each compared value (positions and sizes in percent of the picture).
# A 4-layer LM trained from scratch learns the colour of a named shape when the colour directly
# follows the shape's name and not when a word stands between them (docs/base.md, "Where the
# missing skills are lost"); so an option's letter follows the value it is looked up by, with no
# bracket token between ("The circle white a."). [spec]
REFERENT_VALUE_ANSWERS: tuple[str, ...] = (
    "The {shape} {color}.",
    "The {color} {shape}.",
    "The {shape} {color} {letter}.",
    "The {color} {shape} {letter}.",
    "{Plural} {n}.",
    "{A_shape} yes.",
    "{A_shape} no.",
    "The {name} {x1} {y1} {x2} {y2}.",
    "The {a} {va}, the {b} {vb}, yes.",
    "The {a} {va}, the {b} {vb}, no.",
    "The {a} {va}, the {b} {vb}, the {a}.",
    "The {a} {va}, the {b} {vb}, ..., the {name}.",
)
ANSWER_STYLES = ("sentence", "referent-value")

# Short answers (`TinyConfig.short_answers`): a share of the skill turns ends its question with
# one of these requests and is answered "Answer: <value>." (the value the sentence states). A
# base whose skills are tied to one sentence per skill carries them poorly into a task's one-word
# format: after 50 LoRA steps on coin-mini's ocrvqa alone, the shipped base answers all 39 genre
# questions with a name or title off the cover, though its own sentence names the genre 100 % of
# the time (docs/base.md; measured, these answers did not help: not used by any recipe). Both the requests and the "Answer: " form are unlike the tasks' own. [spec]
TERSE_REQUESTS: tuple[str, ...] = (
    "Keep the reply short.",
    "Give only the answer.",
    "Be brief.",
    "Reply briefly.",
)
SHORT_FORM = "Answer: {value}."
# The value each skill's sentence states (`ANSWERS`), by skill: what a short answer says.
_SHORT_VALUE: dict[str, tuple[str, ...]] = {
    "color_of": (r"^The \w+ is (\w+)\.$",),
    "shape_of": (r"^The \w+ object is an? (\w+)\.$",),
    "option_color": (r"^Option (\(\w\)): .+\.$",),
    "option_shape": (r"^Option (\(\w\)): .+\.$",),
    "count": (r"^I count (\d+) \w+\.$",),
    "count_all": (r"^I count (\d+) shapes? in total\.$",),
    "contains": (r"^(Yes), I can see", r"^(No), I cannot see"),
    "where": (r"^The .+ spans from (.+)\.$",),
    "left_of": (r"^(Yes|No), the ",),
    "higher": (r"^(Yes|No), the ",),
    "bigger": (r"^The (.+) is bigger\.$",),
    "furthest": (r"^The (.+) is furthest to the \w+\.$",),
    "highest": (r"^The (.+) is the highest object\.$",),
    "read": (r"^The text reads (.+)\.$",),
    "photo_read": (r"^The text reads (.+)\.$", r"^I (cannot read) it, "),
    "digit": (r"^The drawn number is (.+)\.$",),
    "drawing": (r"^It is a drawing of an? (.+)\.$",),
    "clear": (r"^(Yes), the picture is clear\.$", r"^(No), "),
    "photo_color": (r"^The object is (\w+)\.$", r"^I (cannot tell), "),
    "cover": (r"^An? \w+ cover titled (\w+ by \w+)\.$",),
    "icon": (r"^The cover shows an? (.+)\.$",),
    "story": (r"^The .+ suggests an? (.+) story\.$",),
    "author": (r"^The author printed on the cover is (.+)\.$",),
}
# Skills whose referent-value answer states the compared values first: the probe scores the
# part after the last ", " (the decision), and keeps the exact match of the whole answer beside.
CHAIN_SKILLS = ("left_of", "higher", "bigger", "furthest", "highest")

# What went wrong with a degraded photo (vizwiz failure -> clause).
PROBLEMS = {
    "dark": "the picture is too dark",
    "blur": "the picture is too blurry",
    "away": "the object is out of view",
    "cut": "the text is cut off",
    "finger": "a finger covers the object",
}
ICON_NAMES = {
    "smiley": "smiley face",
    "heart": "heart",
    "moon": "moon",
    "ball": "ball",
    "sun": "sun",
    "question": "question mark",
}
SkillTurn = tuple[str, str, str]  # (skill: a TEMPLATES key, user, assistant)
# Signs twice as often as the other kinds: reading is the slowest skill to learn, and sign scenes
# carry shapes too.
KINDS = ("shapes", "shapes", "sign", "sign", "digit", "drawing", "cover", "photo")


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from a tuple of parts (stable across runs and Python versions)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big")


@dataclass
class Picture:
    """A pre-training image and the facts about it that captions and answers may state."""

    image: Image.Image
    kind: str
    objs: list[Obj] = field(default_factory=list)
    word: str | None = None  # a word on a sign or label
    digit: str | None = None
    drawing: str | None = None
    cover: tuple[str, str, str, str] | None = None  # title, author, genre, colour
    photo: tuple[str, str, str | None] | None = None  # ("color"|"read", content, failure)


def _shapes(rng: random.Random) -> list[Obj] | None:
    """One to seven shapes from small pools, so shapes and colours repeat (for counting)."""
    k = rng.randint(1, 7)
    shapes = rng.sample(SHAPES, rng.randint(1, 6))
    colors = rng.sample(COLOR_NAMES, rng.randint(1, 8))
    specs = [(rng.choice(shapes), rng.choice(colors)) for _ in range(k)]
    side = (0.16, 0.32) if k <= 3 else (0.12, 0.22) if k <= 5 else (0.11, 0.18)
    return scatter(rng, specs, side_range=side, gap=0.03)


def picture(rng: random.Random, image_size: int) -> Picture:
    """One random picture of any kind the tasks show."""
    kind = rng.choice(KINDS)
    if kind == "shapes":
        objs = retry(lambda: _shapes(rng), "pretraining scene")
        img = render_objects(image_size, objs, background_color(rng)).image()
        return Picture(img, kind, objs=objs)
    if kind == "sign":
        word = rng.choice(SIGN_WORDS)
        canvas, objs = textvqa.render(rng, word, image_size)
        return Picture(canvas.image(), kind, objs=objs, word=word)
    if kind == "digit":
        label = rng.choice(DIGIT_CLASSES)
        img = imagenet.render(rng, label, image_size, split="train").image()
        return Picture(img, kind, digit=label)
    if kind == "drawing":
        label = rng.choice(DRAWINGS)
        return Picture(
            imagenet.render(rng, label, image_size, "train").image(), kind, drawing=label
        )
    if kind == "cover":
        cover = (
            rng.choice(TITLE_WORDS),
            rng.choice(AUTHOR_NAMES),
            rng.choice(GENRES),
            rng.choice(COLOR_NAMES),
        )
        img = ocrvqa.render_cover(rng, *cover, image_size).image()
        return Picture(img, kind, cover=cover)
    what = rng.choice(("color", "read"))
    content = rng.choice(COLOR_NAMES if what == "color" else PRODUCT_WORDS)
    failure = rng.choice(vizwiz.FAILURES[what]) if rng.random() < 0.5 else None
    img = vizwiz.photo(rng, what, content, failure, image_size)
    return Picture(img, kind, photo=(what, content, failure))


# --- captions ------------------------------------------------------------------------------------


def _a(word: str) -> str:
    """`word` with its indefinite article ("a red", "an orange")."""
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"


def _place(o: Obj) -> str:
    v, h = position_words(o.box)
    if v == "middle":
        return "in the center" if h == "center" else f"on the {h}"
    return f"at the {v}" if h == "center" else f"at the {v} {h}"


def _size(o: Obj) -> str:
    side = o.box[2] - o.box[0]
    return "small" if side < 0.18 else "large" if side > 0.26 else "medium"


def _count(n: int, noun: str, plural: str) -> str:
    return f"{NUMBER_WORDS[n]} {noun if n == 1 else plural}"


def caption(p: Picture) -> str:
    """A full description of the picture (what a CLIP-style text encoder should match)."""
    parts = []
    if p.word is not None:
        parts.append(f"a sign that says {p.word}")
    if p.objs:
        listed = ", ".join(f"{_a(_size(o))} {o.name} {_place(o)}" for o in p.objs)
        parts.append(f"{_count(len(p.objs), 'shape', 'shapes')}: {listed}")
    if p.digit is not None:
        parts.append(f"a handwritten {p.digit} on paper")
    if p.drawing is not None:
        parts.append(f"a drawing of {_a(p.drawing)}")
    if p.cover is not None:
        title, author, genre, color = p.cover
        parts.append(
            f"{_a(color)} book cover titled {title} by {author} with {_a(ICON_NAMES[GENRE_ICONS[genre]])}"
        )
    if p.photo is not None:
        what, content, failure = p.photo
        if failure is None:
            thing = f"{_a(content)} object" if what == "color" else f"a label that says {content}"
            parts.append(f"a clear photo of {thing}")
        else:
            thing = "an object" if what == "color" else "a label"
            parts.append(f"a bad photo of {thing}, {PROBLEMS[failure]}")
    return ", ".join(parts)


def caption_views(p: Picture, rng: random.Random) -> list[str]:
    """Short captions that each state a few facts of the picture, and the full caption.

    A contrastive step matches every image against the other captions of its batch; a short
    caption that names the word on a sign, or the colours and shapes, makes that one fact decide
    the match, so the vision tower learns it sooner than from one long caption where it is a
    detail. The text tower's cost also grows with caption length. [spec]
    """
    views = [caption(p)]
    if p.word is not None:
        views += [f"a sign that says {p.word}"] * 3
    if p.objs:
        named = [f"{_a(o.color)} {o.shape}" for o in p.objs]
        views.append(", ".join(named))
        views.append(_count(len(p.objs), "shape", "shapes"))
        o = rng.choice(p.objs)
        views.append(f"{_a(o.color)} {o.shape} {_place(o)}")
    if p.digit is not None:
        views += [f"a handwritten {p.digit}"] * 2
    if p.drawing is not None:
        views += [f"a drawing of {_a(p.drawing)}"] * 2
    if p.cover is not None:
        title, author, genre, color = p.cover
        views += [
            f"a book titled {title}",
            f"a book by {author}",
            f"{_a(color)} book cover with {_a(ICON_NAMES[GENRE_ICONS[genre]])}",
        ]
    if p.photo is not None:
        what, content, failure = p.photo
        if failure is None:
            views.append(
                f"{_a(content)} object" if what == "color" else f"a label that says {content}"
            )
        else:
            views.append(f"a bad photo, {PROBLEMS[failure]}")
    return views


# --- instructions --------------------------------------------------------------------------------


def _box(o: Obj) -> str:
    x1, y1, x2, y2 = (f"{min(max(v, 0.0), 1.0):.2f}" for v in o.box)
    return f"from ({x1}, {y1}) to ({x2}, {y2})"


def _options(rng: random.Random, right: str, pool: tuple[str, ...]) -> tuple[str, str]:
    """A lettered option list "(a) x (b) y" containing `right`, and the letter of `right`."""
    others = rng.sample([v for v in pool if v != right], rng.randint(1, 4))
    idx = rng.randrange(len(others) + 1)
    values = others[:idx] + [right] + others[idx:]
    letters = "abcde"
    listed = " ".join(f"({letters[i]}) {v}" for i, v in enumerate(values))
    return listed, letters[idx]


def _percent(v: float) -> str:
    return str(round(100 * min(max(v, 0.0), 1.0)))


def _values(objs: list[Obj], value) -> str:
    """ "the red circle 12, the blue square 60": each object named, then its value."""
    return ", ".join(f"the {o.name} {_percent(value(o))}" for o in objs)


def _side(o: Obj) -> float:
    return math.sqrt(o.area)


def _shape_turns(objs: list[Obj], rng: random.Random, style: str) -> list[SkillTurn]:
    """The shape-scene turns, answered in `style` ("sentence" or "referent-value"). Both styles
    draw the same random numbers, so they ask the same questions about the same pictures."""
    t = TEMPLATES
    rv = style == "referent-value"
    out: list[SkillTurn] = []
    unique_shape = [o for o in objs if sum(x.shape == o.shape for x in objs) == 1]
    unique_color = [o for o in objs if sum(x.color == o.color for x in objs) == 1]
    unique_name = [o for o in objs if sum(x.name == o.name for x in objs) == 1]
    if unique_shape:
        o = rng.choice(unique_shape)
        ans = f"The {o.shape} {o.color}." if rv else f"The {o.shape} is {o.color}."
        out.append(("color_of", t["color_of"].format(shape=o.shape), ans))
        listed, letter = _options(rng, o.color, COLOR_NAMES)
        ans = f"The {o.shape} {o.color} {letter}." if rv else f"Option ({letter}): {o.color}."
        out.append(("option_color", t["option_color"].format(options=listed, shape=o.shape), ans))
    if unique_color:
        o = rng.choice(unique_color)
        ans = f"The {o.color} {o.shape}." if rv else f"The {o.color} object is {_a(o.shape)}."
        out.append(("shape_of", t["shape_of"].format(color=o.color), ans))
        listed, letter = _options(rng, o.shape, SHAPES)
        ans = f"The {o.color} {o.shape} {letter}." if rv else f"Option ({letter}): {o.shape}."
        out.append(("option_shape", t["option_shape"].format(options=listed, color=o.color), ans))
    # Ask about a shape that is there more often than not (counting to 0 all the time teaches
    # little).
    s = rng.choice([o.shape for o in objs]) if rng.random() < 0.6 else rng.choice(SHAPES)
    n = sum(o.shape == s for o in objs)
    ans = f"{PLURALS[s].capitalize()} {n}." if rv else f"I count {n} {s if n == 1 else PLURALS[s]}."
    out.append(("count", t["count"].format(plural=PLURALS[s]), ans))
    n = len(objs)
    out.append(
        ("count_all", t["count_all"], f"I count {n} {'shape' if n == 1 else 'shapes'} in total.")
    )
    present = s in {o.shape for o in objs}
    if rv:
        yes, no = f"{_a(s).capitalize()} yes.", f"{_a(s).capitalize()} no."
    else:
        yes, no = f"Yes, I can see {_a(s)}.", f"No, I cannot see {_a(s)}."
    out.append(("contains", t["contains"].format(a_shape=_a(s)), yes if present else no))
    if unique_name:
        o = rng.choice(unique_name)
        if rv:
            ans = f"The {o.name} {' '.join(_percent(v) for v in o.box)}."
        else:
            ans = f"The {o.name} spans {_box(o)}."
        out.append(("where", t["where"].format(name=o.name), ans))
    if len(unique_name) >= 2:
        a, b = rng.sample(unique_name, 2)
        r = relation(a, b, "left")
        if r is not None:
            if rv:
                ans = f"{_values([a, b], lambda o: o.cx).capitalize()}, {'yes' if r else 'no'}."
            elif r:
                ans = f"Yes, the {a.name} is left of the {b.name}."
            else:
                ans = f"No, the {a.name} is right of the {b.name}."
            out.append(("left_of", t["left_of"].format(a=a.name, b=b.name), ans))
        r = relation(a, b, "above")
        if r is not None:
            if rv:
                ans = f"{_values([a, b], lambda o: o.cy).capitalize()}, {'yes' if r else 'no'}."
            elif r:
                ans = f"Yes, the {a.name} is higher than the {b.name}."
            else:
                ans = f"No, the {a.name} is lower than the {b.name}."
            out.append(("higher", t["higher"].format(a=a.name, b=b.name), ans))
        big = extreme([a, b], "largest")
        if big is not None:
            if rv:
                ans = f"{_values([a, b], _side).capitalize()}, the {big.name}."
            else:
                ans = f"The {big.name} is bigger."
            out.append(("bigger", t["bigger"].format(a=a.name, b=b.name), ans))
    if len(objs) >= 2 and len(unique_name) == len(objs):
        side = rng.choice(("left", "right"))
        o = extreme(objs, side)
        if o is not None:
            q = t["furthest"].format(side=side)
            if rv:
                ans = f"{_values(objs, lambda x: x.cx).capitalize()}, the {o.name}."
            else:
                ans = f"The {o.name} is furthest to the {side}."
            out.append(("furthest", q, ans))
        o = extreme(objs, "top")
        if o is not None:
            if rv:
                ans = f"{_values(objs, lambda x: x.cy).capitalize()}, the {o.name}."
            else:
                ans = f"The {o.name} is the highest object."
            out.append(("highest", t["highest"], ans))
    return out


def decision(skill: str, answer: str, style: str) -> str:
    """The part of an answer that the probe scores: the whole answer, except the decision after
    the stated values of a referent-value comparison ("..., the blue square 60, yes." -> "yes")."""
    if style == "referent-value" and skill in CHAIN_SKILLS:
        return answer.rsplit(", ", 1)[-1].rstrip(".").strip()
    return answer


def turns_for(p: Picture, rng: random.Random, style: str = "sentence") -> list[SkillTurn]:
    """Every (skill, user, assistant) turn that can be asked about this picture, its answers in
    `style` (one of ANSWER_STYLES; only the shape scenes' answers differ between them)."""
    if style not in ANSWER_STYLES:
        raise ValueError(f"answer style '{style}' is not one of {list(ANSWER_STYLES)}")
    t = TEMPLATES
    out = _shape_turns(p.objs, rng, style) if p.objs else []
    if p.word is not None:
        out.append(("read", t["read"], f"The text reads {p.word}."))
    if p.digit is not None:
        out.append(("digit", t["digit"], f"The drawn number is {p.digit}."))
    if p.drawing is not None:
        out.append(("drawing", t["drawing"], f"It is a drawing of {_a(p.drawing)}."))
    if p.cover is not None:
        title, author, genre, color = p.cover
        icon = ICON_NAMES[GENRE_ICONS[genre]]
        out.append(
            ("cover", t["cover"], f"{_a(color).capitalize()} cover titled {title} by {author}.")
        )
        out.append(("icon", t["icon"], f"The cover shows {_a(icon)}."))
        out.append(("story", t["story"], f"The {icon} suggests {_a(genre.lower())} story."))
        out.append(("author", t["author"], f"The author printed on the cover is {author}."))
    if p.photo is not None:
        what, content, failure = p.photo
        clear = "Yes, the picture is clear." if failure is None else f"No, {PROBLEMS[failure]}."
        out.append(("clear", t["clear"], clear))
        if what == "read":
            ok = f"The text reads {content}."
            bad = f"I cannot read it, {PROBLEMS[failure]}." if failure else ""
            out.append(("photo_read", t["read"], ok if failure is None else bad))
        else:
            ok = f"The object is {content}."
            bad = f"I cannot tell, {PROBLEMS[failure]}." if failure else ""
            out.append(("photo_color", t["photo_color"], ok if failure is None else bad))
    out.append(("describe", t["describe"], f"The image shows {caption(p)}."))
    return out


def pretrain_captions(n: int, seed: int = 0, image_size: int = 64) -> list[tuple[Image.Image, str]]:
    """`n` (image, caption) pairs for the contrastive pre-training of the tiny CLIP."""
    rng = random.Random(derive_seed("mcit-pretrain", "captions", seed))
    out = []
    for _ in range(n):
        p = picture(rng, image_size)
        out.append((p.image, caption(p)))
    return out


# How much more often than the rest each skill is asked in the mixture. Reading, digits and the
# other fine-grained visual skills are what a tiny vision tower learns last, and counting and
# grounding need many examples; the description is long and asked now and then. [spec]
SKILL_WEIGHTS: dict[str, float] = {
    "read": 6.0,
    "photo_read": 2.0,
    "digit": 3.0,
    "drawing": 2.0,
    "cover": 2.0,
    "author": 2.0,
    "icon": 1.5,
    "where": 3.0,
    "count": 2.0,
    "count_all": 1.5,
}


def _weighted_pick(rng: random.Random, turns: list[SkillTurn], k: int) -> list[SkillTurn]:
    """`k` distinct turns drawn with probability proportional to their skill's weight."""
    pool, picked = list(turns), []
    for _ in range(min(k, len(pool))):
        weights = [SKILL_WEIGHTS.get(skill, 1.0) for skill, _, _ in pool]
        picked.append(pool.pop(rng.choices(range(len(pool)), weights)[0]))
    return picked


def pretrain_caption_views(
    n: int, seed: int = 0, image_size: int = 64
) -> list[tuple[Image.Image, list[str]]]:
    """`n` (image, caption views) pairs: the tiny CLIP draws one view per image and step."""
    rng = random.Random(derive_seed("mcit-pretrain", "captions", seed))
    out = []
    for _ in range(n):
        p = picture(rng, image_size)
        out.append((p.image, caption_views(p, rng)))
    return out


def short_answer(skill: str, sentence: str) -> str | None:
    """ "Answer: <value>." for a sentence-style answer of `skill` (None for the description)."""
    for pattern in _SHORT_VALUE.get(skill, ()):
        found = re.match(pattern, sentence)
        if found:
            value = found.group(1)
            return SHORT_FORM.format(value=value.lower() if value in ("Yes", "No") else value)
    if skill in _SHORT_VALUE:
        raise ValueError(f"no short form of the {skill} answer {sentence!r}")
    return None


def pretrain_instructions(
    n: int,
    seed: int = 0,
    image_size: int = 64,
    style: str = "sentence",
    short_answers: float = 0.0,
) -> list[tuple[Image.Image, list[tuple[str, str]]]]:
    """`n` (image, turns) conversations of one to three turns each, answered in `style`; a
    `short_answers` share of the skill turns asks for a short answer instead (`TERSE_REQUESTS`,
    sentence style only). Its draws come from their own generator, so the conversations are
    the same whatever the share, but for the turns it shortens."""
    if short_answers and style != "sentence":
        raise ValueError(f"short answers are written for the sentence style, not '{style}'")
    rng = random.Random(derive_seed("mcit-pretrain", "instructions", seed))
    short_rng = random.Random(derive_seed("mcit-pretrain", "short-answers", seed))
    out = []
    for _ in range(n):
        p = picture(rng, image_size)
        candidates = turns_for(p, rng, style)
        # The description is long; ask for it only now and then, the skills more often.
        if rng.random() < 0.8:
            candidates = [turn for turn in candidates if turn[0] != "describe"]
        turns = _weighted_pick(rng, candidates, rng.randint(1, 3))
        pairs = []
        for skill, user, answer in turns:
            short = short_answer(skill, answer) if short_answers else None
            if short is not None and short_rng.random() < short_answers:
                user, answer = f"{user}\n{short_rng.choice(TERSE_REQUESTS)}", short
            pairs.append((user, answer))
        out.append((p.image, pairs))
    return out


def shape_lookups(
    n: int, seed: int = 0, image_size: int = 64
) -> list[tuple[Image.Image, list[tuple[str, str]]]]:
    """`n` (image, turns) conversations about shape scenes only, one to three turns each, every
    answer in the referent-value style ("The star purple.": the value right after the words that
    name what is looked up). The base's first LLaVA phase (`TinyConfig.lookup_steps`)."""
    rng = random.Random(derive_seed("mcit-pretrain", "lookups", seed))
    out = []
    for _ in range(n):
        objs = retry(lambda: _shapes(rng), "pretraining scene")
        image = render_objects(image_size, objs, background_color(rng)).image()
        turns = _weighted_pick(rng, _shape_turns(objs, rng, "referent-value"), rng.randint(1, 3))
        out.append((image, [(user, answer) for _, user, answer in turns]))
    return out


def skill_probe(
    per_skill: int, seed: int = 0, image_size: int = 64, style: str = "sentence"
) -> list[tuple[str, Image.Image, str, str]]:
    """`per_skill` single-turn (skill, image, user, answer) questions for every skill of the
    mixture: what `pretrain_report.json` measures the base on, skill by skill."""
    rng = random.Random(derive_seed("mcit-pretrain", "probe", seed))
    wanted = {skill: per_skill for skill in [*TEMPLATES, "photo_read"] if skill != "option"}
    out = []
    while any(wanted.values()):
        p = picture(rng, image_size)
        for skill, user, answer in turns_for(p, rng, style):
            if wanted.get(skill, 0) > 0:
                wanted[skill] -= 1
                out.append((skill, p.image, user, answer))
                break
    return out
