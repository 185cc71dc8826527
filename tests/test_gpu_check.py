"""scripts/gpu-check.sh's steps, exercised on the CPU at tiny scale (`--cpu`): the 7B-layout
random checkpoint, a config of configs/coin/ under DeepSpeed ZeRO-2, stage 1 then a resume,
then `mcit predict`; the JSON it writes says each of them passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_gpu_check_dry_run_on_cpu(micro_backbone_dirs, cache_dir, tmp_path):
    out = tmp_path / "gpu-check.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu-check.py"), str(out), "--cpu",
         "--methods", "modalprompt", "--engines", "deepspeed-zero2", "--steps", "1"],
        env={**os.environ, "MCIT_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert proc.returncode == 0, (report.get("error"), report["cases"])
    assert report["mode"] == "cpu-dry-run" and report["all_passed"]
    (case,) = report["cases"]
    assert case["launch_config"] == "deepspeed-zero2.yaml" and case["engine_ok"]
    assert (case["engine_recorded"], case["zero_stage"]) == ("deepspeed", 2)
    assert case["resumed_after_stage_1"] and case["complete"] and case["predict_ok"]
    assert case["train_steps"] == 2 and case["paper_peak_gpu_memory_gb"] == 14.1
    assert case["train_peak_gpu_memory_gb"] is None  # no GPU: nothing measured, nothing made up
    assert set(report["not_run"]) == {"fsdp", "deepspeed-zero3"}


def test_gpu_build_packs_a_base_and_unpacks_it_verified(tmp_path, monkeypatch):
    """scripts/gpu-build.sh dry-run on the CPU: `build` builds afresh with --device cuda (here
    overridden by a later --device cpu) and packs the base into 15 MB parts with their sha256;
    `unpack` refuses a damaged part and puts a sound one where `model.backbone.recipe=RECIPE`
    finds it."""
    out, cache, calls = tmp_path / "out", tmp_path / "cache", tmp_path / "calls.txt"
    python = tmp_path / "python"  # records how the script calls Python, then runs it
    python.write_text(f'#!/usr/bin/env bash\necho "$*" >>{calls}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "OUT": str(out), "MCIT_CACHE": str(cache), "PYTHON": str(python)}
    env |= {"OMP_NUM_THREADS": "1", "BUILD_DIR": str(tmp_path / "build")}

    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(ROOT / "scripts" / "gpu-build.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    refused = script("build", "micro", "--out", str(tmp_path / "elsewhere"))
    assert refused.returncode == 2 and "drop --out" in refused.stderr
    stale = tmp_path / "build" / "micro"
    stale.mkdir(parents=True)
    (stale / "DONE").write_text("an earlier command's base\n")
    built = script("build", "micro", "--device", "cpu", "--threads", "1", "--quiet")
    assert built.returncode == 0, built.stderr
    pretrain = [line for line in calls.read_text().splitlines() if "mcit pretrain" in line]
    assert pretrain == [
        f"-m mcit pretrain --recipe micro --out {stale} --device cuda "
        "--device cpu --threads 1 --quiet"
    ]
    assert (stale / "model_card.json").is_file()  # built afresh, not the stale folder packed
    parts = sorted(p.name for p in out.glob("base.tar.*"))
    assert parts and parts[0] == "base.tar.00"
    assert [line.split()[1] for line in (out / "base.sha256").read_text().splitlines()] == parts
    assert "tiny base (micro)" in (out / "build.log").read_text()

    monkeypatch.setenv("MCIT_CACHE", str(cache))
    from mcit.pretrain.recipes import recipe
    from mcit.pretrain.shipped import cache_dir

    target = cache_dir(recipe("micro"))
    damaged = out / "damaged"
    damaged.mkdir()
    for name in [*parts, "base.sha256"]:
        (damaged / name).write_bytes((out / name).read_bytes())
    with open(damaged / parts[-1], "ab") as f:
        f.write(b"\0")
    refused = script("unpack", str(damaged))
    assert refused.returncode != 0 and not target.exists()
    not_a_base = tmp_path / "notes"
    not_a_base.mkdir()
    refused = script("unpack", str(out), str(not_a_base))
    assert refused.returncode == 2 and "is not a base" in refused.stderr

    for _ in range(2):  # the second time over the first: replaced whole
        unpacked = script("unpack", str(out))
        assert unpacked.returncode == 0, unpacked.stderr
        assert f"tiny base (micro): {target}" in unpacked.stdout
    card = json.loads((target / "model_card.json").read_text())
    assert card["recipe"] == "micro"
    assert card["built_on"]["devices"] == {"features": "cpu", "llava": "cpu"}
    assert (target / "DONE").is_file() and (target / "audio" / "model.safetensors").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no staging left
