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
