"""Read and write the LLaVA / CoIN instruction format (docs/data-format.md).

Training files are a JSON list of `{"id", "image", "conversations"}` records; test files are a
JSON list or JSONL of `{"question_id", "image", "text", "answer", "answers"}` records. For
audio and video tasks the media key is the modality name (`"audio"`, `"video"`) and so is the
placeholder tag (`<audio>`, `<video>`).

Every problem in a file raises `DataError(path, record, field, problem)`. Records are named
`index N (id 'x')` in JSON lists (N counts from 0, as in `data[N]`) and `line N (question_id
'x')` in JSONL files (N counts from 1, as editors do). Passing `errors=[...]` collects the
problems instead and skips the bad records, which is what `mcit data validate` needs.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from mcit.data.media import audio_problem, video_problem
from mcit.data.sample import METRICS, MODALITIES, Sample
from mcit.errors import DataError
from mcit.files import json_problem, write_text_atomic

TAGS = {m: f"<{m}>" for m in MODALITIES}
USER_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant")

# One plain decimal number; `float()` alone would also take "nan", "inf" and "1_0".
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


# --------------------------------------------------------------------------- public API


def load_llava_train(
    path: str | Path,
    media_root: str | Path,
    task: str,
    metric: str,
    modality: str = "image",
    check_media: bool = True,
    *,
    limit: int | None = None,
    errors: list[DataError] | None = None,
    sample_rate: int | None = None,
) -> list[Sample]:
    """Read a LLaVA/CoIN training file (a JSON list) into samples.

    `limit` keeps the first N records (later records are not checked at all). With `errors`
    given, problems are appended there and bad records skipped instead of raising.
    """
    path = Path(path)
    _check_arguments(metric, modality, limit)
    media = _MediaCheck(Path(media_root), modality, check_media, sample_rate)
    try:
        raw = _read_json(path)
        if not isinstance(raw, list):
            raise DataError(path, None, None, f"expected a JSON list of records, got {_kind(raw)}")
    except DataError as err:
        _report(err, errors)
        return []
    records = [(f"index {i}", item) for i, item in enumerate(raw)]
    return _parse_records(
        path,
        records,
        limit,
        errors,
        "id",
        lambda rec, where, sid: _train_sample(rec, where, sid, task, metric, media),
    )


def load_llava_test(
    path: str | Path,
    media_root: str | Path,
    task: str,
    metric: str,
    modality: str = "image",
    check_media: bool = True,
    *,
    limit: int | None = None,
    errors: list[DataError] | None = None,
    sample_rate: int | None = None,
) -> list[Sample]:
    """Read a test file (a JSON list, or JSONL with one object a line) into samples.

    The format is decided by content, not by suffix: a file whose first non-blank character
    is `[` is a JSON list, anything else is JSONL. `limit` and `errors` as in `load_llava_train`.
    """
    path = Path(path)
    _check_arguments(metric, modality, limit)
    media = _MediaCheck(Path(media_root), modality, check_media, sample_rate)
    try:
        records = _read_test_records(path)
    except DataError as err:
        _report(err, errors)
        return []
    return _parse_records(
        path,
        records,
        limit,
        errors,
        "question_id",
        lambda rec, where, sid: _test_sample(rec, where, sid, task, metric, media),
    )


def write_llava_train(path: str | Path, samples: Iterable[Sample], media_root: str | Path) -> None:
    """Write samples as a LLaVA/CoIN training file, atomically; the inverse of the loader.

    The format holds one answer per turn, so references other than the last answer are not
    stored (training samples from `load_llava_train` always have `references == [answer]`).
    """
    root = _abs(Path(media_root))
    records = [_train_record(sample, root) for sample in samples]
    write_text_atomic(Path(path), _dump_list(records))


def write_llava_test(path: str | Path, samples: Iterable[Sample], media_root: str | Path) -> None:
    """Write single-turn samples as a test file, atomically: JSONL for `*.jsonl`, else a list."""
    path = Path(path)
    root = _abs(Path(media_root))
    records = [_test_record(sample, root) for sample in samples]
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        text = _dump_list(records)
    write_text_atomic(path, text)


def box_problem(text: str) -> str | None:
    """Why `text` is not a box `[x1, y1, x2, y2]` in [0, 1] with x1 < x2 and y1 < y2; None if it is."""
    body = text.strip()
    if body.startswith("[") != body.endswith("]"):
        return f"unbalanced brackets in box {text!r}"
    parts = [p.strip() for p in body.strip("[]").split(",")]
    if len(parts) != 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        return f"expected a box '[x1, y1, x2, y2]' of 4 numbers, got {text!r}"
    x1, y1, x2, y2 = (float(p) for p in parts)
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
        return f"box coordinates must be normalised to [0, 1], got {text!r}"
    if not (x1 < x2 and y1 < y2):
        return f"box needs x1 < x2 and y1 < y2, got {text!r}"
    return None


# --------------------------------------------------------------------------- reading files


@dataclass
class _Where:
    """The file and record that a problem is reported against."""

    path: Path
    label: str

    def error(self, field_name: str | None, problem: str) -> DataError:
        return DataError(self.path, self.label, field_name, problem)


def _report(err: DataError, errors: list[DataError] | None) -> None:
    """Raise the problem, or collect it when the caller asked for a full list."""
    if errors is None:
        raise err
    errors.append(err)


def _check_arguments(metric: str, modality: str, limit: int | None) -> None:
    # These come from code or benchmark.yaml (checked there), so a plain ValueError is right.
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig drops a byte-order mark, which some Windows tools put in front of JSON.
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, None, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, None, "is a folder, expected a file") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read: {exc.strerror or exc}") from None


def _read_json(path: Path, text: str | None = None) -> Any:
    """The parsed content of a JSON file (`text`: its content when already read)."""
    text = _read_text(path) if text is None else text
    if not text.strip():
        raise DataError(path, None, None, "file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, None, None, json_problem(exc)) from None


def _read_test_records(path: Path) -> list[tuple[str, Any]]:
    """(label, raw record) pairs of a JSON-list or JSONL test file."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        raw = _read_json(path, text)  # valid JSON that starts with "[" is a list
        return [(f"index {i}", item) for i, item in enumerate(raw)]
    if not text.strip():
        raise DataError(path, None, None, "file is empty")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, hand edits) carry no record
        try:
            records.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            # A bad line spoils only its own record: keep it in place, reported when parsed.
            records.append((f"line {number}", _BadLine(json_problem(exc, line=False))))
    return records


@dataclass
class _BadLine:
    """A JSONL line that is not JSON, standing in for its record."""

    problem: str


def _parse_records(
    path: Path,
    records: list[tuple[str, Any]],
    limit: int | None,
    errors: list[DataError] | None,
    id_key: str,
    parse: Callable[[dict[str, Any], _Where, str], Sample],
) -> list[Sample]:
    """Parse each raw record, checking ids are unique, raising or collecting problems."""
    if not records:
        _report(DataError(path, None, None, "contains no records"), errors)
        return []
    samples: list[Sample] = []
    first_seen: dict[str, str] = {}
    for label, raw in records[:limit] if limit is not None else records:
        where = _Where(path, label)
        try:
            if isinstance(raw, _BadLine):
                raise where.error(None, raw.problem)
            if not isinstance(raw, dict):
                raise where.error(None, f"expected a JSON object, got {_kind(raw)}")
            sample_id = _get_id(raw, id_key, where)
            if sample_id in first_seen:
                raise where.error(
                    id_key, f"duplicate {id_key} {sample_id!r} (first at {first_seen[sample_id]})"
                )
            first_seen[sample_id] = label
            samples.append(parse(raw, where, sample_id))
        except DataError as err:
            _report(err, errors)
    return samples


# --------------------------------------------------------------------------- records


def _train_sample(
    rec: dict[str, Any], where: _Where, sample_id: str, task: str, metric: str, media: _MediaCheck
) -> Sample:
    relative = _get_media(rec, where, media.modality)
    turns = _get_conversation(rec, where)
    users = _strip_tags(
        [user for user, _ in turns],
        where,
        media.modality,
        has_media=relative is not None,
        tag_required=True,
        field_of=lambda k: f"conversations[{2 * k}].value",
    )
    turns = [(user, assistant) for user, (_, assistant) in zip(users, turns, strict=True)]
    last_field = f"conversations[{2 * len(turns) - 1}].value"
    _check_question(users[-1], relative, where, f"conversations[{2 * len(turns) - 2}].value")
    references = [turns[-1][1]]
    if metric == "iou":
        _check_box(references[0], where, last_field)
    files = media.attach(relative, where)
    return Sample(sample_id, task, turns, references, metric, files)


def _test_sample(
    rec: dict[str, Any], where: _Where, sample_id: str, task: str, metric: str, media: _MediaCheck
) -> Sample:
    relative = _get_media(rec, where, media.modality)
    text = _get_str(rec, "text", where, allow_empty=True)
    # The docs say test text carries no tag, but LLaVA eval files sometimes keep one: accept it.
    (text,) = _strip_tags(
        [text],
        where,
        media.modality,
        has_media=relative is not None,
        tag_required=False,
        field_of=lambda _: "text",
    )
    _check_question(text, relative, where, "text")
    answer = _get_str(rec, "answer", where)
    answers = _get_answers(rec, where)
    if metric == "iou":
        _check_box(answer, where, "answer")
        for i, ref in enumerate(answers or []):
            _check_box(ref, where, f"answers[{i}]")
    references = answers or [answer]
    files = media.attach(relative, where)
    return Sample(sample_id, task, [(text, answer)], references, metric, files)


def _get_id(rec: dict[str, Any], key: str, where: _Where) -> str:
    """The record's id as a string; also names the record by it from here on."""
    if key not in rec:
        raise where.error(key, "missing")
    value = rec[key]
    # bool is an int subclass in Python, but `true` is never a meaningful id.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise where.error(key, f"expected a string or integer, got {_kind(value)}")
    sample_id = str(value)
    if not sample_id.strip():
        raise where.error(key, "empty")
    where.label += f" ({key} {sample_id!r})"
    return sample_id


def _get_str(rec: dict[str, Any], key: str, where: _Where, allow_empty: bool = False) -> str:
    if key not in rec:
        raise where.error(key, "missing")
    value = rec[key]
    if not isinstance(value, str):
        raise where.error(key, f"expected a string, got {_kind(value)}")
    if not allow_empty and not value.strip():
        raise where.error(key, "empty answer" if key == "answer" else "empty")
    return value


def _get_answers(rec: dict[str, Any], where: _Where) -> list[str] | None:
    """The optional `answers` list (every accepted reference), or None when absent."""
    value = rec.get("answers")
    if value is None:
        return None
    if not isinstance(value, list):
        raise where.error("answers", f"expected a list of strings, got {_kind(value)}")
    if not value:
        raise where.error("answers", "empty list; leave the field out to use 'answer'")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise where.error(f"answers[{i}]", f"expected a string, got {_kind(item)}")
        if not item.strip():
            raise where.error(f"answers[{i}]", "empty answer")
    return list(value)


def _get_media(rec: dict[str, Any], where: _Where, modality: str) -> str | None:
    """The media path as written in the record (relative to media_root), or None."""
    for other in MODALITIES:
        if other != modality and rec.get(other) is not None:
            raise where.error(
                other, f"this is a {modality} task; records may carry only '{modality}'"
            )
    value = rec.get(modality)
    if value is None:
        return None  # text-only record
    if not isinstance(value, str):
        raise where.error(modality, f"expected one file path (a string), got {_kind(value)}")
    if not value.strip():
        raise where.error(modality, "empty path")
    return value


def _get_conversation(rec: dict[str, Any], where: _Where) -> list[tuple[str, str]]:
    """(user, assistant) pairs from a list alternating human and gpt turns."""
    if "conversations" not in rec:
        raise where.error("conversations", "missing")
    turns = rec["conversations"]
    if not isinstance(turns, list):
        raise where.error("conversations", f"expected a list of turns, got {_kind(turns)}")
    if not turns:
        raise where.error("conversations", "empty; needs at least one human and one gpt turn")
    values = []
    for i, turn in enumerate(turns):
        field_name = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise where.error(field_name, f"expected an object, got {_kind(turn)}")
        role, value = turn.get("from"), turn.get("value")
        expected = USER_ROLES if i % 2 == 0 else ASSISTANT_ROLES
        if role not in expected:
            raise where.error(
                f"{field_name}.from",
                f"expected {' or '.join(map(repr, expected))} (turns alternate, human first), got {role!r}",
            )
        if not isinstance(value, str):
            raise where.error(f"{field_name}.value", f"expected a string, got {_kind(value)}")
        if i % 2 == 1 and not value.strip():
            raise where.error(f"{field_name}.value", "empty answer")
        values.append(value)
    if len(values) % 2:
        raise where.error(
            f"conversations[{len(values) - 1}]", "the conversation must end with a gpt turn"
        )
    return list(zip(values[::2], values[1::2], strict=True))


def _strip_tags(
    texts: list[str],
    where: _Where,
    modality: str,
    has_media: bool,
    tag_required: bool,
    field_of: Callable[[int], str],
) -> list[str]:
    """Remove the one media tag from the first user turn, checking it matches the media."""
    tag = TAGS[modality]
    for k, text in enumerate(texts):
        for other, other_tag in TAGS.items():
            if other != modality and other_tag in text:
                raise where.error(field_of(k), f"{other_tag} tag in a {modality} task (use {tag})")
        count = text.count(tag)
        if count > 1:
            raise where.error(field_of(k), f"{count} {tag} tags; a record has at most one")
        if count and k > 0:
            raise where.error(field_of(k), f"{tag} tag outside the first human turn")
    if tag in texts[0] and not has_media:
        raise where.error(modality, f"missing, but the first human turn has a {tag} tag")
    if tag not in texts[0] and has_media and tag_required:
        raise where.error(field_of(0), f"no {tag} tag, but the record has '{modality}'")
    return [remove_tag(texts[0], tag), *texts[1:]]


def remove_tag(text: str, tag: str) -> str:
    """Drop the tag with its adjacent newline: "<image>\\nQ" and "Q\\n<image>" both give "Q"."""
    at = text.find(tag)
    if at < 0:
        return text
    end = at + len(tag)
    if text.startswith("\n", end):
        return text[:at] + text[end + 1 :]
    if at > 0 and text[at - 1] == "\n":
        return text[: at - 1] + text[end:]
    return text[:at] + text[end:]


def _check_question(text: str, relative: str | None, where: _Where, field_name: str) -> None:
    # An image alone can be a prompt (captioning), but a text-only record needs a question.
    if relative is None and not text.strip():
        raise where.error(field_name, "empty question in a record without media")


def _check_box(answer: str, where: _Where, field_name: str) -> None:
    problem = box_problem(answer)
    if problem:
        raise where.error(field_name, f"{problem} (metric 'iou')")


class _MediaCheck:
    """Turns record paths into absolute paths and checks each file once per load."""

    def __init__(self, root: Path, modality: str, check: bool, sample_rate: int | None = None):
        self.root = _abs(root)
        self.modality = modality
        self.check = check
        self.sample_rate = sample_rate
        self._problems: dict[str, str | None] = {}  # many questions share one image (VQAv2)

    def attach(self, relative: str | None, where: _Where) -> dict[str, str]:
        if relative is None:
            return {}
        file = os.path.normpath(self.root / relative)
        if self.check:
            if file not in self._problems:
                self._problems[file] = self._problem(file)
            problem = self._problems[file]
            if problem:
                raise where.error(self.modality, f"{problem}: {file}")
        return {self.modality: file}

    def _problem(self, file: str) -> str | None:
        if self.modality == "video" and os.path.isdir(file):  # a folder of frame images
            return video_problem(file)
        if not os.path.isfile(file):
            return "file not found"
        if os.path.getsize(file) == 0:
            return "file is empty"
        if self.modality == "audio":
            return audio_problem(file, self.sample_rate)
        if self.modality == "video":
            return video_problem(file)
        if self.modality == "image":
            try:
                with Image.open(file) as image:
                    image.verify()
            except Exception as exc:  # PIL raises many types for corrupt files
                detail = str(exc).replace(f"'{file}'", "").replace(file, "").strip()
                return f"not a readable image ({type(exc).__name__}: {detail})"
        return None


# --------------------------------------------------------------------------- writing files


def _train_record(sample: Sample, root: Path) -> dict[str, Any]:
    if not sample.turns:
        raise ValueError(f"sample {sample.id!r} has no turns")
    record: dict[str, Any] = {"id": sample.id}
    media = _media_entry(sample, root)
    if media:
        record[media[0]] = media[1]
    conversation = []
    for k, (user, assistant) in enumerate(sample.turns):
        if k == 0 and media:
            user = f"{TAGS[media[0]]}\n{user}"
        conversation += [{"from": "human", "value": user}, {"from": "gpt", "value": assistant}]
    record["conversations"] = conversation
    return record


def _test_record(sample: Sample, root: Path) -> dict[str, Any]:
    if len(sample.turns) != 1:
        raise ValueError(
            f"test sample {sample.id!r} has {len(sample.turns)} turns; the test format holds one"
        )
    text, answer = sample.turns[0]
    record: dict[str, Any] = {"question_id": sample.id}
    media = _media_entry(sample, root)
    if media:
        record[media[0]] = media[1]
    record["text"] = text
    record["answer"] = answer
    if sample.references != [answer]:
        record["answers"] = list(sample.references)
    return record


def _media_entry(sample: Sample, root: Path) -> tuple[str, str] | None:
    """(modality, path relative to root) of the sample's one media file, or None."""
    if not sample.media:
        return None
    if len(sample.media) > 1:
        raise ValueError(
            f"sample {sample.id!r} has several media {sorted(sample.media)}; the format holds one"
        )
    ((modality, file),) = sample.media.items()
    file_path = _abs(Path(file))
    # Files outside media_root keep their absolute path rather than a fragile "../../x".
    if file_path.is_relative_to(root):
        return modality, file_path.relative_to(root).as_posix()
    return modality, str(file_path)


def _dump_list(records: list[dict[str, Any]]) -> str:
    # One record a line: readable, diffable, and JSON error line numbers point at a record.
    if not records:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


# --------------------------------------------------------------------------- helpers


def _abs(path: Path) -> Path:
    """Absolute and normalised, without resolving symlinks (so relpaths stay predictable)."""
    return Path(os.path.normpath(path.absolute()))


def _kind(value: Any) -> str:
    """JSON's name for a value's type, for messages."""
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "true/false",
        type(None): "null",
    }
    if type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, int | float) else type(value).__name__
