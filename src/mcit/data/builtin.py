"""Named benchmarks that mcit provides itself, registered on first use.

`coin-mini` is generated on first use into the user cache (or `data.data_dir`), keyed by the
seed and a hash of the generators' source, so a changed generator never reuses stale data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mcit.data.benchmarks import SPEC_FILE, register_benchmark, registered_benchmarks
from mcit.files import cache_root, file_lock


def source_hash(*packages: str) -> str:
    """A short hash of the Python sources of the given mcit sub-packages/modules."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in packages:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:10]


def coin_mini_dir(data_dir: Path | None, seed: int) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    return cache_root() / "data" / f"coin-mini-s{seed}-{source_hash('data/synthetic')}"


def resolve_coin_mini(data_dir: Path | None, seed: int) -> Path:
    """The coin-mini folder, generated once (under a lock, so parallel ranks wait for it)."""
    from mcit.data.synthetic.coin_mini import generate_coin_mini

    out = coin_mini_dir(data_dir, seed)
    if (out / SPEC_FILE).is_file():
        return out
    with file_lock(out.parent / f".{out.name}.lock"):
        if not (out / SPEC_FILE).is_file():
            generate_coin_mini(out, seed=seed)
    return out


def register_builtin_benchmarks() -> None:
    if "coin-mini" not in registered_benchmarks():
        register_benchmark("coin-mini", resolve_coin_mini)
