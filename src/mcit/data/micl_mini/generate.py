"""Generate micl-mini: six tasks mirroring MICL's (image, video and audio × captioning and QA),
with the paper's two task orders, into a benchmark folder mcit reads like any other
(docs/data-format.md). Seeded and deterministic: the same seed writes the same bytes.

| task | mirrors | modality | metric |
|---|---|---|---|
| flickr30k | Flickr30k captioning | image | cider |
| okvqa | OK-VQA (outside knowledge) | image | vqa |
| msrvtt | MSR-VTT captioning | video | cider |
| msvdqa | MSVD-QA | video | vqa |
| audiocaps | AudioCaps captioning | audio | cider |
| clothoaqa | Clotho-AQA | audio | vqa |
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from mcit.data.micl_mini import clips, pictures, sounds
from mcit.data.micl_mini.writer import write_task
from mcit.files import atomic_dir

NAME = "micl-mini"
MANIFEST = "micl_mini.json"
FORMAT_VERSION = 1
# [paper] MICL's two orders (AudioCaps, Flickr30k, MSVD-QA, Clotho-AQA, OK-VQA, MSR-VTT; and
# Flickr30k, MSR-VTT, MSVD-QA, OK-VQA, AudioCaps, Clotho-AQA).
ORDERS = {
    "order1": ["audiocaps", "flickr30k", "msvdqa", "clothoaqa", "okvqa", "msrvtt"],
    "order2": ["flickr30k", "msrvtt", "msvdqa", "okvqa", "audiocaps", "clothoaqa"],
}


@dataclass(frozen=True)
class TaskKind:
    modality: str
    metric: str
    generate: Callable[[int, random.Random], list[Any]]
    save: Callable[[Any, Path], None]
    suffix: str
    description: str


TASKS: dict[str, TaskKind] = {
    "flickr30k": TaskKind("image", "cider", pictures.generate_image_captions, pictures.save_png,
                          ".png", "image captioning, three references per image"),
    "okvqa": TaskKind("image", "vqa", pictures.generate_knowledge_qa, pictures.save_png, ".png",
                      "image questions that need knowledge beyond the picture"),
    "msrvtt": TaskKind("video", "cider", clips.generate_video_captions, clips.save_mp4, ".mp4",
                       "video captioning: an object moves, appears, disappears or changes"),
    "msvdqa": TaskKind("video", "vqa", clips.generate_video_qa, clips.save_mp4, ".mp4",
                       "one-word questions about what happens in a clip"),
    "audiocaps": TaskKind("audio", "cider", sounds.generate_audio_captions, sounds.save_wav,
                          ".wav", "audio captioning: tones, chirps, noise, beats"),
    "clothoaqa": TaskKind("audio", "vqa", sounds.generate_audio_qa, sounds.save_wav, ".wav",
                          "questions about a sound's pitch, sweep, loudness or beats"),
}  # fmt: skip


def task_rng(seed: int, task: str, split: str) -> random.Random:
    """The generator of one task's split: independent of the others and of the order."""
    return random.Random(f"micl-mini/{seed}/{task}/{split}")


def _check_target(out: Path) -> None:
    """Refuse to replace anything but a missing or empty folder or an earlier micl-mini."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; refusing to overwrite it")
    if any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise FileExistsError(
            f"{out} is not empty and is not a micl-mini folder (no {MANIFEST}); refusing to "
            "overwrite it. Choose another folder."
        )


def generate_micl_mini(
    out_dir: str | Path,
    seed: int = 0,
    train_size: int = 1000,
    test_size: int = 100,
    progress: bool = True,
) -> Path:
    """Write micl-mini into `out_dir` (built beside it and renamed into place, so a crash never
    leaves half a benchmark) and return its path."""
    if train_size < 1 or test_size < 1:
        raise ValueError("train_size and test_size must be at least 1")
    out = Path(out_dir).expanduser().absolute()
    _check_target(out)
    sizes = {"train": train_size, "test": test_size}
    with atomic_dir(out) as tmp:
        with tqdm(total=len(TASKS) * 2, desc=NAME, unit="split", disable=not progress) as bar:
            for name, kind in TASKS.items():
                bar.set_postfix_str(name)
                splits = {}
                for split, n in sizes.items():
                    splits[split] = kind.generate(n, task_rng(seed, name, split))
                    bar.update(1)
                write_task(tmp, name, kind.modality, splits, kind.save, kind.suffix)
        tasks = []
        for name, kind in TASKS.items():
            entry = {
                "name": name,
                "metric": kind.metric,
                "modality": kind.modality,
                "train": f"{name}/train.json",
                "test": f"{name}/test.jsonl",
                "media_root": name,
                "description": kind.description,
            }
            if kind.modality == "audio":
                entry["sample_rate"] = sounds.RATE
            tasks.append(entry)
        meta = {"name": NAME, "tasks": tasks, "orders": ORDERS}
        (tmp / "benchmark.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, width=100))
        manifest = {
            "generator": "mcit.data.micl_mini.generate",
            "format_version": FORMAT_VERSION,
            "seed": seed,
            "train_size": train_size,
            "test_size": test_size,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out
