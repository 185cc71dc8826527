"""Files written atomically (a temporary file beside the target, then a rename, so an
interrupted run never leaves a half-written file that a resume would trust) and the one JSON
reader whose errors name the file (and YAML parse errors in one line); the cache folder, its
lock and the atomic swap of a whole folder. No torch here: `mcit metrics` and reports import
it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


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
        raise error(f"{path}: {json_problem(exc)}") from None


def json_problem(err: json.JSONDecodeError, line: bool = True) -> str:
    """A JSON parse error in one line, ``not valid JSON (line L, column C: reason)``. Every
    reader of a JSON file or line words it this way, so no message drops the column or the
    reason. `line=False` for one line of a JSONL file, whose message already names the line."""
    where = f"line {err.lineno}, column {err.colno}" if line else f"column {err.colno}"
    return f"not valid JSON ({where}: {err.msg})"


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML parse error in one line: what is wrong and where (PyYAML's own message spans
    several lines, with a caret drawing, and reads as cut short in a one-line error)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def cache_root() -> Path:
    """mcit's cache folder: $MCIT_CACHE, else $XDG_CACHE_HOME/mcit, else ~/.cache/mcit."""
    if os.environ.get("MCIT_CACHE"):
        return Path(os.environ["MCIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mcit"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`, so that several processes (torchrun ranks) build a cached
    folder only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive_folder(path: Path, error: type[Exception] = RuntimeError) -> Iterator[None]:
    """Hold `path`'s lock (its `.lock` file, which records the holder's pid) for the block, so
    only one process writes the folder; if another holds it, raise `error` at once, naming its
    pid. The lock ends with the process, so a killed run never leaves the folder locked."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise error(
                f"{path}: another process (pid {holder}) is writing this folder; wait for it "
                "to end, or choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `path` to build a whole folder in. When the block ends it
    replaces `path` (an earlier folder is moved aside first, then removed); if the block raises,
    the temporary folder is removed and `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; what is built is ordinary data
    try:
        yield tmp
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "previous")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)  # also replaces an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
