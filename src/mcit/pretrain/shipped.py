"""Where a tiny base comes from: the one shipped inside the package, or one built in the cache.

The default recipe's base ships as package data (`mcit/base/<recipe>/`: `llava/`, `clip/`,
`model_card.json`, `MODEL_CARD.md`), so a first run — editable or not — starts learning tasks at
once. Any other recipe, or the default one with overrides, is built on first use under
`<cache>/backbones/tiny-<key>/` (keyed by its config and the recipe's source), under a lock so
that several ranks build it once.
"""

from __future__ import annotations

from pathlib import Path

from mcit.files import cache_root, file_lock
from mcit.models.tiny import TinyConfig
from mcit.pretrain.recipes import recipe_name

SHIPPED_ROOT = Path(__file__).resolve().parents[1] / "base"


def shipped_dir(name: str) -> Path:
    return SHIPPED_ROOT / name


def shipped_base(config: TinyConfig) -> Path | None:
    """The shipped folder of `config`'s recipe, when `config` is exactly a shipped recipe."""
    name = recipe_name(config)
    if name is None:
        return None
    root = shipped_dir(name)
    return root if (root / "DONE").is_file() else None


def cache_dir(config: TinyConfig) -> Path:
    from mcit.pretrain.build import recipe_code_hash

    return cache_root() / "backbones" / f"tiny-{config.key(recipe_code_hash())}"


def ensure_tiny_backbone(config: TinyConfig, progress: bool = True) -> tuple[Path, Path]:
    """(llava_dir, clip_dir) of `config`'s base: shipped, cached, or built now into the cache.
    Its audio encoder, when it has one, is `audio_dir(llava_dir)`."""
    root = shipped_base(config) or cache_dir(config)

    def ready() -> bool:
        return (root / "DONE").is_file() and (root / "audio").is_dir()

    if not ready():
        from mcit.pretrain.build import build_base

        if not _may_write_weights():
            _wait_for(ready, root, progress)
        else:
            with file_lock(root.parent / f".{root.name}.lock"):
                if not ready():
                    build_base(
                        config, root, resume=True, progress=progress, recipe=recipe_name(config)
                    )
    return root / "llava", root / "clip"


def _may_write_weights() -> bool:
    """Whether this process can build a base: under torch.distributed, transformers'
    `save_pretrained` writes weights on rank 0 only, so the other ranks wait for it."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _wait_for(ready, root: Path, progress: bool) -> None:
    import time

    waited = 0
    while not ready():
        if progress and waited % 60 == 0:
            print(f"[mcit] waiting for rank 0 to build the tiny base in {root}", flush=True)
        time.sleep(1)
        waited += 1


def audio_dir(llava_dir: Path) -> Path:
    """The audio encoder beside a tiny base's LLaVA."""
    return Path(llava_dir).parent / "audio"
