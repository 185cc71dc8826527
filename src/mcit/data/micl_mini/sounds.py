"""Synthesised sounds for micl-mini's audio tasks, mirroring MICL's AudioCaps (captioning) and
Clotho-AQA (question answering): tones, chirps, noise bursts and rhythms of beats.

Every sound is one second at 16 kHz, float32 in [-1, 1]. What a question or caption refers to
(pitch, direction, loudness, count) is audible and checked by the tests (dominant frequency,
sweep direction, RMS level, number of onsets); what is not asked about varies at random (exact
frequency within its band, onset time, amplitude, a faint noise floor), so that a model must
listen rather than memorise files. Answers come from balanced schedules, as in coin-mini.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcit.data.micl_mini.writer import MediaExample
from mcit.data.synthetic.common import schedule

RATE = 16_000
SECONDS = 1.0
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}

# Each kind, the values its one audible property takes, and the property's name.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tone": ("pitch", ("high", "low")),
    "chirp": ("direction", ("rising", "falling")),
    "noise": ("loudness", ("loud", "quiet")),
    "beats": ("count", tuple(NUMBERS.values())),
}

# Several references per sound, as AudioCaps has five per clip.
CAPTIONS: dict[tuple[str, str], list[str]] = {
    ("tone", "high"): ["a high tone", "a steady high beep", "a high pitched tone plays"],
    ("tone", "low"): ["a low tone", "a steady low hum", "a low pitched tone plays"],
    ("chirp", "rising"): ["a rising chirp", "a tone sweeps upward", "a whistle rising in pitch"],
    ("chirp", "falling"): [
        "a falling chirp",
        "a tone sweeps downward",
        "a whistle falling in pitch",
    ],
    ("noise", "loud"): ["a loud burst of noise", "loud static hisses", "a loud rush of noise"],
    ("noise", "quiet"): ["a quiet burst of noise", "soft static hisses", "a quiet rush of noise"],
    **{
        ("beats", word): [f"{word} beats", f"{word} short clicks", f"a rhythm of {word} knocks"]
        for word in NUMBERS.values()
    },
}

# Question templates: the property each asks about, and its wording (Clotho-AQA style).
QUESTIONS: dict[str, tuple[str, str]] = {
    "pitch": ("tone", "Is the tone high or low?"),
    "direction": ("chirp", "Does the pitch go up or down?"),
    "loudness": ("noise", "Is the noise loud or quiet?"),
    "count": ("beats", "How many beats are there?"),
    "kind": ("", "What kind of sound is it: a tone, a chirp, noise or beats?"),
}
# Short answers for the direction question ("up" / "down", as a listener would say).
DIRECTION_WORDS = {"rising": "up", "falling": "down"}


@dataclass
class Sound:
    kind: str
    value: str  # the value of the kind's audible property
    samples: np.ndarray  # float32 [RATE · SECONDS]

    @property
    def captions(self) -> list[str]:
        return list(CAPTIONS[self.kind, self.value])


AudioExample = MediaExample[Sound]


def _envelope(n: int, attack: int = 80) -> np.ndarray:
    """Short linear fades at both ends: no click at the onset or the end."""
    env = np.ones(n)
    ramp = np.linspace(0.0, 1.0, min(attack, n // 2))
    env[: len(ramp)] = ramp
    env[n - len(ramp) :] = ramp[::-1]
    return env


def synthesize(kind: str, value: str, rng: random.Random) -> Sound:
    """One second of `kind` whose audible property is `value` (see `KINDS`)."""
    n = int(RATE * SECONDS)
    gen = np.random.default_rng(rng.getrandbits(63))
    out = np.zeros(n)
    start = rng.randint(0, n // 8)  # the sound begins somewhere in the first 125 ms
    length = rng.randint(int(0.6 * n), n - start)
    t = np.arange(length) / RATE
    amplitude = rng.uniform(0.4, 0.7)
    if kind == "tone":
        hz = rng.uniform(700, 1000) if value == "high" else rng.uniform(150, 300)
        body = np.sin(2 * np.pi * hz * t)
    elif kind == "chirp":
        low, high = rng.uniform(200, 350), rng.uniform(900, 1400)
        f0, f1 = (low, high) if value == "rising" else (high, low)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
        body = np.sin(phase)
    elif kind == "noise":
        amplitude = rng.uniform(0.5, 0.8) if value == "loud" else rng.uniform(0.03, 0.08)
        body = gen.uniform(-1.0, 1.0, length)
    elif kind == "beats":
        count = {word: k for k, word in NUMBERS.items()}[value]
        body = np.zeros(length)
        click = int(0.03 * RATE)
        spacing = length // count
        hz = rng.uniform(400, 800)
        for k in range(count):
            at = k * spacing + rng.randint(0, max(1, spacing // 5))
            ct = np.arange(min(click, length - at)) / RATE
            body[at : at + len(ct)] = np.sin(2 * np.pi * hz * ct) * np.exp(-ct * 120)
    else:
        raise ValueError(f"unknown sound kind {kind!r}; known: {', '.join(KINDS)}")
    out[start : start + length] = amplitude * body * _envelope(length)
    out += gen.normal(0.0, 0.002, n)  # a faint floor: no two clips are bit-identical
    return Sound(kind, value, np.clip(out, -1.0, 1.0).astype(np.float32))


def generate_audio_captions(n: int, rng: random.Random) -> list[AudioExample]:
    """AudioCaps-like captioning: every (kind, value) equally often; the answer is the first
    caption, the references all of them (scored by CIDEr)."""
    pairs = [(kind, value) for kind, (_, values) in KINDS.items() for value in values]
    out = []
    for kind, value in schedule(rng, pairs, n):
        sound = synthesize(kind, value, rng)
        captions = sound.captions
        out.append(
            AudioExample(sound, "Describe the sound briefly.", captions[0], captions, "caption")
        )
    return out


def generate_audio_qa(n: int, rng: random.Random) -> list[AudioExample]:
    """Clotho-AQA-like questions: every template equally often, and within a template every
    answer equally often (a model that reads only the question is at chance)."""
    templates = schedule(rng, list(QUESTIONS), n)
    answers = {
        template: iter(
            schedule(
                rng,
                list(KINDS) if template == "kind" else KINDS[QUESTIONS[template][0]][1],
                templates.count(template),
            )
        )
        for template in QUESTIONS
    }
    out = []
    for template in templates:
        kind, question = QUESTIONS[template]
        if template == "kind":  # the answer is the kind; its property is free
            kind = next(answers[template])
            value = rng.choice(KINDS[kind][1])
            answer = kind
        else:
            value = next(answers[template])
            answer = DIRECTION_WORDS.get(value, value)
        out.append(AudioExample(synthesize(kind, value, rng), question, answer, [], template))
    return out


def save_wav(sound: Sound, path: Path) -> None:
    """The sound as a 16-bit PCM WAV at `RATE` (written by soundfile)."""
    import soundfile

    soundfile.write(str(path), sound.samples, RATE, subtype="PCM_16")
