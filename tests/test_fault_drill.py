"""The fault drill: `mcit run` killed (SIGKILL) at seeded random moments — in training, in
evaluation, while a checkpoint or results file is being written — then resumed, over many
trials, must end with the matrix, predictions and weights of an uninterrupted run, byte for
byte."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import micro_overrides

TRIALS = 6


def _command(bench: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "mcit.cli", "run", "--quiet", *micro_overrides(bench, out)]


def _outputs(run_dir: Path) -> dict[str, bytes]:
    """What must not depend on interruptions: weights, method state, predictions, analyses."""
    files = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        wanted = rel.startswith(("stage_", "predictions/", "analysis/"))
        # A dot file is a temporary one that a kill left behind.
        if path.is_file() and wanted and not path.name.startswith("."):
            files[rel] = path.read_bytes()
    return files


def _matrix(run_dir: Path) -> list:
    return json.loads((run_dir / "results.json").read_text())["matrix"]


def _finished(out: Path) -> int:
    """Stages a run has finished (0 before its first results file; written atomically)."""
    found = list(out.glob("*/results.json"))
    return len(json.loads(found[0].read_text())["matrix"]) if found else 0


def _kill_after(process: subprocess.Popen, out: Path, stages: int, delay: float) -> bool:
    """SIGKILL `process` `delay` seconds after its run has finished `stages` stages; False if
    it ended before that."""
    while _finished(out) < stages:
        if process.poll() is not None:
            return False
        time.sleep(0.02)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


@pytest.mark.slow
def test_killed_anywhere_and_resumed_gives_the_uninterrupted_run_byte_for_byte(
    micro_backbone_dirs, micro_benchmark, tmp_path
):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    started = time.monotonic()
    subprocess.run(_command(micro_benchmark, reference), env=env, check=True, capture_output=True)
    duration = time.monotonic() - started
    (ref_dir,) = [p for p in reference.iterdir() if p.is_dir()]
    expected, expected_matrix = _outputs(ref_dir), _matrix(ref_dir)
    assert len([k for k in expected if k.endswith("method.safetensors")]) == 3

    rng = random.Random(0)
    kills = 0
    finished_at_kill = set()
    for trial in range(TRIALS):
        out = tmp_path / f"trial-{trial}"
        # Kill moments tied to the run's progress, not to the clock (a loaded machine slows
        # every run): after 0, 1 or 2 finished stages, then a seeded delay into the next stage's
        # training, evaluation or writes. One or two kills per trial, the second during the
        # resume.
        moments = [(trial % 3, rng.uniform(0, (0.5 if trial % 3 == 0 else 0.1) * duration))]
        if rng.random() < 0.5:
            moments.append((rng.choice((1, 2)), rng.uniform(0, 0.1 * duration)))
        for stages, delay in moments:
            process = subprocess.Popen(
                _command(micro_benchmark, out),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if _kill_after(process, out, stages, delay):
                kills += 1
                finished_at_kill.add(_finished(out))
        done = subprocess.run(
            _command(micro_benchmark, out), env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
        assert _matrix(run_dir) == expected_matrix, (
            f"trial {trial}, kills (stages, delay) {moments}"
        )
        got = _outputs(run_dir)
        assert got.keys() == expected.keys(), f"trial {trial}"
        for name, data in expected.items():
            assert got[name] == data, f"trial {trial}: {name} differs (kills at {moments})"
    # The drill did interrupt runs (one may end before its kill moment), in more than one stage.
    assert kills >= TRIALS // 2
    assert len(finished_at_kill) >= 2, finished_at_kill
