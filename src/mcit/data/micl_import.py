"""`mcit data import micl --root DIR --out OUT`: MICL's six datasets, from a user's local copy in
their official annotation layouts, written as an mcit benchmark folder that points at the
media where they are (nothing is copied).

The layout under DIR is the one MICL's code reads its media from (weiguoPian/MICL_TMLR,
"Data Preparation"), with each dataset's own annotation files beside its media:

| task | annotations (official) | media |
| --- | --- | --- |
| flickr30k | `flickr30k/dataset_flickr30k.json` (Karpathy's split: images, their split and five sentences) | `flickr30k/flickr30k-images/<filename>` |
| okvqa | `coco/OK-VQA/OpenEnded_mscoco_{train,val}2014_questions.json`, `mscoco_{train,val}2014_annotations.json` | `coco/OK-VQA/{train,val}2014/COCO_{train,val}2014_<12-digit id>.jpg` |
| msrvtt | `MSRVTT/train_val_videodatainfo.json`, `MSRVTT/test_videodatainfo.json` (the 2016 release: `videos` with their split, `sentences`) | `MSRVTT/videos/all/<video_id>.mp4` |
| msvdqa | `MSVD/MSVD-QA/{train,val,test}_qa.json`; optional `youtube_mapping.txt` (`<clip name> vid<N>` per line) | `MSVD/MSVD-QA/video/vid<N>.avi` (or `.mp4`, or `<clip name>.avi`) |
| audiocaps | `AudioCaps/{train,val,test}.csv` (`audiocap_id,youtube_id,start_time,caption`) | `AudioCaps/all_audios/<audiocap_id>.wav` (or `<youtube_id>.wav`) |
| clothoaqa | `Clotho-AQA/clotho_aqa_{train,val,test}.csv` (`file_name,QuestionText,answer,confidence`) | `Clotho-AQA/audio_files/<file_name>` |

Train records come from each dataset's train split, test records from its test split (OK-VQA:
val2014, as its test answers are not public). A captioning task has one training record per
(media, caption) pair, asked "Describe the {image, video, sound} briefly.", and one test record
per media file with every caption as a reference (CIDEr); a QA task's answers are the
annotators' (VQA-style normalised match; the training answer is the most frequent one).
Audio tasks declare 16 kHz, the rate mcit's audio encoders read: `mcit data validate OUT` then
names every clip at another rate.

Every problem names its file, and its line or record and field.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcit.data.annotations import annotation_field, annotation_json
from mcit.errors import DataError
from mcit.files import atomic_dir

NAME = "micl"
ORDERS = {
    "order1": ["audiocaps", "flickr30k", "msvdqa", "clothoaqa", "okvqa", "msrvtt"],
    "order2": ["flickr30k", "msrvtt", "msvdqa", "okvqa", "audiocaps", "clothoaqa"],
}
CAPTION_INSTRUCTIONS = {
    "image": "Describe the image briefly.",
    "video": "Describe the video briefly.",
    "audio": "Describe the sound briefly.",
}
AUDIO_RATE = 16_000


@dataclass
class Item:
    """One media file of a split: its path under the task's media root, and either captions or
    (question, answers) pairs."""

    media: str
    captions: list[str] = field(default_factory=list)
    questions: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass(frozen=True)
class TaskLayout:
    modality: str
    metric: str
    media_root: str  # under DIR
    read: Callable[[Path], dict[str, list[Item]]]  # DIR → split → items
    description: str


def _json(path: Path) -> Any:
    return annotation_json(path, "annotation file not found (see the layout above)")


def _csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file with a header that has `columns`."""
    if not path.is_file():
        raise DataError(path, None, None, "annotation file not found (see the layout above)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, "line 1", missing[0], "column missing from the header")
        rows = []
        for row in reader:
            line = reader.line_num
            for c in columns:
                if not (row.get(c) or "").strip():
                    raise DataError(path, f"line {line}", c, "empty")
            rows.append((line, row))
    return rows


# ---------------------------------------------------------------------------- readers
def _flickr30k(root: Path) -> dict[str, list[Item]]:
    path = root / "flickr30k" / "dataset_flickr30k.json"
    data = _json(path)
    images = annotation_field(path, "top level", data, "images", list)
    out: dict[str, list[Item]] = {"train": [], "test": []}
    for k, image in enumerate(images):
        split = annotation_field(path, k, image, "split")
        if split not in out:
            continue  # Karpathy's "val" (and "restval") are not used
        filename = annotation_field(path, k, image, "filename")
        sentences = annotation_field(path, k, image, "sentences", list)
        captions = [
            annotation_field(path, f"{k}.sentences[{j}]", s, "raw") for j, s in enumerate(sentences)
        ]
        out[split].append(Item(filename, captions=captions))
    return out


def _okvqa(root: Path) -> dict[str, list[Item]]:
    folder = root / "coco" / "OK-VQA"
    out: dict[str, list[Item]] = {}
    for split, coco in (("train", "train2014"), ("test", "val2014")):
        qpath = folder / f"OpenEnded_mscoco_{coco}_questions.json"
        apath = folder / f"mscoco_{coco}_annotations.json"
        questions = annotation_field(qpath, "top level", _json(qpath), "questions", list)
        annotations = annotation_field(apath, "top level", _json(apath), "annotations", list)
        answers: dict[int, list[str]] = {}
        for k, ann in enumerate(annotations):
            qid = annotation_field(apath, k, ann, "question_id", int)
            given = annotation_field(apath, k, ann, "answers", list)
            answers[qid] = [
                annotation_field(apath, f"{k}.answers[{j}]", a, "answer")
                for j, a in enumerate(given)
            ]
        by_image: dict[str, Item] = {}
        for k, q in enumerate(questions):
            qid = annotation_field(qpath, k, q, "question_id", int)
            if qid not in answers:
                raise DataError(qpath, k, "question_id", f"{qid} has no entry in {apath.name}")
            image = f"{coco}/COCO_{coco}_{annotation_field(qpath, k, q, 'image_id', int):012d}.jpg"
            item = by_image.setdefault(image, Item(image))
            item.questions.append((annotation_field(qpath, k, q, "question"), answers[qid]))
        out[split] = list(by_image.values())
    return out


def _msrvtt(root: Path) -> dict[str, list[Item]]:
    folder = root / "MSRVTT"
    split_of: dict[str, str] = {}
    captions: dict[str, list[str]] = defaultdict(list)
    for name in ("train_val_videodatainfo.json", "test_videodatainfo.json"):
        path = folder / name
        data = _json(path)
        for k, video in enumerate(annotation_field(path, "top level", data, "videos", list)):
            split_of[annotation_field(path, f"videos[{k}]", video, "video_id")] = annotation_field(
                path, f"videos[{k}]", video, "split"
            )
        for k, s in enumerate(annotation_field(path, "top level", data, "sentences", list)):
            captions[annotation_field(path, f"sentences[{k}]", s, "video_id")].append(
                annotation_field(path, f"sentences[{k}]", s, "caption")
            )
    out: dict[str, list[Item]] = {"train": [], "test": []}
    for video, split in split_of.items():
        if split in out and captions.get(video):
            out[split].append(Item(f"{video}.mp4", captions=captions[video]))
    return out


def _msvdqa(root: Path) -> dict[str, list[Item]]:
    """MSVD-QA's videos are found as `video/vid<N>.avi` (or `.mp4`), or by their YouTube clip
    name from `youtube_mapping.txt` when the file is there."""
    folder = root / "MSVD" / "MSVD-QA"
    mapping_path = folder / "youtube_mapping.txt"
    clip_of: dict[str, str] = {}
    if mapping_path.is_file():
        for line_no, line in enumerate(mapping_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].startswith("vid"):
                raise DataError(
                    mapping_path, f"line {line_no}", None, "expected '<clip name> vid<N>'"
                )
            clip_of[parts[1]] = parts[0]
    out: dict[str, list[Item]] = {}
    for split in ("train", "test"):
        path = folder / f"{split}_qa.json"
        records = _json(path)
        if not isinstance(records, list):
            raise DataError(path, None, None, "expected a list of question records")
        by_video: dict[str, Item] = {}
        for k, rec in enumerate(records):
            vid = f"vid{annotation_field(path, k, rec, 'video_id', int)}"
            if vid not in by_video:
                stems = [vid] + ([clip_of[vid]] if vid in clip_of else [])
                names = [f"video/{stem}{ext}" for stem in stems for ext in (".avi", ".mp4")]
                found = next((n for n in names if (folder / n).is_file()), None)
                if found is None:
                    raise DataError(path, k, "video_id", f"no video file {' nor '.join(names)}")
                by_video[vid] = Item(found)
            answer = annotation_field(path, k, rec, "answer")
            by_video[vid].questions.append((annotation_field(path, k, rec, "question"), [answer]))
        out[split] = list(by_video.values())
    return out


def _audiocaps(root: Path) -> dict[str, list[Item]]:
    folder = root / "AudioCaps"
    out: dict[str, list[Item]] = {}
    for split in ("train", "test"):
        path = folder / f"{split}.csv"
        by_clip: dict[str, Item] = {}
        for line, row in _csv_rows(path, ("audiocap_id", "youtube_id", "caption")):
            names = [f"{row['audiocap_id'].strip()}.wav", f"{row['youtube_id'].strip()}.wav"]
            found = next((n for n in names if (folder / "all_audios" / n).is_file()), None)
            if found is None:
                raise DataError(
                    path,
                    f"line {line}",
                    "audiocap_id",
                    f"no audio file all_audios/{names[0]} (nor all_audios/{names[1]})",
                )
            by_clip.setdefault(found, Item(found)).captions.append(row["caption"].strip())
        out[split] = list(by_clip.values())
    return out


def _clothoaqa(root: Path) -> dict[str, list[Item]]:
    folder = root / "Clotho-AQA"
    out: dict[str, list[Item]] = {}
    for split in ("train", "test"):
        path = folder / f"clotho_aqa_{split}.csv"
        grouped: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for _, row in _csv_rows(path, ("file_name", "QuestionText", "answer")):
            grouped[row["file_name"].strip()][row["QuestionText"].strip()].append(
                row["answer"].strip()
            )
        out[split] = [
            Item(name, questions=list(questions.items())) for name, questions in grouped.items()
        ]
    return out


LAYOUTS: dict[str, TaskLayout] = {
    "flickr30k": TaskLayout("image", "cider", "flickr30k/flickr30k-images", _flickr30k,
                            "Flickr30k image captioning (Karpathy split)"),
    "okvqa": TaskLayout("image", "vqa", "coco/OK-VQA", _okvqa,
                        "OK-VQA: image questions that need outside knowledge"),
    "msrvtt": TaskLayout("video", "cider", "MSRVTT/videos/all", _msrvtt,
                         "MSR-VTT video captioning"),
    "msvdqa": TaskLayout("video", "vqa", "MSVD/MSVD-QA", _msvdqa, "MSVD-QA video questions"),
    "audiocaps": TaskLayout("audio", "cider", "AudioCaps/all_audios", _audiocaps,
                            "AudioCaps audio captioning"),
    "clothoaqa": TaskLayout("audio", "vqa", "Clotho-AQA/audio_files", _clothoaqa,
                            "Clotho-AQA audio questions"),
}  # fmt: skip


def _records(name: str, layout: TaskLayout, split: str, items: list[Item]) -> list[dict]:
    tag, mod = f"<{layout.modality}>", layout.modality
    records: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if layout.metric == "cider":
            instruction = CAPTION_INSTRUCTIONS[mod]
            if split == "train":
                records += [
                    {
                        "id": f"{name}-{i:06d}-{j}",
                        mod: item.media,
                        "conversations": [
                            {"from": "human", "value": f"{tag}\n{instruction}"},
                            {"from": "gpt", "value": caption},
                        ],
                    }
                    for j, caption in enumerate(item.captions)
                ]
            else:
                records.append(
                    {
                        "question_id": f"{name}-t-{i:06d}",
                        mod: item.media,
                        "text": instruction,
                        "answer": item.captions[0],
                        "answers": item.captions,
                    }
                )
            continue
        for j, (question, answers) in enumerate(item.questions):
            top = Counter(answers).most_common(1)[0][0]
            if split == "train":
                records.append(
                    {
                        "id": f"{name}-{i:06d}-{j}",
                        mod: item.media,
                        "conversations": [
                            {"from": "human", "value": f"{tag}\n{question}"},
                            {"from": "gpt", "value": top},
                        ],
                    }
                )
            else:
                records.append(
                    {
                        "question_id": f"{name}-t-{i:06d}-{j}",
                        mod: item.media,
                        "text": question,
                        "answer": top,
                        "answers": answers,
                    }
                )
    return records


def import_micl(root: str | Path, out: str | Path) -> Path:
    """Read the six datasets under `root` (the layout in the module doc) and write the mcit
    benchmark folder `out` (built beside it and renamed into place); returns `out`."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(root, None, None, "no such folder (--root)")
    out = Path(out).expanduser().absolute()
    if out.exists():
        raise DataError(out, None, None, "already exists; choose another --out or remove it")
    splits = {name: layout.read(root) for name, layout in LAYOUTS.items()}
    with atomic_dir(out) as tmp:
        tasks = []
        for name, layout in LAYOUTS.items():
            folder = tmp / name
            folder.mkdir()
            train = _records(name, layout, "train", splits[name]["train"])
            test = _records(name, layout, "test", splits[name]["test"])
            if not train or not test:
                empty = "train" if not train else "test"
                raise DataError(root / layout.media_root, None, None, f"{name}: no {empty} records")
            (folder / "train.json").write_text(
                json.dumps(train, indent=1, ensure_ascii=False) + "\n"
            )
            (folder / "test.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in test)
            )
            entry = {
                "name": name,
                "metric": layout.metric,
                "modality": layout.modality,
                "train": f"{name}/train.json",
                "test": f"{name}/test.jsonl",
                "media_root": str(root / layout.media_root),
                "description": layout.description,
            }
            if layout.modality == "audio":
                entry["sample_rate"] = AUDIO_RATE
            tasks.append(entry)
        meta = {"name": NAME, "tasks": tasks, "orders": ORDERS}
        (tmp / "benchmark.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, width=100))
    return out
