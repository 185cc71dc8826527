"""Reading a dataset's official annotation file for an importer (`mcit data import`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcit.errors import DataError


def annotation_json(path: Path, missing: str = "annotation file not found") -> Any:
    """The parsed JSON file; a missing file or bad JSON raises DataError naming the file (and
    the line where the JSON breaks). `missing` says what to do about a missing file."""
    if not path.is_file():
        raise DataError(path, None, None, missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(path, None, None, f"invalid JSON at line {err.lineno}: {err.msg}") from err
