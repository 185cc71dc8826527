"""Audio and video as sample media: decoding round-trips real files written by soundfile and
PyAV (and a folder of frames), the frame sampling rule, and the validator's problems, each
naming the file, the record and the field."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mcit.data.benchmarks import load_benchmark_spec, load_tasks, validate_benchmark
from mcit.data.media import (
    audio_problem,
    read_audio,
    read_video,
    sample_indices,
    video_frame_count,
    video_problem,
)
from mcit.errors import DataError, MediaError

RATE = 16_000


def tone(seconds: float = 0.25, hz: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    wave = 0.5 * np.sin(2 * np.pi * hz * t).astype(np.float32)
    return wave if channels == 1 else np.stack([wave, -0.5 * wave], axis=1)


def write_video(path: Path, levels: list[int], size: int = 32) -> Path:
    """An MPEG-4 clip of flat grey frames, one per level (PyAV, 8 frames per second)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for level in levels:
            pixels = np.full((size, size, 3), level, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---------------------------------------------------------------------------- audio
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_audio_round_trips_as_float_mono(tmp_path, suffix):
    stereo = tone(channels=2)
    path = tmp_path / f"clip{suffix}"
    soundfile.write(str(path), stereo, RATE)  # 16-bit PCM by default
    clip = read_audio(path, sample_rate=RATE)
    assert clip.sample_rate == RATE and clip.samples.dtype == np.float32
    assert clip.samples.shape == (len(stereo),) and clip.seconds == pytest.approx(0.25)
    np.testing.assert_allclose(clip.samples, stereo.mean(axis=1), atol=1 / 2**14)


def test_audio_problems_name_what_is_wrong(tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(str(path), tone(), 8_000)
    assert audio_problem(path) is None
    assert audio_problem(path, RATE) == "sample rate 8000 Hz, the task's is 16000 Hz"
    with pytest.raises(MediaError, match=r"clip\.wav: sample rate 8000 Hz"):
        read_audio(path, RATE)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros(0, dtype=np.float32), RATE)
    assert audio_problem(empty) == "audio has no samples"
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    assert audio_problem(text).startswith("not a readable audio file (")
    assert str(text) not in audio_problem(text)  # the caller names the file once


# ---------------------------------------------------------------------------- video
def test_a_video_file_round_trips_with_uniform_frame_sampling(tmp_path):
    levels = [10 * i + 20 for i in range(10)]
    path = write_video(tmp_path / "clip.mp4", levels)
    assert video_problem(path) is None and video_frame_count(path) == 10
    frames = read_video(path, 4)
    assert sample_indices(10, 4) == [1, 3, 6, 8]
    assert all(f.mode == "RGB" and f.size == (32, 32) for f in frames)
    means = [float(np.asarray(f).mean()) for f in frames]
    assert means == pytest.approx([levels[i] for i in (1, 3, 6, 8)], abs=4)  # lossy codec


def test_a_folder_of_frames_is_a_video_read_exactly(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not a frame")
    assert video_problem(folder) is None and video_frame_count(folder) == 5
    frames = read_video(folder, 3)
    assert [f.getpixel((0, 0))[0] for f in frames] == [0, 40 * 2, 40 * 4]
    # More frames asked than there are: each segment's middle frame, so some repeat, in order.
    assert [f.getpixel((0, 0))[0] for f in read_video(folder, 7)] == [0, 40, 40, 80, 120, 120, 160]


def test_video_problems_name_what_is_wrong(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert video_problem(empty).startswith("video folder holds no frame images")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    assert video_problem(fake).startswith("not a readable video (")
    sound = tmp_path / "sound.wav"
    soundfile.write(str(sound), tone(), RATE)
    assert video_problem(sound) == "no video stream in the file"
    with pytest.raises(MediaError, match=r"fake\.mp4: not a readable video"):
        read_video(fake, 4)


@given(total=st.integers(1, 500), frames=st.integers(1, 64))
def test_sampled_frames_are_ordered_in_range_and_spread(total, frames):
    picks = sample_indices(total, frames)
    assert len(picks) == frames and picks == sorted(picks)
    assert picks[0] >= 0 and picks[-1] < total
    if frames <= total:
        assert len(set(picks)) == frames  # no frame twice while there are enough
        assert picks[-1] >= total - 1 - total // frames  # the last segment is reached


# ---------------------------------------------------------------------------- the validator
def _av_benchmark(root: Path, audio_rate: int | str = RATE) -> Path:
    (root / "media").mkdir(parents=True)
    soundfile.write(str(root / "media/a.wav"), tone(), RATE)
    soundfile.write(str(root / "media/slow.wav"), tone(), 8_000)
    write_video(root / "media/v.mp4", [50, 100, 150])
    (root / "media/broken.mp4").write_text("x")
    for name, kind, files in (
        ("sounds", "audio", ["a.wav", "a.wav", "slow.wav"]),
        ("clips", "video", ["v.mp4", "broken.mp4", "v.mp4"]),
    ):
        train = [
            {
                "id": f"{name}-{i}",
                kind: f"media/{file}",
                "conversations": [
                    {"from": "human", "value": f"<{kind}>\nWhat is it?"},
                    {"from": "gpt", "value": "a tone"},
                ],
            }
            for i, file in enumerate(files)
        ]
        (root / f"{name}.json").write_text(json.dumps(train))
        test = [
            {"question_id": f"{name}-t", kind: f"media/{files[0]}", "text": "Q?", "answer": "a"}
        ]
        (root / f"{name}-test.json").write_text(json.dumps(test))
    (root / "benchmark.yaml").write_text(
        "name: av\ntasks:\n"
        f"  - {{name: sounds, metric: exact, modality: audio, sample_rate: {audio_rate}, "
        "train: sounds.json, test: sounds-test.json}\n"
        "  - {name: clips, metric: exact, modality: video, train: clips.json, test: clips-test.json}\n"
    )
    return root


def test_the_validator_names_file_record_and_field_of_each_bad_clip(tmp_path):
    report = validate_benchmark(_av_benchmark(tmp_path))
    by_name = {t.name: t for t in report.tasks}
    (slow,) = by_name["sounds"].problems
    assert "sounds.json, record index 2 (id 'sounds-2'), field 'audio'" in slow
    assert "sample rate 8000 Hz, the task's is 16000 Hz" in slow and "slow.wav" in slow
    (broken,) = by_name["clips"].problems
    assert "clips.json, record index 1 (id 'clips-1'), field 'video'" in broken
    assert "not a readable video" in broken and "broken.mp4" in broken
    assert by_name["sounds"].train_records == 2 and by_name["clips"].train_records == 2
    # Loading stops at the first bad clip with the same message.
    with pytest.raises(DataError, match=r"record index 1 \(id 'clips-1'\), field 'video'"):
        load_tasks(load_benchmark_spec(tmp_path), order=["clips"])


def test_a_sample_rate_must_be_a_positive_number_on_an_audio_task(tmp_path):
    report = validate_benchmark(_av_benchmark(tmp_path, audio_rate="fast"))
    assert any(
        "field 'sample_rate': expected a positive whole number" in p for p in report.spec_problems
    )
