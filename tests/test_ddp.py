"""Two CPU processes with DDP over gloo (torchrun; `accelerate launch --cpu` runs only one)."""

import json
import os
import subprocess
import sys

import torch
from conftest import micro_overrides

from mcit.methods.base import method_class, method_names

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _env(cache_dir):
    return {
        **os.environ,
        "ACCELERATE_USE_CPU": "1",
        "MCIT_CACHE": str(cache_dir),
        "OMP_NUM_THREADS": "1",
    }


def run_ddp_worker(
    benchmark, out, cache_dir, *methods: str, stages: int = 1, order: list[str] | None = None
) -> dict[str, tuple[dict, dict]]:
    """ddp_worker.py under torchrun with two ranks, once for all `methods`: per method, each
    rank's saved {"world", "before", "after"} state (around the last of `stages` stages)."""
    worker = os.path.join(os.path.dirname(__file__), "ddp_worker.py")
    env = {**_env(cache_dir), "MCIT_DDP_STAGES": str(stages)}
    if order:
        env["MCIT_DDP_ORDER"] = str(order)
    proc = subprocess.run(
        [*TORCHRUN, worker, str(benchmark), str(out), *methods],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {
        m: tuple(torch.load(out / f"{m}.rank{r}.pt") for r in (0, 1))  # type: ignore[misc]
        for m in methods
    }


def test_ddp_keeps_every_method_identical_across_ranks(ddp_states):
    """The contract rule for DDP, for every registered method that trains (one launch): ranks
    that start from different RNG states hold bit-identical state after a stage, and the stage
    changed it. Per-method tests read their own details from the same states."""
    assert set(ddp_states) == {m for m in method_names() if method_class(m)[0].trains}
    for name, (rank0, rank1) in ddp_states.items():
        assert rank0["world"] == rank1["world"] == 2, name
        assert rank0["after"].keys() == rank1["after"].keys(), name
        for key in rank0["after"]:
            assert torch.equal(rank0["after"][key], rank1["after"][key]), (name, key)
        assert any(
            not torch.equal(rank0["before"][k], rank0["after"][k]) for k in rank0["after"]
        ), name


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

    # The state saved under DDP, restored in this one process, is the saved state bit for bit,
    # and answers each rank's share of every task's test samples exactly as that rank did.
    from mcit.config import load_config
    from mcit.data.collate import Collator
    from mcit.evaluation.evaluator import predict
    from mcit.methods.base import build_method
    from mcit.models.backbone import load_backbone
    from mcit.runner import load_stream
    from mcit.train.checkpoint import load_stage

    config = load_config(None, overrides)
    backbone = load_backbone(config.model.backbone)
    method = build_method("finetune-lora", backbone, config.method.args)
    run_dir = tmp_path / config.run_name
    assert method.restore(run_dir / "stage_3") == 3
    saved, _ = load_stage(run_dir / "stage_3")
    state = method.method_state()
    assert saved.keys() == state.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    for task in load_stream(config):
        path = run_dir / "predictions" / "stage_3" / f"{task.name}.jsonl"
        by_rank = {r["id"]: r["prediction"] for r in map(json.loads, path.read_text().splitlines())}
        for rank in (0, 1):
            share = task.test[rank::2]
            answers = predict(method, share, Collator(backbone), config.eval, progress=False)
            assert answers == [by_rank[sample.id] for sample in share], (task.name, rank)
