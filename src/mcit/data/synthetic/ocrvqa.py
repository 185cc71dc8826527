"""OCR-VQA-style questions about book covers (metric: exact).

A cover shows a title word at the top, a genre icon in the middle and the author's surname at
the bottom. Questions ask for the title, the author, the genre (given away by the icon) or
whether the book is of a genre ("Yes"/"No", as OCR-VQA answers). Answers keep the cover's case.
"""

from __future__ import annotations

import random

from mcit.data.synthetic.common import SHORT_ANSWER, Example, schedule
from mcit.data.synthetic.scene import Canvas, background_color, ink_for
from mcit.data.synthetic.vocab import AUTHOR_NAMES, COLORS, GENRE_ICONS, GENRES, TITLE_WORDS

TEMPLATES: dict[str, str] = {
    "What is the title of this book?": "title",
    "Who wrote this book?": "author",
    "Who is the author of this book?": "author",
    "What is the genre of this book?": "genre",
    "What type of book is this?": "genre",
    "Is this a {genre} book?": "is_genre",
}


def render_cover(
    rng: random.Random, title: str, author: str, genre: str, color: str, image_size: int
) -> Canvas:
    """A book cover photographed head-on, a little background showing around it."""
    c = Canvas(image_size, background_color(rng))
    x1, y1 = rng.uniform(0.0, 0.06), rng.uniform(0.0, 0.04)
    x2, y2 = rng.uniform(0.94, 1.0), rng.uniform(0.96, 1.0)
    rgb = COLORS[color]
    ink = ink_for(rgb)
    c.rect((x1, y1, x2, y2), rgb)
    c.rect((x1, y1, x1 + 0.05, y2), tuple(int(v * 0.7) for v in rgb))  # the spine's shadow
    cx = (x1 + 0.05 + x2) / 2
    room = x2 - x1 - 0.1  # the title and the author must fit across the cover

    def fit(word: str, height: float) -> float:
        return min(height, height * room / c.text_width(word, height))

    c.text(title, (cx, y1 + rng.uniform(0.14, 0.18)), fit(title, rng.uniform(0.2, 0.22)), ink)
    s = rng.uniform(0.32, 0.38)
    cy = (y1 + y2) / 2 + rng.uniform(-0.02, 0.04)
    c.icon(GENRE_ICONS[genre], (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2))
    c.text(author, (cx, y2 - rng.uniform(0.12, 0.14)), fit(author, rng.uniform(0.17, 0.19)), ink)
    return c


def generate(
    n: int, rng: random.Random, image_size: int = 64, split: str = "train"
) -> list[Example]:
    templates = schedule(rng, list(TEMPLATES), n)
    titles, authors = schedule(rng, TITLE_WORDS, n), schedule(rng, AUTHOR_NAMES, n)
    genres = schedule(rng, GENRES, n)
    yes = iter(schedule(rng, (True, False), sum(TEMPLATES[t] == "is_genre" for t in templates)))
    out = []
    for i, template in enumerate(templates):
        genre = genres[i]
        canvas = render_cover(
            rng, titles[i], authors[i], genre, rng.choice(list(COLORS)), image_size
        )
        kind = TEMPLATES[template]
        if kind == "is_genre":
            is_it = next(yes)
            asked = genre if is_it else rng.choice([g for g in GENRES if g != genre])
            question, answer = template.format(genre=asked.lower()), "Yes" if is_it else "No"
        else:
            question = template
            answer = {"title": titles[i], "author": authors[i], "genre": genre}[kind]
        out.append(Example(canvas.image(), question + SHORT_ANSWER, answer, template=template))
    return out
