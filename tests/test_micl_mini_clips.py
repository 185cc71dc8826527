"""micl-mini's video tasks: what a caption or question refers to happens on screen (measured on
the frames decoded from the written MPEG-4 files), answers are balanced, the generator and the
files are deterministic per seed, and a written task validates and decodes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mcit.data.benchmarks import load_benchmark_spec, load_tasks, validate_benchmark
from mcit.data.media import read_video, video_frame_count
from mcit.data.micl_mini.clips import (
    EVENTS,
    FRAMES,
    QUESTIONS,
    SIZE,
    generate_video_captions,
    generate_video_qa,
    save_mp4,
)
from mcit.data.micl_mini.writer import write_task
from mcit.data.synthetic.vocab import COLORS


def mask(frame, color: str) -> np.ndarray:
    """Pixels within a small distance of `color` (the codec shifts colours a little)."""
    rgb = np.asarray(frame).astype(float)
    return np.linalg.norm(rgb - np.array(COLORS[color]), axis=-1) < 45


def centre(m: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(m)
    return np.array([xs.mean(), ys.mean()])


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """Every template's examples, written as MPEG-4 and decoded back: (example, frames)."""
    folder = tmp_path_factory.mktemp("clips")
    out = []
    for i, ex in enumerate(generate_video_qa(40, random.Random(5))):
        path = folder / f"{i}.mp4"
        save_mp4(ex.media, path)
        out.append((ex, read_video(path, FRAMES)))
    return out


def test_what_is_asked_happens_on_screen(decoded):
    step = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
    for ex, frames in decoded:
        clip, first, last = ex.media, frames[0], frames[-1]
        color = clip.subject.color
        if clip.event == "moves":
            shift = centre(mask(last, color)) - centre(mask(first, color))
            assert float(shift @ np.array(step[clip.detail])) > 0.2 * SIZE, (ex.question, shift)
        elif clip.event == "appears":
            assert mask(first, color).sum() < 5 < 40 < mask(last, color).sum(), ex.question
        elif clip.event == "disappears":
            assert mask(last, color).sum() < 5 < 40 < mask(first, color).sum(), ex.question
        else:
            assert mask(first, color).sum() > 40 > 5 > mask(last, color).sum(), ex.question
            assert mask(last, clip.detail).sum() > 40 > 5 > mask(first, clip.detail).sum()


def test_questions_and_captions_are_balanced_and_answered_by_the_clip():
    qa = generate_video_qa(150, random.Random(0))
    templates = Counter(ex.template for ex in qa)
    assert (
        set(templates) == set(QUESTIONS) and max(templates.values()) - min(templates.values()) <= 1
    )
    for template in QUESTIONS:
        answers = Counter(ex.answer for ex in qa if ex.template == template)
        assert max(answers.values()) - min(answers.values()) <= 1, template
    for ex in qa:
        subject = ex.media.subject
        expected = {
            "direction": ex.media.detail,
            "mover_color": subject.color,
            "appearing_shape": subject.shape,
            "vanishing_color": subject.color,
            "new_color": ex.media.detail,
        }[ex.template]
        assert ex.answer == expected and ex.media.event == QUESTIONS[ex.template][0]
    captions = generate_video_captions(40, random.Random(0))
    assert Counter(ex.media.event for ex in captions) == {e: 10 for e in EVENTS}
    assert all(len(ex.references) == 3 and ex.answer == ex.references[0] for ex in captions)
    assert all(ex.media.subject.color in ex.answer for ex in captions)


def test_the_files_are_deterministic_per_seed(tmp_path):
    for seed, name in ((7, "a"), (7, "b"), (8, "c")):
        (ex,) = generate_video_qa(1, random.Random(seed))
        save_mp4(ex.media, tmp_path / f"{name}.mp4")
    data = {n: (tmp_path / f"{n}.mp4").read_bytes() for n in "abc"}
    assert data["a"] == data["b"] != data["c"]
    assert video_frame_count(tmp_path / "a.mp4") == FRAMES


def test_a_written_video_task_validates_and_decodes(tmp_path: Path):
    rng = random.Random(2)
    splits = {"train": generate_video_qa(6, rng), "test": generate_video_qa(3, rng)}
    write_task(tmp_path, "msvd-qa", "video", splits, save_mp4, ".mp4")
    (tmp_path / "benchmark.yaml").write_text(
        "name: clips\ntasks:\n  - {name: msvd-qa, metric: vqa, modality: video, "
        "train: msvd-qa/train.json, test: msvd-qa/test.jsonl, media_root: msvd-qa}\n"
    )
    report = validate_benchmark(tmp_path)
    assert report.ok, report.format()
    (task,) = load_tasks(load_benchmark_spec(tmp_path))
    assert task.modality == "video" and len(task.train) == 6 and len(task.test) == 3
    frames = read_video(task.train[0].media["video"], FRAMES)
    original = np.asarray(splits["train"][0].media.frames[0]).astype(float)
    assert np.abs(np.asarray(frames[0]).astype(float) - original).mean() < 6  # near-lossless
