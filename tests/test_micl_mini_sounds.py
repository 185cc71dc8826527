"""micl-mini's audio tasks: what a caption or question refers to is audible (pitch, sweep
direction, loudness, number of beats, measured on the samples), answers are balanced, the
generator is deterministic per seed, and the written task validates and decodes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mcit.data.benchmarks import load_benchmark_spec, load_tasks, validate_benchmark
from mcit.data.media import read_audio
from mcit.data.micl_mini.sounds import (
    CAPTIONS,
    KINDS,
    QUESTIONS,
    RATE,
    generate_audio_captions,
    generate_audio_qa,
    save_wav,
    synthesize,
)
from mcit.data.micl_mini.writer import write_task


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[spectrum.argmax()])


def voiced(samples: np.ndarray) -> np.ndarray:
    """The part of the clip above the noise floor."""
    loud = np.flatnonzero(np.abs(samples) > 0.05)
    return samples[loud[0] : loud[-1] + 1]


def onsets(samples: np.ndarray, threshold: float = 0.1, gap_s: float = 0.06) -> int:
    above = np.flatnonzero(np.abs(samples) > threshold)
    if len(above) == 0:
        return 0
    return 1 + int((np.diff(above) > gap_s * RATE).sum())


@pytest.mark.parametrize("seed", range(6))
def test_what_is_asked_is_audible(seed):
    rng = random.Random(seed)
    for value, band in (("high", (700, 1000)), ("low", (150, 300))):
        hz = dominant_hz(synthesize("tone", value, rng).samples)
        assert band[0] - 5 <= hz <= band[1] + 5, (value, hz)
    for value in ("rising", "falling"):
        body = voiced(synthesize("chirp", value, rng).samples)
        first, last = (
            dominant_hz(part) for part in (body[: len(body) // 4], body[-len(body) // 4 :])
        )
        assert (last > first) == (value == "rising"), (value, first, last)
    loud = np.sqrt(np.mean(synthesize("noise", "loud", rng).samples ** 2))
    quiet = np.sqrt(np.mean(synthesize("noise", "quiet", rng).samples ** 2))
    assert loud > 0.15 > 0.06 > quiet
    for count, word in ((2, "two"), (3, "three"), (4, "four"), (5, "five")):
        assert onsets(synthesize("beats", word, rng).samples) == count, word


def test_captions_and_questions_are_balanced_and_every_caption_has_references():
    captions = generate_audio_captions(100, random.Random(0))
    pairs = Counter((ex.media.kind, ex.media.value) for ex in captions)
    assert set(pairs) == set(CAPTIONS) and max(pairs.values()) - min(pairs.values()) <= 1
    assert all(len(ex.references) == 3 and ex.answer == ex.references[0] for ex in captions)
    qa = generate_audio_qa(200, random.Random(0))
    templates = Counter(ex.template for ex in qa)
    assert (
        set(templates) == set(QUESTIONS) and max(templates.values()) - min(templates.values()) <= 1
    )
    for template in QUESTIONS:  # within a template each answer equally often: chance for text
        answers = Counter(ex.answer for ex in qa if ex.template == template)
        expected = len(KINDS) if template == "kind" else len(KINDS[QUESTIONS[template][0]][1])
        assert len(answers) == expected and max(answers.values()) - min(answers.values()) <= 1
    for ex in qa:  # the answer describes the sound that was made
        if ex.template == "kind":
            assert ex.answer == ex.media.kind
        else:
            assert ex.media.kind == QUESTIONS[ex.template][0]
            assert ex.answer == {"rising": "up", "falling": "down"}.get(
                ex.media.value, ex.media.value
            )


def test_the_generator_is_deterministic_per_seed():
    a, b, c = (generate_audio_qa(12, random.Random(s)) for s in (3, 3, 4))
    assert [e.question for e in a] == [e.question for e in b]
    assert all(np.array_equal(x.media.samples, y.media.samples) for x, y in zip(a, b, strict=True))
    assert not all(
        np.array_equal(x.media.samples, y.media.samples) for x, y in zip(a, c, strict=True)
    )


def test_a_written_audio_task_validates_and_decodes(tmp_path: Path):
    rng = random.Random(1)
    splits = {"train": generate_audio_qa(10, rng), "test": generate_audio_qa(5, rng)}
    write_task(tmp_path, "clotho-aqa", "audio", splits, save_wav, ".wav")
    captions = {"train": generate_audio_captions(8, rng), "test": generate_audio_captions(4, rng)}
    write_task(tmp_path, "audiocaps", "audio", captions, save_wav, ".wav")
    (tmp_path / "benchmark.yaml").write_text(
        "name: sounds\ntasks:\n"
        + "".join(
            f"  - {{name: {n}, metric: {m}, modality: audio, sample_rate: {RATE}, "
            f"train: {n}/train.json, test: {n}/test.jsonl, media_root: {n}}}\n"
            for n, m in (("audiocaps", "cider"), ("clotho-aqa", "vqa"))
        )
    )
    report = validate_benchmark(tmp_path)
    assert report.ok, report.format()
    audiocaps, aqa = load_tasks(load_benchmark_spec(tmp_path))
    assert len(aqa.train) == 10 and len(aqa.test) == 5 and aqa.modality == "audio"
    assert audiocaps.test[0].references == captions["test"][0].references
    sample = aqa.train[0]
    assert sample.turns == [(splits["train"][0].question, splits["train"][0].answer)]
    clip = read_audio(sample.media["audio"], sample_rate=RATE)
    np.testing.assert_allclose(clip.samples, splits["train"][0].media.samples, atol=1 / 2**15)
