"""Two CPU processes with DDP over gloo (torchrun; `accelerate launch --cpu` runs only one)."""

import json
import os
import subprocess
import sys

import torch
from conftest import micro_overrides

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _env(cache_dir):
    return {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "MCIT_CACHE": str(cache_dir),
        "OMP_NUM_THREADS": "1",
    }


def run_ddp_worker(benchmark, out, cache_dir, *method: str) -> tuple[dict, dict]:
    """ddp_worker.py under torchrun with two ranks (a method's name, default finetune-lora):
    each rank's saved {"world", "before", "after"} trainable tensors."""
    worker = os.path.join(os.path.dirname(__file__), "ddp_worker.py")
    proc = subprocess.run(
        [*TORCHRUN, worker, str(benchmark), str(out), *method],
        env=_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    return rank0, rank1


def test_ddp_keeps_parameters_identical_across_ranks(
    micro_backbone_dirs, micro_benchmark, cache_dir, tmp_path
):
    rank0, rank1 = run_ddp_worker(micro_benchmark, tmp_path, cache_dir)
    assert rank0["world"] == rank1["world"] == 2
    assert rank0["after"].keys() == rank1["after"].keys()
    for key in rank0["after"]:
        assert torch.equal(rank0["after"][key], rank1["after"][key]), key
    assert any(not torch.equal(rank0["before"][k], rank0["after"][k]) for k in rank0["after"])


def test_cli_run_under_torchrun_completes(
    micro_backbone_dirs, micro_benchmark, cache_dir, tmp_path
):
    overrides = micro_overrides(
        micro_benchmark, tmp_path, "finetune-lora", **{"method.args": "{r: 4, alpha: 8}"}
    )
    proc = subprocess.run(
        [*TORCHRUN, "-m", "mcit", "run", "--quiet", *overrides],
        env=_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "coin-micro-finetune-lora" / "results.json").read_text())
    assert results["complete"] and results["manifest"]["processes"] == 2
    assert len(results["matrix"]) == 3 and all(v is not None for v in results["matrix"][-1])
    assert "Accuracy matrix" in proc.stdout and proc.stdout.count("Accuracy matrix") == 1
