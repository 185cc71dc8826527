"""Every error mcit raises for bad input, in one leaf module (it imports nothing of mcit).

Each names what is wrong where a user can find it: the config key, the file with its record or
line and field, the backbone directory. The command line turns them into one line each; a
traceback from deep inside is a bug.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names file and key."""


class BackboneError(ValueError):
    """A backbone directory or setting that cannot be used; the message names it."""


class MediaError(ValueError):
    """An audio or video file that cannot be decoded as asked; the message names the file."""


class ReportError(ValueError):
    """Runs or files a report cannot use; the message names the file (and field)."""


def _located(path: str | Path, unit: str, where: str | int | None, field_name: str | None) -> str:
    text = str(path)
    if where is not None:
        text += f", {unit} {where}"
    if field_name is not None:
        text += f", field '{field_name}'"
    return text


class DataError(ValueError):
    """Bad input data. The message always names the file, the record and the field."""

    def __init__(
        self, path: str | Path, record: str | int | None, field_name: str | None, problem: str
    ):
        self.path = str(path)
        self.record = record
        self.field = field_name
        self.problem = problem
        super().__init__(f"{_located(path, 'record', record, field_name)}: {problem}")


class PredictionsFileError(ValueError):
    """A bad line of a predictions file; the message names the file, the line and the field."""

    def __init__(self, path: str | Path, line: int | None, field_name: str | None, problem: str):
        self.path = str(path)
        self.line = line
        self.field = field_name
        self.problem = problem
        super().__init__(f"{_located(path, 'line', line, field_name)}: {problem}")


class MatrixError(ValueError):
    """An invalid accuracy matrix. The message names the row (stage number and the task trained
    at that stage) and the column (task) where it can; `stage` (1-based) and `column` (task
    name) carry the same information for callers that re-locate the error (e.g. a CSV line)."""

    def __init__(self, message: str, stage: int | None = None, column: str | None = None):
        super().__init__(message)
        self.stage = stage
        self.column = column
        self.problem = message


class CheckpointError(ValueError):
    """A saved checkpoint that is missing, truncated or altered; the message names the file and
    says what to delete."""
