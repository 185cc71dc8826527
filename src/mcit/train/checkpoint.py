"""Per-stage checkpoints, written atomically (mcit.files) so an interrupted run never leaves a
half-written stage that a resume would trust."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mcit.files import atomic_path, write_json_atomic


def save_stage(stage_dir: Path, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
    """Save what the method owns after a stage: `method.safetensors` + `method.json`."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(stage_dir / "method.safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    # Written last: its presence marks the stage's checkpoint complete.
    write_json_atomic(stage_dir / "method.json", extra)


def load_stage(stage_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = load_file(str(stage_dir / "method.safetensors"))
    extra = json.loads((stage_dir / "method.json").read_text())
    return tensors, extra


def stage_complete(stage_dir: Path) -> bool:
    return (stage_dir / "method.safetensors").is_file() and (stage_dir / "method.json").is_file()
