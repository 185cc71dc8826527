"""Named benchmarks that mcit provides itself, registered on first use.

`coin-mini` and `micl-mini` are generated on first use into the user cache (or
`data.data_dir`), keyed by the seed and a hash of the generators' source, so a changed
generator never reuses stale data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
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


def _generated_once(out: Path, generate: Callable[[Path], object]) -> Path:
    """`out`, generated unless it holds a benchmark already (under a lock, so that parallel
    ranks wait for one writer)."""
    if (out / SPEC_FILE).is_file():
        return out
    with file_lock(out.parent / f".{out.name}.lock"):
        if not (out / SPEC_FILE).is_file():
            generate(out)
    return out


def resolve_coin_mini(data_dir: Path | None, seed: int) -> Path:
    """The coin-mini folder, generated once."""
    from mcit.data.synthetic.coin_mini import generate_coin_mini

    return _generated_once(coin_mini_dir(data_dir, seed), lambda out: generate_coin_mini(out, seed))


def resolve_micl_mini(data_dir: Path | None, seed: int) -> Path:
    """The micl-mini folder, generated once (keyed like coin-mini by the seed and the sources
    of its generators, the coin-mini scene renderer included)."""
    from mcit.data.micl_mini.generate import generate_micl_mini

    if data_dir is not None:
        out = Path(data_dir)
    else:
        used = ("data/micl_mini", *(f"data/synthetic/{m}.py" for m in ("scene", "vocab", "common")))
        out = cache_root() / "data" / f"micl-mini-s{seed}-{source_hash(*used)}"
    return _generated_once(out, lambda folder: generate_micl_mini(folder, seed))


def register_builtin_benchmarks() -> None:
    if "coin-mini" not in registered_benchmarks():
        register_benchmark("coin-mini", resolve_coin_mini)
    if "micl-mini" not in registered_benchmarks():
        register_benchmark("micl-mini", resolve_micl_mini)
