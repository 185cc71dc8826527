"""`mcit data import coin --root DIR --out OUT`: CoIN's eight tasks from a user's local copy of
its instruction files and image folders, written as an mcit benchmark folder that points at the
images and training files where they are (nothing large is copied).

The layout is CoIN's own (zackschen/CoIN: its training and evaluation scripts, README):

| what | where under DIR |
| --- | --- |
| instructions | `playground/<set>/<Task>/{train,test,val}.json` (or `<set>/<Task>/...`): one JSON array each |
| images | `cl_dataset/`: the records' `image` paths are relative to it (`COCO2014/train2014/...`, `./GQA/images/...`) |
| ScienceQA ground truth | `cl_dataset/ScienceQA/problems.json` (optional) |
| TextVQA ground truth | `cl_dataset/TextVQA/TextVQA_0.5.1_val.json` (optional) |
| GQA ground truth | `cl_dataset/GQA/testdev_balanced_questions.json` (optional) |

`<set>` is the instruction set: `original` reads `Instructions_Original` (the README spells it
`Instruction_Original`; the first upload `Instructions_Type1`), `type2` the second set the papers
use to test wording robustness (`Instructions_Type2`, `Instruction_Type2`, or on Hugging Face
today `Instructions_Diverse`, which replaced it). `<Task>` is one of ScienceQA, TextVQA,
ImageNet, GQA, VizWiz, Grounding, VQAv2, OCRVQA, learned in that order (CoIN's scripts 1-8).

Each task is evaluated on the file and with the rule of CoIN's evaluation script
(ETrain/Eval/LLaVA/CoIN/): TextVQA, VizWiz and VQAv2 on `val.json`, the others on `test.json`;
ScienceQA by option letter against `problems.json`, TextVQA by VQA soft accuracy against the ten
answers of `TextVQA_0.5.1_val.json`, GQA by exact match against `testdev_balanced_questions.json`
(its balanced questions only), ImageNet by containment, VizWiz, VQAv2 and OCR-VQA by exact match
of the one `answer`, grounding by IoU > 0.5 of `answer_bbox`. Without an optional ground-truth
file the test file's own `answer` is used, and the import says so.

Every problem names its file, and its record and field.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mcit.data.annotations import annotation_field, annotation_json
from mcit.errors import DataError
from mcit.files import atomic_dir

NAME = "coin"
LETTERS = "ABCDEFGHIJ"
# Folder names of each instruction set, the first that exists is read.
INSTRUCTION_SETS: dict[str, tuple[str, ...]] = {
    "original": ("Instructions_Original", "Instruction_Original", "Instructions_Type1"),
    "type2": ("Instructions_Type2", "Instruction_Type2", "Instructions_Diverse"),
}


@dataclass(frozen=True)
class CoinTask:
    folder: str  # under the instruction set
    evaluated_on: str  # the file CoIN's evaluation script reads
    metric: str  # mcit.data.sample.METRICS
    description: str


TASKS: dict[str, CoinTask] = {
    "scienceqa": CoinTask("ScienceQA", "test.json", "option", "ScienceQA: lettered options"),
    "textvqa": CoinTask("TextVQA", "val.json", "vqa", "TextVQA: reading text in photos"),
    "imagenet": CoinTask("ImageNet", "test.json", "contains", "ImageNet: the object's class"),
    "gqa": CoinTask("GQA", "test.json", "exact", "GQA: compositional questions on scenes"),
    "vizwiz": CoinTask("VizWiz", "val.json", "exact", "VizWiz: photos by blind users"),
    "grounding": CoinTask("Grounding", "test.json", "iou", "RefCOCO/+/g: the referred box"),
    "vqav2": CoinTask("VQAv2", "val.json", "exact", "VQAv2: open questions on COCO"),
    "ocrvqa": CoinTask("OCRVQA", "test.json", "exact", "OCR-VQA: book covers"),
}
ORDER = list(TASKS)  # CoIN's scripts 1_Science.sh ... 8_OCRVQA.sh


@dataclass
class CoinImport:
    """What `import_coin` wrote, and where it fell back to a test file's own answers."""

    out: Path
    instructions: Path
    counts: dict[str, int]  # task -> test records (the validation counts the training ones)
    notes: list[str]


def _json(path: Path) -> Any:
    return annotation_json(path, "file not found (see `mcit data import --help`)")


def _array(path: Path) -> list[Any]:
    data = _json(path)
    if not isinstance(data, list):
        raise DataError(
            path, None, None, f"expected a JSON array of records, got {type(data).__name__}"
        )
    return data


def _field(path: Path, index: int, rec: Any, key: str, kind: type | None = None) -> Any:
    """`rec[key]` of the record at `index` of a JSON array (`annotation_field`'s checks)."""
    return annotation_field(path, f"index {index}", rec, key, kind)


def instruction_folder(root: Path, instruction_set: str) -> Path:
    """The folder of `instruction_set` under `root` or `root/playground`."""
    if instruction_set not in INSTRUCTION_SETS:
        known = ", ".join(INSTRUCTION_SETS)
        raise DataError(
            root, None, "--instructions", f"unknown set '{instruction_set}' (known: {known})"
        )
    names = INSTRUCTION_SETS[instruction_set]
    for base in (root / "playground", root):
        for name in names:
            if (base / name).is_dir():
                return base / name
    tried = ", ".join(f"playground/{n}" for n in names)
    raise DataError(
        root,
        None,
        None,
        f"no '{instruction_set}' instruction folder (looked for {tried}, also without playground/)",
    )


# ---------------------------------------------------------------------- ground truth
def _keyed_answers(path: Path, what: str, valid, expected: str) -> dict[str, Any]:
    """{key: record} of a JSON object of `what` records keyed by id, each with a valid
    `answer` (ScienceQA's problems.json, GQA's questions file)."""
    records = _json(path)
    if not isinstance(records, dict):
        raise DataError(path, None, None, f"expected an object of {what}s keyed by their id")
    for key, rec in records.items():
        answer = rec.get("answer") if isinstance(rec, dict) else None
        if not valid(answer):
            raise DataError(path, f"{what} {key}", "answer", f"expected {expected}, got {answer!r}")
    return {str(key): rec for key, rec in records.items()}


def _science_answers(images: Path) -> dict[str, str] | None:
    """pid -> the answer's letter."""
    path = images / "ScienceQA" / "problems.json"
    if not path.is_file():
        return None
    problems = _keyed_answers(
        path,
        "problem",
        lambda a: isinstance(a, int) and not isinstance(a, bool) and 0 <= a < len(LETTERS),
        "an option index",
    )
    return {pid: LETTERS[p["answer"]] for pid, p in problems.items()}


def _textvqa_answers(images: Path) -> dict[str, list[str]] | None:
    path = images / "TextVQA" / "TextVQA_0.5.1_val.json"
    if not path.is_file():
        return None
    data = _json(path)
    rows = data.get("data") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise DataError(path, None, "data", "expected the list of annotations")
    out = {}
    for i, row in enumerate(rows):
        answers = _field(path, i, row, "answers")
        if not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
            raise DataError(
                path, f"index {i}", "answers", f"expected a list of strings, got {answers!r}"
            )
        out[str(_field(path, i, row, "question_id"))] = answers
    return out


def _gqa_answers(images: Path) -> dict[str, str | None] | None:
    """questionId -> answer, None for a question that is not balanced (CoIN does not score it)."""
    path = images / "GQA" / "testdev_balanced_questions.json"
    if not path.is_file():
        return None
    questions = _keyed_answers(path, "question", lambda a: isinstance(a, str), "a string")
    return {qid: q["answer"] if q.get("isBalanced", True) else None for qid, q in questions.items()}


def _box(path: Path, index: int, rec: Any) -> str:
    """CoIN's `answer_bbox` ("[x1, y1, x2, y2]" as a string or a list) as mcit's box answer.
    CoIN scales both boxes by max(size) before the IoU, which leaves the IoU unchanged."""
    value = _field(path, index, rec, "answer_bbox")
    if isinstance(value, str):
        parts = value.replace("[", "").replace("]", "").split(",")
    elif isinstance(value, list):
        parts = value
    else:
        parts = []
    try:
        numbers = [float(p) for p in parts]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != 4:
        raise DataError(
            path, f"index {index}", "answer_bbox", f"expected four numbers, got {value!r}"
        )
    return "[" + ", ".join(f"{v:.3f}".rstrip("0").rstrip(".") if v else "0" for v in numbers) + "]"


# ---------------------------------------------------------------------- records
def _test_records(
    name: str, path: Path, truth: dict | None, notes: list[str]
) -> list[dict[str, Any]]:
    out = []
    skipped = 0
    for i, rec in enumerate(_array(path)):
        qid = _field(path, i, rec, "question_id")
        if isinstance(qid, bool) or not isinstance(qid, (str, int)):
            raise DataError(
                path, f"index {i}", "question_id", f"expected a string or number, got {qid!r}"
            )
        key = str(qid)
        record: dict[str, Any] = {"question_id": key, "text": _field(path, i, rec, "text", str)}
        if "image" in rec:
            record["image"] = _field(path, i, rec, "image", str)
        if name == "grounding":
            record["answer"] = _box(path, i, rec)
        elif truth is None:
            record["answer"] = _field(path, i, rec, "answer", str)
        elif name == "textvqa":
            if key not in truth:
                raise DataError(
                    path, f"index {i}", "question_id", f"'{key}' is not in TextVQA_0.5.1_val.json"
                )
            answers = truth[key]
            record["answer"] = Counter(answers).most_common(1)[0][0]
            record["answers"] = answers
        else:  # scienceqa, gqa
            if key not in truth:
                source = (
                    "problems.json" if name == "scienceqa" else "testdev_balanced_questions.json"
                )
                raise DataError(path, f"index {i}", "question_id", f"'{key}' is not in {source}")
            if truth[key] is None:
                skipped += 1
                continue
            record["answer"] = truth[key]
        out.append(record)
    if skipped:
        notes.append(
            f"{name}: {skipped} unbalanced GQA questions left out, as CoIN's eval_gqa.py does"
        )
    return out


def import_coin(
    root: str | Path,
    out: str | Path,
    instruction_set: str = "original",
    images: str | Path | None = None,
) -> CoinImport:
    """Read CoIN under `root` (the layout in the module doc; `images` overrides
    `root/cl_dataset`) and write the mcit benchmark folder `out` (built beside it and renamed
    into place). The training files are referenced where they are, not copied."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(root, None, None, "no such folder (--root)")
    image_root = Path(images).expanduser().absolute() if images else root / "cl_dataset"
    if not image_root.is_dir():
        raise DataError(
            image_root, None, None, "no such folder (the images: --images, or DIR/cl_dataset)"
        )
    out = Path(out).expanduser().absolute()
    if out.exists():
        raise DataError(out, None, None, "already exists; choose another --out or remove it")
    folder = instruction_folder(root, instruction_set)
    notes: list[str] = []
    truth_files = {
        "scienceqa": (_science_answers(image_root), "ScienceQA/problems.json"),
        "textvqa": (_textvqa_answers(image_root), "TextVQA/TextVQA_0.5.1_val.json"),
        "gqa": (_gqa_answers(image_root), "GQA/testdev_balanced_questions.json"),
    }
    tests, counts = {}, {}
    for name, task in TASKS.items():
        train = folder / task.folder / "train.json"
        if not train.is_file():
            raise DataError(train, None, None, "training file not found")
        truth, source = truth_files.get(name, (None, None))
        if source is not None and truth is None:
            notes.append(
                f"{name}: {image_root / source} not found; scored against the test file's own "
                "'answer' instead of CoIN's ground truth"
            )
        test_file = folder / task.folder / task.evaluated_on
        tests[name] = _test_records(name, test_file, truth, notes)
        if not tests[name]:
            raise DataError(test_file, None, None, "no test records")
    with atomic_dir(out) as tmp:
        entries = []
        for name, task in TASKS.items():
            (tmp / name).mkdir()
            (tmp / name / "test.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tests[name]),
                encoding="utf-8",
            )
            counts[name] = len(tests[name])
            entries.append(
                {
                    "name": name,
                    "metric": task.metric,
                    "modality": "image",
                    "train": str(folder / task.folder / "train.json"),
                    "test": f"{name}/test.jsonl",
                    "media_root": str(image_root),
                    "description": task.description,
                }
            )
        meta = {
            "name": NAME,
            "description": f"CoIN ({instruction_set} instructions, {folder})",
            "tasks": entries,
            "orders": {"coin": ORDER},
        }
        (tmp / "benchmark.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, width=100))
    return CoinImport(out, folder, counts, notes)
