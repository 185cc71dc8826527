"""Decoding the audio and video a sample may carry, through maintained libraries: soundfile
(libsndfile: WAV, FLAC, OGG, MP3 and more) for audio, PyAV (FFmpeg) for video files, and Pillow
for a video given as a folder of frame images. Images are read by Pillow where they are used.

Each reader raises `MediaError` naming the file; each `*_problem` function returns why a file
cannot be used (or None) for the data validator, which adds the record and field
(`mcit.data.formats.llava`). Nothing is resampled or converted silently: a clip at another
sample rate than its task declares is a problem, not a quiet resample.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mcit.errors import MediaError

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


# ---------------------------------------------------------------------------- audio
@dataclass
class AudioClip:
    samples: np.ndarray  # float32 [n] in [-1, 1], mono (channels averaged)
    sample_rate: int  # Hz

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def audio_problem(
    path: str | Path, sample_rate: int | None = None, whose: str = "the task's"
) -> str | None:
    """Why `path` is not a usable audio clip (unreadable, no samples, another sample rate than
    `sample_rate` when given: `whose` rate it is), or None."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError ...
        return f"not a readable audio file ({type(exc).__name__}: {_detail(exc, path)})"
    if info.frames <= 0:
        return "audio has no samples"
    if sample_rate is not None and info.samplerate != sample_rate:
        return f"sample rate {info.samplerate} Hz, {whose} is {sample_rate} Hz"
    return None


def read_audio(path: str | Path, sample_rate: int | None = None) -> AudioClip:
    """The clip at `path` as float32 mono samples; MediaError names the file."""
    import soundfile

    problem = audio_problem(path, sample_rate)
    if problem:
        raise MediaError(f"{path}: {problem}")
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return AudioClip(data.mean(axis=1).astype(np.float32), int(rate))


# ---------------------------------------------------------------------------- video
def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def video_frame_count(path: str | Path) -> int:
    """How many frames the video has (a file: decoded to count them when the container does
    not say; a folder: its frame images)."""
    path = Path(path)
    if path.is_dir():
        return len(_frame_files(path))
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            return 0
        stream = container.streams.video[0]
        if stream.frames > 0:
            return int(stream.frames)
        return sum(1 for _ in container.decode(stream))


def video_problem(path: str | Path) -> str | None:
    """Why `path` (a video file or a folder of frame images) is not a usable video, or None."""
    path = Path(path)
    if path.is_dir():
        frames = _frame_files(path)
        if not frames:
            return f"video folder holds no frame images ({', '.join(FRAME_SUFFIXES)})"
        for frame in (frames[0], frames[-1]):
            try:
                with Image.open(frame) as image:
                    image.verify()
            except Exception as exc:  # Pillow raises many types for corrupt files
                return f"frame {frame.name} is not a readable image ({type(exc).__name__})"
        return None
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream in the file"
            stream = container.streams.video[0]
            if next(iter(container.decode(stream)), None) is None:
                return "video has no frames"
    except Exception as exc:  # av raises InvalidDataError, FileNotFoundError, ...
        return f"not a readable video ({type(exc).__name__}: {_detail(exc, path)})"
    return None


def sample_indices(total: int, frames: int) -> list[int]:
    """`frames` indices spread over `total` frames: the middle frame of each of `frames` equal
    segments (every frame, repeated in order, when the video is shorter)."""
    if total <= 0 or frames <= 0:
        raise ValueError(f"cannot sample {frames} of {total} frames")
    return [min(total - 1, int((k + 0.5) * total / frames)) for k in range(frames)]


def read_video(path: str | Path, frames: int) -> list[Image.Image]:
    """`frames` RGB frames sampled uniformly over the video (`sample_indices`); MediaError
    names the file."""
    path = Path(path)
    problem = video_problem(path)
    if problem:
        raise MediaError(f"{path}: {problem}")
    total = video_frame_count(path)
    wanted = sample_indices(total, frames)
    if path.is_dir():
        files = _frame_files(path)
        return [_rgb(files[i]) for i in wanted]
    import av

    keep = set(wanted)
    found: dict[int, Image.Image] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i in keep:
                found[i] = frame.to_image().convert("RGB")
            if i >= wanted[-1]:
                break
    missing = [i for i in wanted if i not in found]
    if missing:  # fewer frames decoded than the container announced
        raise MediaError(f"{path}: frame {missing[0]} of {total} could not be decoded")
    return [found[i] for i in wanted]


def _rgb(file: Path) -> Image.Image:
    with Image.open(file) as image:
        return image.convert("RGB")


def _detail(exc: Exception, path: str | Path) -> str:
    text = str(exc)
    for form in (f"'{path}'", str(path), os.fspath(path)):
        text = text.replace(form, "")
    text = re.sub(r"\s+([:.,])", r"\1", re.sub(r"\s+", " ", text))  # where the path was
    return text.strip(" :") or "no detail"
