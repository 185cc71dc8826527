"""Per-stage checkpoints, written atomically (mcit.files) so an interrupted run never leaves a
half-written stage that a resume would trust, and verified on every load: `method.json` holds
the size and sha256 of `method.safetensors` beside the method's own state, so a truncated or
altered tensor file is refused with the file's name instead of being loaded. It also names the
tasks of every stage finished so far: a stage folder describes itself, and restoring a method
from it (`ContinualMethod.restore`) needs nothing else."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mcit.errors import CheckpointError
from mcit.files import atomic_path, read_json, write_json_atomic

TENSORS = "method.safetensors"
MANIFEST = "method.json"
FORMAT = 2  # 1 (before checksums): method.json was the method's extra state alone


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_stage(
    stage_dir: Path,
    tensors: dict[str, torch.Tensor],
    extra: dict[str, Any],
    stages: list[list[str]] | None = None,
    method: dict[str, Any] | None = None,
) -> None:
    """Save what the method owns after a stage: `method.safetensors`, then `method.json` (its
    checksum, the task names of each stage finished so far, the method's extra state, and
    `method`: its registry name and args, so the folder says what it holds)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    path = stage_dir / TENSORS
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    # Written last: its presence marks the stage's checkpoint complete.
    write_json_atomic(
        stage_dir / MANIFEST,
        {
            "format": FORMAT,
            "tensors": {"file": TENSORS, "bytes": path.stat().st_size, "sha256": file_sha256(path)},
            "stages": stages,
            "extra": extra,
            **({"method": method} if method is not None else {}),
        },
    )


@dataclass
class SavedStage:
    """What a stage folder holds: the method's tensors and extra state, and the task names of
    every stage finished so far (None in a checkpoint that does not record them)."""

    tensors: dict[str, torch.Tensor]
    extra: dict[str, Any]
    stages: list[list[str]] | None
    # {"name": registry name, "args": the method's args}; None where not recorded.
    method: dict[str, Any] | None = None


def load_stage(
    stage_dir: Path, remedy: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and extra state saved in `stage_dir`, verified (see `read_stage`)."""
    saved = read_stage(stage_dir, remedy)
    return saved.tensors, saved.extra


def read_stage(stage_dir: Path, remedy: str | None = None) -> SavedStage:
    """Everything saved in `stage_dir`, after checking the tensor file against its recorded
    size and sha256. `remedy` ends the error message (what the user should do); by default,
    delete the stage folder."""
    remedy = remedy or f"delete {stage_dir} and run again"
    tensors_path = stage_dir / TENSORS
    saved = _manifest(stage_dir)
    if not tensors_path.is_file():
        raise CheckpointError(f"{tensors_path}: missing; {remedy}")
    stages, method = None, None
    if "format" in saved:
        record, extra = saved["tensors"], saved.get("extra", {})
        stages = _stage_names(saved.get("stages"), stage_dir / MANIFEST)
        method = saved.get("method")
        if method is not None and not (
            isinstance(method, dict)
            and isinstance(method.get("name"), str)
            and isinstance(method.get("args"), dict)
        ):
            raise CheckpointError(
                f"{stage_dir / MANIFEST}, field 'method': expected {{name: ..., args: {{...}}}}"
            )
        size = tensors_path.stat().st_size
        if size != record.get("bytes"):
            raise CheckpointError(
                f"{tensors_path}: truncated or replaced ({size} bytes, {record.get('bytes')} "
                f"were saved); {remedy}"
            )
        if file_sha256(tensors_path) != record.get("sha256"):
            raise CheckpointError(
                f"{tensors_path}: its content changed since it was saved (sha256 mismatch); "
                f"{remedy}"
            )
    else:  # a format-1 checkpoint (no checksum to verify, no stages recorded)
        extra = saved
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{tensors_path}: unreadable ({err}); {remedy}") from None
    return SavedStage(tensors, extra, stages, method)


def _manifest(stage_dir: Path) -> dict[str, Any]:
    """`method.json`, checked: a format-2 manifest (or a format-1 one, which has no `format`)."""
    path = stage_dir / MANIFEST
    saved = read_json(path, CheckpointError)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    if "format" in saved:
        if saved["format"] != FORMAT:
            raise CheckpointError(
                f"{path}, field 'format': {saved['format']!r}; this mcit reads {FORMAT} (and "
                "format-1 files, which have no 'format')"
            )
        if not isinstance(saved.get("tensors"), dict):
            raise CheckpointError(f"{path}, field 'tensors': expected an object")
    return saved


def _stage_names(stages: Any, path: Path) -> list[list[str]] | None:
    """The manifest's `stages` field, checked: lists of task names (or null)."""
    if stages is not None and not (
        isinstance(stages, list)
        and all(isinstance(st, list) and all(isinstance(n, str) for n in st) for st in stages)
    ):
        raise CheckpointError(f"{path}, field 'stages': expected lists of names")
    return stages


def stage_complete(stage_dir: Path) -> bool:
    return (stage_dir / TENSORS).is_file() and (stage_dir / MANIFEST).is_file()
