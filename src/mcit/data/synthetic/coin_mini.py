"""Write the embedded `coin-mini` benchmark: eight CoIN-like tasks in the on-disk format.

The folder follows docs/data-format.md: `benchmark.yaml`, `<task>/train.json` (LLaVA
conversations), `<task>/test.jsonl` (questions with references) and `<task>/images/*.png`.
Each task (and each split) gets its own seed derived from the benchmark seed and the task name,
so a task's data does not depend on the order or on which other tasks are generated.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

import yaml
from tqdm import tqdm

from mcit.data.synthetic import pretrain, textvqa
from mcit.data.synthetic.common import OPTION_ANSWER, SHORT_ANSWER, UNANSWERABLE_HINT, Example
from mcit.data.synthetic.pretrain import derive_seed
from mcit.data.synthetic.tasks import TASKS
from mcit.data.synthetic.vocab import (
    AUTHOR_NAMES,
    COLOR_NAMES,
    DRAWINGS,
    GENRES,
    IMAGENET_CLASSES,
    LETTERS,
    NUMBER_WORDS,
    PLURALS,
    PRODUCT_WORDS,
    SHAPES,
    SIGN_WORDS,
    TITLE_WORDS,
)
from mcit.files import atomic_dir

NAME = "coin-mini"
FORMAT_VERSION = 1
COIN_MINI_ORDER: tuple[str, ...] = (
    "scienceqa",
    "textvqa",
    "imagenet",
    "gqa",
    "vizwiz",
    "grounding",
    "vqav2",
    "ocrvqa",
)
TASK_METRICS: dict[str, str] = {name: TASKS[name].metric for name in COIN_MINI_ORDER}
MANIFEST = "coin-mini.json"  # generation parameters; also marks a folder as coin-mini's


def task_rng(seed: int, task: str, split: str) -> random.Random:
    """The random generator of one task's split: independent of the other tasks and the order."""
    return random.Random(derive_seed(NAME, seed, task, split))


def _is_coin_mini(folder: Path) -> bool:
    try:
        meta = yaml.safe_load((folder / "benchmark.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(meta, dict) and meta.get("name") == NAME and (folder / MANIFEST).is_file()


def _check_target(out: Path) -> None:
    """Refuse to replace anything but a missing or empty folder or an earlier coin-mini."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; refusing to overwrite it")
    if any(out.iterdir()) and not _is_coin_mini(out):
        raise FileExistsError(
            f"{out} is not empty and is not a coin-mini folder (no benchmark.yaml named "
            f"'{NAME}' with {MANIFEST}); refusing to overwrite it. Choose another folder."
        )


def _image_key(ex: Example) -> str:
    return hashlib.sha1(ex.image.tobytes()).hexdigest()


def _write_task(
    root: Path, name: str, seed: int, sizes: dict[str, int], image_size: int, bar: tqdm
) -> None:
    """Generate and write one task's train and test splits under `root/name`."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    spec = TASKS[name]
    seen: set[str] = set()
    for split in ("train", "test"):
        examples = spec.generate(sizes[split], task_rng(seed, name, split), image_size, split)
        records: list[dict] = []
        for ex in examples:
            key = _image_key(ex)
            if key in seen:  # never the same picture twice, in a split or across splits
                bar.update(1)
                continue
            seen.add(key)
            i = len(records)
            if split == "train":
                image = f"images/{i:05d}.png"
                records.append(
                    {
                        "id": f"{name}-{i:05d}",
                        "image": image,
                        "conversations": [
                            {"from": "human", "value": "<image>\n" + ex.question},
                            {"from": "gpt", "value": ex.answer},
                        ],
                    }
                )
            else:
                image = f"images/t{i:05d}.png"
                records.append(
                    {
                        "question_id": f"{name}-t-{i:05d}",
                        "image": image,
                        "text": ex.question,
                        "answer": ex.answer,
                        "answers": ex.references,
                    }
                )
            ex.image.save(folder / image, format="PNG")
            bar.update(1)
        if split == "train":
            text = json.dumps(records, indent=1, ensure_ascii=False)
            (folder / "train.json").write_text(text + "\n")
        else:
            lines = (json.dumps(r, ensure_ascii=False) for r in records)
            (folder / "test.jsonl").write_text("".join(line + "\n" for line in lines))


def generate_coin_mini(
    out_dir: str | os.PathLike,
    seed: int = 0,
    order: Sequence[str] | None = None,
    train_size: int = 2000,
    test_size: int = 300,
    image_size: int = 64,
    progress: bool = True,
) -> Path:
    """Generate coin-mini into `out_dir` and return its path.

    `order` names the tasks to write, in stream order (default: CoIN's order, all eight). The
    folder is built next to `out_dir` and renamed into place, so a crash never leaves a half
    benchmark; an existing coin-mini folder is replaced, any other non-empty folder is refused.
    """
    names = list(COIN_MINI_ORDER if order is None else order)
    unknown = [n for n in names if n not in TASKS]
    if unknown or len(set(names)) != len(names) or not names:
        raise ValueError(
            f"bad coin-mini task order {names}: tasks must be distinct, non-empty and among "
            f"{list(COIN_MINI_ORDER)}"
        )
    if train_size < 1 or test_size < 1 or image_size < 16:
        raise ValueError("train_size and test_size must be >= 1 and image_size >= 16")
    out = Path(out_dir).expanduser().absolute()
    _check_target(out)
    with atomic_dir(out) as tmp:
        sizes = {"train": train_size, "test": test_size}
        total = len(names) * (train_size + test_size)
        with tqdm(total=total, desc=NAME, unit="img", disable=not progress) as bar:
            for name in names:
                bar.set_postfix_str(name)
                _write_task(tmp, name, seed, sizes, image_size, bar)
        _write_meta(tmp, names, seed, sizes, image_size)
    return out


def _write_meta(root: Path, names: list[str], seed: int, sizes: dict[str, int], size: int) -> None:
    orders = {"default": names}
    if sorted(names) == sorted(COIN_MINI_ORDER) and names != list(COIN_MINI_ORDER):
        orders["coin"] = list(COIN_MINI_ORDER)
    meta = {
        "name": NAME,
        "tasks": [
            {
                "name": n,
                "metric": TASKS[n].metric,
                "modality": "image",
                "train": f"{n}/train.json",
                "test": f"{n}/test.jsonl",
                "media_root": n,
                "description": TASKS[n].description,
            }
            for n in names
        ],
        "orders": orders,
    }
    (root / "benchmark.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, width=100))
    manifest = {
        "generator": "mcit.data.synthetic.coin_mini",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "train_size": sizes["train"],
        "test_size": sizes["test"],
        "image_size": size,
        "order": names,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


# --- the tokenizer corpus -----------------------------------------------------------------------

CORPUS_SAMPLES = 120  # generated examples per task family (plus every word list, below)


def _strip_fields(template: str) -> str:
    return re.sub(r"\{\w+\}", "", template)


def corpus_text(
    seed: int = 0, answer_style: str = "sentence", short_answers: float = 0.0
) -> list[str]:
    """Strings covering every template, instruction and answer word the generators can produce.

    Used to train the tiny model's tokenizer: generated samples of every task and of the
    pre-training mixture (natural sentences), every template with its fields removed, every word
    list (with the cases the answers use), and every number a box coordinate can contain.
    """
    lines: list[str] = []
    for name, spec in TASKS.items():
        for ex in spec.generate(CORPUS_SAMPLES, task_rng(seed, name, "corpus"), 32, "train"):
            lines.append(ex.question)
            lines.append(ex.answer)
            lines.extend(dict.fromkeys(ex.references))
        lines.extend(_strip_fields(t) for t in spec.templates)
    for _, text in pretrain.pretrain_captions(CORPUS_SAMPLES * 2, seed, 32):
        lines.append(text)
    conversations = pretrain.pretrain_instructions(
        CORPUS_SAMPLES * 4, seed, 32, answer_style, short_answers
    )
    for _, turns in conversations:
        for user, assistant in turns:
            lines += [user, assistant]
    lines += [_strip_fields(t) for t in pretrain.TEMPLATES.values()]
    lines += [_strip_fields(t) for t in pretrain.ANSWERS]
    if answer_style == "referent-value":
        lines += [_strip_fields(t) for t in pretrain.REFERENT_VALUE_ANSWERS]
    if short_answers:
        lines += [*pretrain.TERSE_REQUESTS, _strip_fields(pretrain.SHORT_FORM)]
    lines += [SHORT_ANSWER.strip(), OPTION_ANSWER, UNANSWERABLE_HINT.strip()]
    words = [
        *COLOR_NAMES,
        *SHAPES,
        *PLURALS.values(),
        *NUMBER_WORDS,
        *IMAGENET_CLASSES,
        *DRAWINGS,
        *SIGN_WORDS,
        *(w.upper() for w in SIGN_WORDS),
        *(w.capitalize() for w in SIGN_WORDS),
        *(near for w in SIGN_WORDS for near in textvqa.near_words(w)),
        *PRODUCT_WORDS,
        *TITLE_WORDS,
        *AUTHOR_NAMES,
        *GENRES,
        *(g.lower() for g in GENRES),
        *pretrain.ICON_NAMES.values(),
        *pretrain.PROBLEMS.values(),
        *LETTERS,
        *(f"({c})" for c in "abcde"),
        "yes",
        "no",
        "Yes",
        "No",
        "unanswerable",
        "Unanswerable",
    ]
    lines += [" ".join(words[i : i + 16]) for i in range(0, len(words), 16)]
    lines += [" ".join(str(i) for i in range(11))]
    coords = [f"{i / 100:.2f}" for i in range(101)]
    lines += [", ".join(coords[i : i + 10]) for i in range(0, len(coords), 10)]
    return lines
