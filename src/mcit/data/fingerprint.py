"""A fingerprint of the data a stage used, so that a resumed run can tell that its benchmark
changed under it (an edited answer, a removed record, a replaced picture).

It hashes every record as loaded (id, conversation, references, metric, each media file's
folder and name) and each media file's size: cheap enough for every run start on a real
benchmark, and blind to where the benchmark folder lives. A picture replaced by another of
exactly the same size is the one edit it does not see.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mcit.data.sample import Sample, Task


def samples_fingerprint(samples: list[Sample]) -> str:
    digest = hashlib.sha256()
    for s in samples:
        media = {
            # The file's folder and name, not its absolute path: a benchmark folder that moves
            # (another cache, another machine) is the same data.
            kind: [
                "/".join(Path(path).parts[-2:]),
                os.path.getsize(path) if os.path.isfile(path) else None,
            ]
            for kind, path in sorted(s.media.items())
        }
        row = [s.id, s.task, s.turns, s.references, s.metric, media]
        digest.update(json.dumps(row, ensure_ascii=False, default=list).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def task_fingerprints(tasks: list[Task]) -> dict[str, dict[str, str]]:
    """{task: {"train": hash, "test": hash}} of the tasks as a run loads them."""
    return {
        t.name: {"train": samples_fingerprint(t.train), "test": samples_fingerprint(t.test)}
        for t in tasks
    }


def changed_tasks(saved: dict[str, dict[str, str]], now: dict[str, dict[str, str]]) -> list[str]:
    """'task (split)' for every split whose fingerprint differs, or that one side lacks."""
    out = []
    for name in sorted(set(saved) | set(now)):
        for split in ("train", "test"):
            if saved.get(name, {}).get(split) != now.get(name, {}).get(split):
                out.append(f"{name} ({split})")
    return out
