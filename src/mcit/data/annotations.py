"""Reading a dataset's official annotation file for an importer (`mcit data import`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcit.errors import DataError
from mcit.files import json_problem


def annotation_json(path: Path, missing: str = "annotation file not found") -> Any:
    """The parsed JSON file; a missing file or bad JSON raises DataError naming the file (and
    the line where the JSON breaks). `missing` says what to do about a missing file."""
    if not path.is_file():
        raise DataError(path, None, None, missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(path, None, None, json_problem(err)) from None


def annotation_field(
    path: Path, record: str | int, rec: Any, key: str, kind: type | None = str
) -> Any:
    """`rec[key]`, checked: `kind` str wants a non-empty string, int a whole number, list a
    list, None anything. A problem raises DataError naming `path`, `record` and `key`."""
    if not isinstance(rec, dict):
        # The type only: `rec` may be a whole annotation file's list.
        raise DataError(path, record, None, f"expected an object, got {type(rec).__name__}")
    if key not in rec:
        raise DataError(path, record, key, "missing")
    value = rec[key]
    if kind is str and not (isinstance(value, str) and value.strip()):
        raise DataError(path, record, key, f"expected a non-empty string, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise DataError(path, record, key, f"expected a whole number, got {value!r}")
    if kind is list and not isinstance(value, list):
        raise DataError(path, record, key, f"expected a list, got {value!r}")
    return value
