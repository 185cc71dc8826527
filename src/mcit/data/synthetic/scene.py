"""A small, seeded scene renderer: shapes, words, handwritten digits, drawings and degradations.

Everything is drawn on a canvas `SUPERSAMPLE` times larger than the output and then shrunk, so
edges are anti-aliased and a 5-letter word stays legible at 64 px. Coordinates are normalised to
[0, 1] (x right, y down) everywhere outside this module; a box is `(x1, y1, x2, y2)` and, for a
drawn object, is the tight box of what is drawn, which is what the grounding task answers.

Randomness always comes from the caller's `random.Random` (and a numpy generator derived from it
for pixel noise), so the same seed gives byte-identical images.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mcit.data.synthetic.vocab import COLORS

SUPERSAMPLE = 4
Box = tuple[float, float, float, float]
RGB = tuple[int, int, int]

SKIN: RGB = (214, 166, 132)  # the colour of the finger that covers the lens in a VizWiz photo
BROWN: RGB = (120, 72, 30)  # sign posts, tree trunks, doors


@dataclass(frozen=True)
class Obj:
    """A geometric shape in a scene."""

    shape: str
    color: str
    box: Box

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def background_color(rng: random.Random) -> RGB:
    """A neutral grey with a slight tint: distinct from all eight object colours."""
    g = rng.randint(112, 150)
    return (g + rng.randint(-6, 6), g + rng.randint(-6, 6), g + rng.randint(-6, 6))


def luminance(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def ink_for(rgb: RGB) -> RGB:
    """Black or white, whichever reads better on `rgb`."""
    return (20, 20, 20) if luminance(rgb) > 140 else (245, 245, 245)


def np_rng(rng: random.Random) -> np.random.Generator:
    """A numpy generator seeded from `rng`, for pixel noise."""
    return np.random.default_rng(rng.getrandbits(64))


# --- shape geometry (polygons in the unit box; every one touches all four sides) --------------


def _star_points() -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        r = 1.0 if i % 2 == 0 else 0.45
        a = -math.pi / 2 + i * math.pi / 5
        pts.append((r * math.cos(a), r * math.sin(a)))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [
        ((x - min(xs)) / (max(xs) - min(xs)), (y - min(ys)) / (max(ys) - min(ys))) for x, y in pts
    ]


_T = 0.34  # arm thickness of the cross
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(0, 0), (1, 0), (1, 1), (0, 1)],
    "triangle": [(0.5, 0), (1, 1), (0, 1)],
    "diamond": [(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)],
    "cross": [
        (0.5 - _T / 2, 0),
        (0.5 + _T / 2, 0),
        (0.5 + _T / 2, 0.5 - _T / 2),
        (1, 0.5 - _T / 2),
        (1, 0.5 + _T / 2),
        (0.5 + _T / 2, 0.5 + _T / 2),
        (0.5 + _T / 2, 1),
        (0.5 - _T / 2, 1),
        (0.5 - _T / 2, 0.5 + _T / 2),
        (0, 0.5 + _T / 2),
        (0, 0.5 - _T / 2),
        (0.5 - _T / 2, 0.5 - _T / 2),
    ],
    "star": _star_points(),
}


@cache
def font(size_px: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at a pixel size (no download, no system fonts)."""
    return ImageFont.load_default(size=max(size_px, 4))  # type: ignore[return-value]


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships with scikit-learn; imported lazily

    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(int)


def digit_indices(label: int, split: str) -> list[int]:
    """Indices of scikit-learn's handwritten `label` digits for a split.

    Every fifth image is held out for the test split, so test digits are never seen in training
    (nor in the pre-training mixture, which uses the train split only).
    """
    _, targets = _digits()
    test = split == "test"
    return [i for i, t in enumerate(targets) if t == label and (i % 5 == 0) == test]


class Canvas:
    """An RGB canvas drawn at `SUPERSAMPLE`x resolution; `image()` returns it at `size` px."""

    def __init__(self, size: int, background: RGB):
        self.size = size
        self.px = size * SUPERSAMPLE
        self.img = Image.new("RGB", (self.px, self.px), background)
        self.draw = ImageDraw.Draw(self.img)

    def _xy(self, x: float, y: float) -> tuple[float, float]:
        return (x * self.px, y * self.px)

    def _box(self, box: Box) -> tuple[float, float, float, float]:
        return (box[0] * self.px, box[1] * self.px, box[2] * self.px, box[3] * self.px)

    def _poly(self, box: Box, pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        x1, y1, x2, y2 = box
        return [self._xy(x1 + px * (x2 - x1), y1 + py * (y2 - y1)) for px, py in pts]

    # primitives ---------------------------------------------------------------------------

    def shape(self, shape: str, rgb: RGB, box: Box) -> None:
        if shape == "circle":
            self.draw.ellipse(self._box(box), fill=rgb)
        else:
            self.draw.polygon(self._poly(box, _POLYGONS[shape]), fill=rgb)

    def obj(self, o: Obj) -> None:
        self.shape(o.shape, COLORS[o.color], o.box)

    def rect(self, box: Box, fill: RGB, outline: RGB | None = None, width: float = 0.0) -> None:
        self.draw.rectangle(
            self._box(box), fill=fill, outline=outline, width=max(1, round(width * self.px))
        )

    def ellipse(
        self, box: Box, fill: RGB | None, outline: RGB | None = None, width: float = 0.0
    ) -> None:
        self.draw.ellipse(
            self._box(box), fill=fill, outline=outline, width=max(1, round(width * self.px))
        )

    def line(self, pts: list[tuple[float, float]], fill: RGB, width: float) -> None:
        self.draw.line([self._xy(*p) for p in pts], fill=fill, width=max(1, round(width * self.px)))

    def polygon(self, box: Box, pts: list[tuple[float, float]], fill: RGB) -> None:
        self.draw.polygon(self._poly(box, pts), fill=fill)

    def text_width(self, word: str, height: float) -> float:
        """Width (normalised) of `word` at font size `height` (normalised)."""
        return font(round(height * self.px)).getlength(word) / self.px

    def text(self, word: str, center: tuple[float, float], height: float, fill: RGB) -> Box:
        """Draw `word` centred at `center` with font size `height`; return its tight box."""
        f = font(round(height * self.px))
        xy = self._xy(*center)
        self.draw.text(xy, word, font=f, fill=fill, anchor="mm")
        b = self.draw.textbbox(xy, word, font=f, anchor="mm")
        return (b[0] / self.px, b[1] / self.px, b[2] / self.px, b[3] / self.px)

    # composite things -----------------------------------------------------------------------

    def sign(self, word: str, box: Box, board: RGB, ink: RGB, post: bool = True) -> Box:
        """A sign board with a word on it (and a post below); returns the word's box."""
        x1, y1, x2, y2 = box
        if post:
            w = (x2 - x1) * 0.08
            self.rect(((x1 + x2) / 2 - w, y2, (x1 + x2) / 2 + w, min(1.0, y2 + 0.25)), BROWN)
        self.rect(box, board, outline=(60, 60, 60), width=0.012)
        return self.text(word, ((x1 + x2) / 2, (y1 + y2) / 2), (y2 - y1) * 0.72, ink)

    def digit(self, index: int, box: Box, ink: RGB, paper: RGB | None = None) -> None:
        """A real handwritten scikit-learn digit, upscaled into `box`."""
        images, _ = _digits()
        bx = [round(v) for v in self._box(box)]
        w, h = bx[2] - bx[0], bx[3] - bx[1]
        mask = Image.fromarray((images[index] * 255).astype(np.uint8), "L").resize(
            (w, h), Image.Resampling.BICUBIC
        )
        if paper is not None:
            self.img.paste(paper, bx)
        self.img.paste(Image.new("RGB", (w, h), ink), (bx[0], bx[1]), mask)

    def drawing(self, kind: str, box: Box, main: RGB, second: RGB) -> None:
        """A simple drawing of an everyday object (the ImageNet-style classes)."""
        x1, y1, x2, y2 = box

        def sub(a: float, b: float, c: float, d: float) -> Box:  # a box inside `box`
            return (x1 + a * (x2 - x1), y1 + b * (y2 - y1), x1 + c * (x2 - x1), y1 + d * (y2 - y1))

        def at(a: float, b: float) -> tuple[float, float]:
            return (x1 + a * (x2 - x1), y1 + b * (y2 - y1))

        s = x2 - x1
        if kind == "house":
            self.rect(sub(0.12, 0.45, 0.88, 1.0), main)
            self.polygon(box, [(0.0, 0.47), (0.5, 0.0), (1.0, 0.47)], second)
            self.rect(sub(0.42, 0.68, 0.6, 1.0), BROWN)
            self.rect(sub(0.2, 0.55, 0.34, 0.7), (235, 235, 200))
        elif kind == "tree":
            self.rect(sub(0.4, 0.55, 0.6, 1.0), BROWN)
            self.ellipse(sub(0.05, 0.0, 0.95, 0.7), main)
        elif kind == "flower":
            self.line([at(0.5, 0.45), at(0.5, 1.0)], COLORS["green"], 0.09 * s)
            self.ellipse(sub(0.5, 0.7, 0.85, 0.85), COLORS["green"])
            for i in range(6):
                a = i * math.pi / 3
                cx, cy = 0.5 + 0.24 * math.cos(a), 0.32 + 0.24 * math.sin(a)
                self.ellipse(sub(cx - 0.15, cy - 0.15, cx + 0.15, cy + 0.15), main)
            self.ellipse(sub(0.38, 0.2, 0.62, 0.44), second)
        elif kind == "boat":
            self.polygon(box, [(0.0, 0.62), (1.0, 0.62), (0.8, 0.95), (0.2, 0.95)], main)
            self.line([at(0.5, 0.05), at(0.5, 0.62)], BROWN, 0.05 * s)
            self.polygon(box, [(0.54, 0.06), (0.54, 0.56), (0.92, 0.56)], second)
            self.polygon(box, [(0.46, 0.16), (0.46, 0.56), (0.14, 0.56)], second)
        elif kind == "clock":
            self.ellipse(box, (245, 245, 240), outline=main, width=0.1 * s)
            for a in range(4):
                ang = a * math.pi / 2
                p = (0.5 + 0.36 * math.cos(ang), 0.5 + 0.36 * math.sin(ang))
                self.ellipse(sub(p[0] - 0.04, p[1] - 0.04, p[0] + 0.04, p[1] + 0.04), (30, 30, 30))
            self.line([at(0.5, 0.5), at(0.5, 0.18)], (30, 30, 30), 0.07 * s)
            self.line([at(0.5, 0.5), at(0.74, 0.58)], (30, 30, 30), 0.07 * s)
        elif kind == "fish":
            self.polygon(box, [(0.62, 0.5), (1.0, 0.18), (1.0, 0.82)], second)
            self.ellipse(sub(0.0, 0.22, 0.72, 0.78), main)
            self.ellipse(sub(0.13, 0.38, 0.23, 0.48), (20, 20, 20))
        else:
            raise ValueError(f"unknown drawing {kind!r}")

    def icon(self, kind: str, box: Box) -> None:
        """A genre icon on a white badge (book covers)."""
        x1, y1, x2, y2 = box
        s = x2 - x1
        self.ellipse(box, (250, 250, 245))

        def sub(a: float, b: float, c: float, d: float) -> Box:
            return (x1 + a * s, y1 + b * s, x1 + c * s, y1 + d * s)

        black = (20, 20, 20)
        if kind == "smiley":
            self.ellipse(
                sub(0.12, 0.12, 0.88, 0.88), COLORS["yellow"], outline=black, width=0.05 * s
            )
            self.ellipse(sub(0.32, 0.32, 0.42, 0.46), black)
            self.ellipse(sub(0.58, 0.32, 0.68, 0.46), black)
            mouth = self._box(sub(0.3, 0.35, 0.7, 0.72))
            self.draw.arc(mouth, 20, 160, fill=black, width=max(1, round(0.05 * s * self.px)))
        elif kind == "heart":
            red = COLORS["red"]
            self.ellipse(sub(0.16, 0.22, 0.52, 0.58), red)
            self.ellipse(sub(0.48, 0.22, 0.84, 0.58), red)
            self.polygon(sub(0, 0, 1, 1), [(0.18, 0.46), (0.82, 0.46), (0.5, 0.84)], red)
        elif kind == "moon":
            self.ellipse(sub(0.16, 0.14, 0.84, 0.82), (40, 60, 150))
            self.ellipse(sub(0.34, 0.08, 0.96, 0.7), (250, 250, 245))
        elif kind == "ball":
            self.ellipse(
                sub(0.14, 0.14, 0.86, 0.86), COLORS["orange"], outline=black, width=0.05 * s
            )
            self.line(
                [(x1 + 0.5 * s, y1 + 0.14 * s), (x1 + 0.5 * s, y1 + 0.86 * s)], black, 0.05 * s
            )
            self.line(
                [(x1 + 0.14 * s, y1 + 0.5 * s), (x1 + 0.86 * s, y1 + 0.5 * s)], black, 0.05 * s
            )
        elif kind == "sun":
            for i in range(8):
                a = i * math.pi / 4
                p = (x1 + (0.5 + 0.44 * math.cos(a)) * s, y1 + (0.5 + 0.44 * math.sin(a)) * s)
                self.line([(x1 + 0.5 * s, y1 + 0.5 * s), p], COLORS["orange"], 0.08 * s)
            self.ellipse(sub(0.28, 0.28, 0.72, 0.72), COLORS["yellow"], outline=COLORS["orange"])
        elif kind == "question":
            self.text("?", (x1 + 0.5 * s, y1 + 0.52 * s), 0.8 * s, (20, 20, 20))
        else:
            raise ValueError(f"unknown icon {kind!r}")

    def image(self) -> Image.Image:
        """The finished picture at the output size."""
        return self.img.resize((self.size, self.size), Image.Resampling.LANCZOS)


# --- layout -------------------------------------------------------------------------------------


def overlaps(a: Box, b: Box, gap: float = 0.0) -> bool:
    return not (
        a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
    )


def place_boxes(
    rng: random.Random,
    sides: list[float],
    avoid: tuple[Box, ...] | list[Box] = (),
    gap: float = 0.04,
    margin: float = 0.03,
    tries: int = 200,
) -> list[Box] | None:
    """Square boxes of the given sides, inside the canvas, apart from each other and `avoid`.

    Returns None when random placement keeps failing; the caller then draws a new scene.
    """
    placed: list[Box] = []
    for side in sides:
        for _ in range(tries):
            x = rng.uniform(margin, 1 - margin - side)
            y = rng.uniform(margin, 1 - margin - side)
            b = (x, y, x + side, y + side)
            if not any(overlaps(b, o, gap) for o in [*placed, *avoid]):
                placed.append(b)
                break
        else:
            return None
    return placed


def scatter(
    rng: random.Random,
    specs: list[tuple[str, str]],
    side_range: tuple[float, float] = (0.2, 0.32),
    sides: list[float] | None = None,
    avoid: tuple[Box, ...] | list[Box] = (),
    gap: float = 0.04,
) -> list[Obj] | None:
    """Objects for (shape, colour) `specs`, at random non-overlapping places (None if no room)."""
    if sides is None:
        sides = [rng.uniform(*side_range) for _ in specs]
    boxes = place_boxes(rng, sides, avoid=avoid, gap=gap)
    if boxes is None:
        return None
    return [Obj(s, c, b) for (s, c), b in zip(specs, boxes, strict=True)]


def render_objects(size: int, objs: list[Obj], background: RGB) -> Canvas:
    canvas = Canvas(size, background)
    for o in objs:
        canvas.obj(o)
    return canvas


def position_words(box: Box) -> tuple[str, str]:
    """('top'|'middle'|'bottom', 'left'|'center'|'right') of a box's centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    v = "top" if cy < 0.38 else "bottom" if cy > 0.62 else "middle"
    h = "left" if cx < 0.38 else "right" if cx > 0.62 else "center"
    return v, h


# --- degradations (VizWiz-style photos) ---------------------------------------------------------


def blur(img: Image.Image, radius: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else img


def darken(img: Image.Image, factor: float) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32) * factor
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def add_noise(img: Image.Image, gen: np.random.Generator, sigma: float) -> Image.Image:
    if sigma <= 0:
        return img
    arr = np.asarray(img, dtype=np.float32) + gen.normal(0.0, sigma, (img.height, img.width, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def occlude(img: Image.Image, box: Box, color: RGB = SKIN) -> Image.Image:
    """A blob (a finger over the lens) covering `box`."""
    out = img.copy()
    s = img.width
    ImageDraw.Draw(out).ellipse([box[0] * s, box[1] * s, box[2] * s, box[3] * s], fill=color)
    return out
