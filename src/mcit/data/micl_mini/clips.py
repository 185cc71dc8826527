"""Short generated video clips for micl-mini's video tasks, mirroring MICL's MSR-VTT
(captioning) and MSVD-QA (question answering): a coin-mini scene in which one object moves,
appears, disappears or changes colour over 8 frames, beside a still distractor object.

What a caption or question refers to happens on screen and is checked by the tests on the
decoded frames (the object's colour mass shifts, comes, goes or changes); everything else
(the objects, the distractor, sizes, places, background, speed) varies at random. Answers come
from balanced schedules, as in coin-mini.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mcit.data.micl_mini.writer import MediaExample
from mcit.data.synthetic.common import schedule
from mcit.data.synthetic.scene import Obj, background_color, overlaps, render_objects
from mcit.data.synthetic.vocab import COLOR_NAMES, SHAPES

FRAMES = 8
FPS = 4  # a two-second clip
SIZE = 64
EVENTS = ("moves", "appears", "disappears", "changes")
DIRECTIONS = ("left", "right", "up", "down")
_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

# Question templates (MSVD-QA style: one-word answers), the event each needs, and what answers.
QUESTIONS: dict[str, tuple[str, str]] = {
    "direction": ("moves", "Which way does the {shape} move?"),
    "mover_color": ("moves", "What color is the shape that moves?"),
    "appearing_shape": ("appears", "What shape appears?"),
    "vanishing_color": ("disappears", "What color is the shape that disappears?"),
    "new_color": ("changes", "What color does the {shape} turn?"),
}


@dataclass
class Clip:
    event: str
    subject: Obj  # the object the event happens to (its box where it starts or appears)
    detail: str  # moves: the direction; changes: the new colour; otherwise ""
    frames: list[Image.Image]

    @property
    def captions(self) -> list[str]:
        """Three references, as MSR-VTT has several per clip."""
        name, shape = self.subject.name, self.subject.shape
        if self.event == "moves":
            d = self.detail
            return [f"a {name} moves {d}", f"the {name} slides {d}", f"a {shape} moving {d}"]
        if self.event == "appears":
            return [f"a {name} appears", f"a {name} shows up", f"a {shape} pops into view"]
        if self.event == "disappears":
            return [f"a {name} disappears", f"a {name} vanishes", f"the {shape} goes away"]
        c = self.detail
        return [f"a {name} turns {c}", f"the {name} becomes {c}", f"a {shape} changes to {c}"]


VideoExample = MediaExample[Clip]


def make_clip(
    event: str,
    rng: random.Random,
    shape: str | None = None,
    color: str | None = None,
    detail: str | None = None,
) -> Clip:
    """A clip of `event` (see `EVENTS`); `shape`, `color` and `detail` (direction or new
    colour) are drawn at random unless given."""
    shape = shape or rng.choice(SHAPES)
    color = color or rng.choice(COLOR_NAMES)
    if event == "moves":
        detail = detail or rng.choice(DIRECTIONS)
    elif event == "changes":
        detail = detail or rng.choice([c for c in COLOR_NAMES if c != color])
    else:
        detail = ""
    background = background_color(rng)
    dx, dy = _STEP.get(detail, (0, 0)) if event == "moves" else (0, 0)
    for _ in range(100):  # a layout with room for the distractor beside the subject's path
        side = rng.uniform(0.2, 0.28)
        travel = rng.uniform(0.3, 0.45)  # how far a mover goes over the clip, in canvas widths
        # Start where the whole path stays inside the canvas.
        lo_x = 0.03 + (travel if dx < 0 else 0)
        hi_x = 0.97 - side - (travel if dx > 0 else 0)
        lo_y = 0.03 + (travel if dy < 0 else 0)
        hi_y = 0.97 - side - (travel if dy > 0 else 0)
        x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        subject = Obj(shape, color, (x, y, x + side, y + side))
        distractor = _distractor(rng, subject, travel, (dx, dy), shape, {color, detail})
        if distractor is not None:
            break
    else:
        raise RuntimeError("no clip layout found in 100 tries")  # never seen: a bug if it is
    turn = rng.randint(3, 4)  # the frame at which a thing appears, goes or changes
    frames = []
    for f in range(FRAMES):
        objs = [distractor]
        if event == "moves":
            shift = travel * f / (FRAMES - 1)
            box = (x + dx * shift, y + dy * shift, x + side + dx * shift, y + side + dy * shift)
            objs.append(Obj(shape, color, box))
        elif event == "appears":
            objs += [subject] if f >= turn else []
        elif event == "disappears":
            objs += [subject] if f < turn else []
        elif event == "changes":
            objs.append(subject if f < turn else Obj(shape, detail, subject.box))
        else:
            raise ValueError(f"unknown clip event {event!r}; known: {', '.join(EVENTS)}")
        frames.append(render_objects(SIZE, objs, background).image())
    return Clip(event, subject, detail, frames)


def _distractor(
    rng: random.Random,
    subject: Obj,
    travel: float,
    step: tuple[int, int],
    shape: str,
    taken: set[str],
) -> Obj | None:
    """A still object of another shape, in none of the `taken` colours (the subject's, and the
    one it turns), clear of everywhere the subject goes (None when random placement finds no
    room; the caller draws another layout)."""
    x1, y1, x2, y2 = subject.box
    dx, dy = step
    path = (
        min(x1, x1 + dx * travel),
        min(y1, y1 + dy * travel),
        max(x2, x2 + dx * travel),
        max(y2, y2 + dy * travel),
    )
    side = rng.uniform(0.16, 0.22)
    for _ in range(50):
        x, y = rng.uniform(0.03, 0.97 - side), rng.uniform(0.03, 0.97 - side)
        box = (x, y, x + side, y + side)
        if not overlaps(box, path, gap=0.04):
            other_shape = rng.choice([s for s in SHAPES if s != shape])
            return Obj(other_shape, rng.choice([c for c in COLOR_NAMES if c not in taken]), box)
    return None


def generate_video_captions(n: int, rng: random.Random) -> list[VideoExample]:
    """MSR-VTT-like captioning: every event equally often; answer = the first caption,
    references = all three (scored by CIDEr)."""
    out = []
    for event in schedule(rng, EVENTS, n):
        clip = make_clip(event, rng)
        captions = clip.captions
        out.append(
            VideoExample(clip, "Describe the video briefly.", captions[0], captions, "caption")
        )
    return out


def generate_video_qa(n: int, rng: random.Random) -> list[VideoExample]:
    """MSVD-QA-like questions: every template equally often, every answer equally often
    within a template."""
    templates = schedule(rng, list(QUESTIONS), n)
    values = {
        "direction": DIRECTIONS,
        "mover_color": COLOR_NAMES,
        "appearing_shape": SHAPES,
        "vanishing_color": COLOR_NAMES,
        "new_color": COLOR_NAMES,
    }
    answers = {t: iter(schedule(rng, values[t], templates.count(t))) for t in QUESTIONS}
    out = []
    for template in templates:
        event, wording = QUESTIONS[template]
        answer = next(answers[template])
        if template == "direction":
            clip = make_clip(event, rng, detail=answer)
        elif template == "appearing_shape":
            clip = make_clip(event, rng, shape=answer)
        elif template == "new_color":
            old = rng.choice([c for c in COLOR_NAMES if c != answer])
            clip = make_clip(event, rng, color=old, detail=answer)
        else:  # mover_color, vanishing_color
            clip = make_clip(event, rng, color=answer)
        question = wording.format(shape=clip.subject.shape)
        out.append(VideoExample(clip, question, answer, [], template))
    return out


def save_mp4(clip: Clip, path: Path) -> None:
    """The clip as an MPEG-4 file (PyAV), `FPS` frames per second, one thread (so the bytes
    are the same on every machine for the same frames)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        # Every frame a key frame, and bits enough for near-lossless quality in each: colours
        # and edges survive the codec in every frame (at the default bit rate, and with
        # motion-compensated frames, the later frames of a 64 px clip drift).
        stream.bit_rate = 4_000_000
        stream.options = {"g": "1"}
        for image in clip.frames:
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
