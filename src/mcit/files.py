"""Files written atomically (a temporary file beside the target, then a rename, so an
interrupted run never leaves a half-written file that a resume would trust) and the one JSON
reader whose errors name the file. No torch here: `mcit metrics` and reports import it."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temporary_path(path: Path) -> Path:
    """Where `path` is written before the rename that makes it appear whole."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer (text, safetensors, a figure). When the block
    ends, the file is flushed to disk and renamed over `path`; if it raises, the temporary file
    is removed and `path` keeps its old content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            # On disk before the rename: a crash right after it must not leave an empty file.
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path, error: type[Exception] = ValueError) -> Any:
    """The parsed JSON file; an unreadable file or bad JSON raises `error` with a one-line
    message naming the file (and the line and column where the JSON breaks)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise error(
            f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
